// VirtioNet: quiesce and device state for snapshots (see net.cc for the device and
// docs/VIRTIO.md "Snapshot state and quiesce").
//
// Quiesce() leaves the device holding nothing, without resetting it:
//   * no more frames are taken from the backend (OnFrame refuses them, so the backend keeps
//     them; RunRx stops reading) and nothing is popped (RunTx returns), until Unquiesce();
//   * a frame partly placed in held receive buffers, waiting for more (the direct path's
//     p.rx_pending_len), is DROPPED and counted in `drops`: always, so the outcome does not
//     depend on timing, and the state needs no frame bytes (the network may lose frames anyway);
//   * the held receive chains go back to the ring with Queue::Unpop (next_avail rewinds, as
//     Firecracker does): the guest's buffers are not lost and are filled after Resume. Chains
//     that cannot be given back (a malformed chain was returned after them) are returned with
//     used length 0, which the driver recycles;
//   * a transmit chain the backend refused (p.tx_pending) is given back with Unpop too, so the
//     frame is sent after Resume (to the new backend after a restore);
//   * used entries pushed on the way get their interrupt now.
// Unquiesce() resumes the backend (RunRx or ResumeReceive) if it was held; the transport then
// kicks both queues.
//
// Device state (version 2): the configuration space's status (LINK_UP, ANNOUNCE), the MAC the
// driver set (VIRTIO_NET_CTRL_MAC_ADDR_SET; the configured one is NetOptions), the queue pairs
// in use, and the receive filter (rx mode flags, the unicast and multicast MAC tables),
// little-endian. Version 1 (status only, before the control queue) still restores. Every
// queue pair's and the control queue's rings are the transport's state.
//
// Threads: Quiesce/Unquiesce/RestoreDeviceState on a control thread (any thread: nothing here
// waits for the loop) under the transport's lock; everything under mu_.
#include <cstring>

#include "base/log.h"
#include "virtio/net_device.h"

namespace kite::virtio {
namespace {

constexpr uint8_t kStateVersion1 = 1;
constexpr size_t kState1Bytes = 3;  // version, status (le16)
constexpr uint8_t kStateVersion = 2;
// version, status (le16), MAC (6), pairs (le16), filter flags, unicast and multicast entry
// counts, then the entries (6 bytes each).
constexpr size_t kStateHeaderBytes = 14;

enum FilterFlag : uint8_t {
  kPromisc = 1,
  kAllmulti = 2,
  kAlluni = 4,
  kNomulti = 8,
  kNouni = 16,
  kNobcast = 32,
  kUniOverflow = 64,
  kMultiOverflow = 128,
};

uint8_t FilterFlags(const RxFilter& f) {
  return static_cast<uint8_t>(
      (f.promisc ? kPromisc : 0) | (f.allmulti ? kAllmulti : 0) | (f.alluni ? kAlluni : 0) |
      (f.nomulti ? kNomulti : 0) | (f.nouni ? kNouni : 0) | (f.nobcast ? kNobcast : 0) |
      (f.uni_overflow ? kUniOverflow : 0) | (f.multi_overflow ? kMultiOverflow : 0));
}

void SetFilterFlags(uint8_t flags, RxFilter* f) {
  f->promisc = flags & kPromisc;
  f->allmulti = flags & kAllmulti;
  f->alluni = flags & kAlluni;
  f->nomulti = flags & kNomulti;
  f->nouni = flags & kNouni;
  f->nobcast = flags & kNobcast;
  f->uni_overflow = flags & kUniOverflow;
  f->multi_overflow = flags & kMultiOverflow;
}

}  // namespace

Result<void> VirtioNet::Quiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = true;
  bool have_queues = active_.queues.size() == 2 * pairs_.size() + 1;
  for (auto& pair : pairs_) {
    NetPair& p = *pair;
    Queue* rx = have_queues ? active_.queues[p.rx_index()] : nullptr;
    Queue* tx = have_queues ? active_.queues[p.tx_index()] : nullptr;
    if (p.rx_pending_len != 0) {
      p.rx_pending_len = 0;
      drops_.fetch_add(1, std::memory_order_relaxed);
    }
    bool rx_pushed = rx != nullptr && ReturnRxChainsLocked(p, rx);
    bool tx_pushed = false;
    if (p.tx_pending && tx != nullptr) {
      p.tx_pending = false;
      p.tx_iov.clear();
      if (!tx->Unpop(1)) {  // cannot happen: the pending chain is the last one popped
        drops_.fetch_add(1, std::memory_order_relaxed);
        tx->PushUsed(p.tx_chain.head(), 0);
        tx_pushed = true;
      }
    }
    if (active_.signal_used) {
      if (rx_pushed || p.rx_signal_needed) active_.signal_used(p.rx_index());
      if (tx_pushed) active_.signal_used(p.tx_index());
    }
    p.rx_signal_needed = false;  // a posted signal finds nothing to do
  }
  return {};
}

