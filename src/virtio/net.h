// VirtioNet: virtio-net (virtio 1.2 section 5.1) with a pluggable backend (net_backend.h):
// a tap device or the user-mode NAT (libslirp).
//
// N receive/transmit queue pairs (N > 1: VIRTIO_NET_F_MQ, a multiqueue tap) and a control
// queue. Features offered: VERSION_1, MAC, STATUS, MRG_RXBUF, INDIRECT_DESC, EVENT_IDX,
// CTRL_VQ, CTRL_RX, CTRL_RX_EXTRA, CTRL_MAC_ADDR, GUEST_ANNOUNCE, MQ with N > 1, and when the
// backend takes vnet headers (tap) CSUM, GUEST_CSUM, HOST_TSO4/6, GUEST_TSO4/6 (the offloads
// pass through to the tap with TUNSETOFFLOAD).
// Frames with offload flags that were not negotiated, frames larger than 65562 bytes and chains
// shorter than the header are dropped and counted (G23, G25); a frame the guest's receive
// buffers cannot hold is dropped (G24), never written past a descriptor. Frames from a tap are
// read straight into the guest's receive buffers (net_rx.cc).
//
// Threads: everything on the event loop, every pair: TX on the TX queue's kick, RX when the
// backend has a frame and the guest has buffers (the backend's fd readiness through asio),
// control requests on the control queue's kick.
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "virtio/net_backend.h"
#include "virtio/throttle.h"
#include "virtio/virtio_device.h"

namespace kite::virtio {

using MacAddress = std::array<uint8_t, 6>;

// "52:54:00:12:34:56" → bytes; a multicast or all-zero address is refused.
Result<MacAddress> ParseMac(const std::string& text);
std::string FormatMac(const MacAddress& mac);
// A locally administered unicast address (52:54:00 prefix like QEMU's, then random bytes).
MacAddress GenerateMac();

struct NetOptions {
  MacAddress mac{};
  uint16_t queue_size = 256;
  // VIRTIO_NET_F_MTU (5.1.3, 5.1.4): the MTU the guest starts with and may not exceed, in the
  // configuration space; 0: the feature is not offered (the guest picks, 1500 by default).
  uint16_t mtu = 0;
  // Rate limits per direction (bytes: frame payloads without the virtio-net header; an
  // operation: a frame). Unlimited by default.
  RateLimitParams rx_throttle{};
  RateLimitParams tx_throttle{};
  // The limiters' clock and timer; null: the loop's. For tests.
  std::function<std::unique_ptr<ThrottleTime>()> throttle_time{};
  // G25: transmitted frames whose source MAC is not `mac` are dropped (counted in
  // NetCounters::tx_spoofed), and VIRTIO_NET_CTRL_MAC_ADDR_SET to another MAC is refused.
  bool mac_pinning = false;
};

// announce-self (QEMU's shape): `rounds` announcements, the first at once, then after
// initial, initial + step, ... milliseconds, each gap at most `max`.
struct AnnounceParams {
  uint32_t initial = 50;
  uint32_t max = 550;
  uint32_t rounds = 5;
  uint32_t step = 100;
};
// QEMU's ranges for them (its announce-* migration parameters); an error names the field.
Result<void> CheckAnnounceParams(const AnnounceParams& params);

struct NetCounters {
  uint64_t rx_filtered = 0;  // frames the driver's receive filter refused (not drops)
  uint64_t tx_spoofed = 0;   // frames dropped by MAC pinning (also in drops)
  uint64_t ctrl_errors = 0;  // control requests answered VIRTIO_NET_ERR
  uint64_t announces = 0;    // announcement rounds made (guest announce or RARP)
};

// set_link: the link status the guest reads in the configuration space (VIRTIO_NET_S_LINK_UP;
// the device offers VIRTIO_NET_F_STATUS). While the link is down, frames are dropped both
// ways, as QEMU does. The caller raises the configuration-change interrupt.
class NetDevice : public VirtioDevice {
 public:
  virtual void SetLink(bool up) = 0;
  virtual bool link_up() const = 0;
  // x-kite-set-net-throttle: new limits from now on (full buckets). Any thread: posted to the
  // event loop.
  virtual void SetThrottle(const RateLimitParams& rx, const RateLimitParams& tx) = 0;
  virtual RateLimitParams rx_throttle() const = 0;
  virtual RateLimitParams tx_throttle() const = 0;
  // How the device raises the configuration-change interrupt itself (announce); set once by
  // whoever wires it to its transport.
  virtual void SetConfigNotifier(std::function<void()> notify) = 0;
  // announce-self and after a restore: each round, a driver that negotiated
  // VIRTIO_NET_F_GUEST_ANNOUNCE gets VIRTIO_NET_S_ANNOUNCE and a configuration interrupt (it
  // sends gratuitous ARPs and acknowledges); otherwise the device sends a RARP from its MAC,
  // as QEMU does. A new call restarts the rounds. Any thread.
  virtual void Announce(const AnnounceParams& params) = 0;
  virtual NetCounters net_counters() const = 0;
  virtual uint16_t pairs_in_use() const = 0;
};

Result<std::shared_ptr<NetDevice>> CreateVirtioNet(std::unique_ptr<NetBackend> backend,
                                                   const NetOptions& options,
                                                   asio::io_context* loop);
// Multiqueue (VIRTIO_NET_F_MQ when more than one): queue pair k on backends[k] (the queues of
// one multiqueue tap), at most kMaxNetQueuePairs.
inline constexpr size_t kMaxNetQueuePairs = 16;
Result<std::shared_ptr<NetDevice>> CreateVirtioNet(
    std::vector<std::unique_ptr<NetBackend>> backends, const NetOptions& options,
    asio::io_context* loop);

}  // namespace kite::virtio
