// VirtioNet: quiesce and device state for snapshots (see net.cc for the device and
// docs/VIRTIO.md "Snapshot state and quiesce").
//
// Quiesce() leaves the device holding nothing, without resetting it:
//   * no more frames are taken from the backend (OnFrame refuses them, so the backend keeps
//     them; RunRx stops reading) and nothing is popped (RunTx returns), until Unquiesce();
//   * a frame partly placed in held receive buffers, waiting for more (the direct path's
//     rx_pending_len_), is DROPPED and counted in `drops`: always, so the outcome does not
//     depend on timing, and the state needs no frame bytes (the network may lose frames anyway);
//   * the held receive chains go back to the ring with Queue::Unpop (next_avail rewinds, as
//     Firecracker does): the guest's buffers are not lost and are filled after Resume. Chains
//     that cannot be given back (a malformed chain was returned after them) are returned with
//     used length 0, which the driver recycles;
//   * a transmit chain the backend refused (tx_pending_) is given back with Unpop too, so the
//     frame is sent after Resume (to the new backend after a restore);
//   * used entries pushed on the way get their interrupt now.
// Unquiesce() resumes the backend (RunRx or ResumeReceive) if it was held; the transport then
// kicks both queues.
//
// Device state: a version byte and the configuration space's status (LINK_UP), little-endian.
// The MAC is configuration (NetOptions), not state.
//
// Threads: Quiesce/Unquiesce/RestoreDeviceState on a control thread (any thread: nothing here
// waits for the loop) under the transport's lock; everything under mu_.
#include <cstring>

#include "base/log.h"
#include "virtio/net_device.h"

namespace kite::virtio {
namespace {

constexpr uint8_t kStateVersion = 1;
constexpr size_t kStateBytes = 3;  // version, status (le16)

}  // namespace

Result<void> VirtioNet::Quiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = true;
  bool have_queues = active_.queues.size() == 2;
  Queue* rx = have_queues ? active_.queues[kRxQueue] : nullptr;
  Queue* tx = have_queues ? active_.queues[kTxQueue] : nullptr;
  if (rx_pending_len_ != 0) {
    rx_pending_len_ = 0;
    drops_.fetch_add(1, std::memory_order_relaxed);
  }
  bool rx_pushed = rx != nullptr && ReturnRxChainsLocked(rx);
  bool tx_pushed = false;
  if (tx_pending_ && tx != nullptr) {
    tx_pending_ = false;
    tx_iov_.clear();
    if (!tx->Unpop(1)) {  // cannot happen: the pending chain is the last one popped
      drops_.fetch_add(1, std::memory_order_relaxed);
      tx->PushUsed(tx_chain_.head(), 0);
      tx_pushed = true;
    }
  }
  if (active_.signal_used) {
    if (rx_pushed || rx_signal_needed_) active_.signal_used(kRxQueue);
    if (tx_pushed) active_.signal_used(kTxQueue);
  }
  rx_signal_needed_ = false;  // a posted signal finds nothing to do
  return {};
}

bool VirtioNet::ReturnRxChainsLocked(Queue* rx) {
  bool pushed = false;
  // The held chains are in pop order: give back the longest run that ends with the last chain
  // popped; what precedes a chain returned in between goes back used, length 0.
  size_t n = rx_chains_.size();
  while (n > 0 && !rx->Unpop(static_cast<uint16_t>(n))) {
    rx->PushUsed(rx_chains_.front().head(), 0);
    pushed = true;
    rx_spare_.push_back(std::move(rx_chains_.front()));
    rx_chains_.pop_front();
    --n;
  }
  while (!rx_chains_.empty()) {
    rx_spare_.push_back(std::move(rx_chains_.front()));
    rx_chains_.pop_front();
  }
  rx_room_ = 0;
  return pushed;
}

void VirtioNet::Unquiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = false;
  if (rx_waiting_) PostRxResumeLocked();
  RetryThrottledLocked(false, true);  // a transmit the rate limit held back
}

std::vector<uint8_t> VirtioNet::SaveDeviceState() const {
  std::lock_guard lock(mu_);
  uint16_t status = config_.status;
  return {kStateVersion, static_cast<uint8_t>(status), static_cast<uint8_t>(status >> 8)};
}

Result<void> VirtioNet::RestoreDeviceState(std::span<const uint8_t> bytes) {
  if (bytes.size() != kStateBytes || bytes[0] != kStateVersion) {
    return Err("virtio-net: device state is not version 1 of 3 bytes");
  }
  uint16_t status = static_cast<uint16_t>(bytes[1] | bytes[2] << 8);
  if ((status & ~net::kStatusLinkUp) != 0) {
    return Err("virtio-net: unknown link status bits " + std::to_string(status));
  }
  std::lock_guard lock(mu_);
  config_.status = status;
  return {};
}

}  // namespace kite::virtio