bool VirtioNet::ReturnRxChainsLocked(NetPair& p, Queue* rx) {
  bool pushed = false;
  // The held chains are in pop order: give back the longest run that ends with the last chain
  // popped; what precedes a chain returned in between goes back used, length 0.
  size_t n = p.rx_chains.size();
  while (n > 0 && !rx->Unpop(static_cast<uint16_t>(n))) {
    rx->PushUsed(p.rx_chains.front().head(), 0);
    pushed = true;
    p.rx_spare.push_back(std::move(p.rx_chains.front()));
    p.rx_chains.pop_front();
    --n;
  }
  while (!p.rx_chains.empty()) {
    p.rx_spare.push_back(std::move(p.rx_chains.front()));
    p.rx_chains.pop_front();
  }
  p.rx_room = 0;
  return pushed;
}

void VirtioNet::Unquiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = false;
  for (auto& pair : pairs_) {
    if (pair->rx_waiting) PostRxResumeLocked(*pair);
  }
  RetryThrottledLocked(false, true);  // a transmit the rate limit held back
}

std::vector<uint8_t> VirtioNet::SaveDeviceState() const {
  std::lock_guard lock(mu_);
  const RxFilter& f = ctrl_.filter;
  std::vector<uint8_t> out = {kStateVersion, static_cast<uint8_t>(ctrl_.status),
                              static_cast<uint8_t>(ctrl_.status >> 8)};
  out.insert(out.end(), ctrl_.mac.begin(), ctrl_.mac.end());
  out.push_back(static_cast<uint8_t>(ctrl_.pairs));
  out.push_back(static_cast<uint8_t>(ctrl_.pairs >> 8));
  out.push_back(FilterFlags(f));
  out.push_back(static_cast<uint8_t>(f.uni.size()));  // at most kMacTableEntries together
  out.push_back(static_cast<uint8_t>(f.multi.size()));
  for (const auto* table : {&f.uni, &f.multi}) {
    for (const MacAddress& mac : *table) out.insert(out.end(), mac.begin(), mac.end());
  }
  return out;
}

Result<void> VirtioNet::RestoreDeviceState(std::span<const uint8_t> bytes) {
  NetCtrlState state;
  {
    std::lock_guard lock(mu_);
    state = ctrl_;
  }
  if (bytes.empty() || (bytes[0] != kStateVersion1 && bytes[0] != kStateVersion)) {
    return Err("virtio-net: device state is not version 1 or 2");
  }
  bool v1 = bytes[0] == kStateVersion1;
  if (v1 ? bytes.size() != kState1Bytes : bytes.size() < kStateHeaderBytes) {
    return Err("virtio-net: device state of " + std::to_string(bytes.size()) + " bytes");
  }
  state.status = static_cast<uint16_t>(bytes[1] | bytes[2] << 8);
  if ((state.status & ~(net::kStatusLinkUp | net::kStatusAnnounce)) != 0) {
    return Err("virtio-net: unknown link status bits " + std::to_string(state.status));
  }
  if (!v1) {
    std::memcpy(state.mac.data(), bytes.data() + 3, state.mac.size());
    state.pairs = static_cast<uint16_t>(bytes[9] | bytes[10] << 8);
    SetFilterFlags(bytes[11], &state.filter);
    size_t uni = bytes[12], multi = bytes[13];
    if (uni + multi > kMacTableEntries || bytes.size() != kStateHeaderBytes + 6 * (uni + multi)) {
      return Err("virtio-net: device state's MAC table does not match its length");
    }
    if (state.pairs < 1 || state.pairs > pairs_.size()) {
      return Err("virtio-net: device state uses " + std::to_string(state.pairs) +
                 " queue pairs; this device has " + std::to_string(pairs_.size()));
    }
    if ((state.mac[0] & 1) != 0 || (mac_pinning_ && state.mac != configured_mac_)) {
      return Err("virtio-net: device state's MAC " + FormatMac(state.mac) + " is not allowed");
    }
    state.filter.uni.resize(uni);
    state.filter.multi.resize(multi);
    const uint8_t* at = bytes.data() + kStateHeaderBytes;
    for (auto* table : {&state.filter.uni, &state.filter.multi}) {
      for (MacAddress& mac : *table) {
        std::memcpy(mac.data(), at, mac.size());
        at += mac.size();
      }
    }
  }
  std::lock_guard lock(mu_);
  ctrl_ = std::move(state);
  return {};
}

}  // namespace kite::virtio
