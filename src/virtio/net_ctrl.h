// The virtio-net control queue's commands (virtio 1.2 section 5.1.6.5) and the receive filter
// they set (QEMU's receive_filter), as pure functions over a plain state: no queue, no guest
// memory, no locks. net_ctrl_queue.cc feeds them the bytes of each control request; the
// receive path asks RxFilterAccepts for every frame; the fuzzer and the unit tests call them
// directly.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "virtio/net.h"

namespace kite::virtio {

// QEMU's MAC_TABLE_ENTRIES: unicast and multicast entries together. A table set with more
// entries than fit is not stored; its kind is then accepted as a whole (overflow).
inline constexpr size_t kMacTableEntries = 64;

// What the driver asked for with VIRTIO_NET_CTRL_RX and VIRTIO_NET_CTRL_MAC_TABLE_SET.
// After a reset everything is received (promisc on), as in QEMU: a driver that never uses the
// control queue gets every frame.
struct RxFilter {
  bool promisc = true;
  bool allmulti = false;
  bool alluni = false;  // VIRTIO_NET_F_CTRL_RX_EXTRA
  bool nomulti = false;
  bool nouni = false;
  bool nobcast = false;
  bool uni_overflow = false;
  bool multi_overflow = false;
  std::vector<MacAddress> uni;    // besides the device's own MAC
  std::vector<MacAddress> multi;  // uni.size() + multi.size() <= kMacTableEntries
  bool operator==(const RxFilter&) const = default;
};

// The device state the control queue changes.
struct NetCtrlState {
  RxFilter filter;
  MacAddress mac{};     // the configuration space's MAC (VIRTIO_NET_CTRL_MAC_ADDR_SET)
  uint16_t pairs = 1;   // queue pairs the driver uses (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET)
  uint16_t status = 0;  // VIRTIO_NET_S_* (ANNOUNCE_ACK clears VIRTIO_NET_S_ANNOUNCE)
  bool operator==(const NetCtrlState&) const = default;
};

// What a command may do, beyond the state: negotiated features, the device's pair count and,
// with MAC pinning, the only MAC the driver may set.
struct NetCtrlLimits {
  uint64_t features = 0;
  uint16_t max_pairs = 1;
  const MacAddress* pinned_mac = nullptr;
};

// Applies one control request — `request` is its whole device-readable part: class, command,
// data — to `state`. Returns VIRTIO_NET_OK, or VIRTIO_NET_ERR with `state` unchanged: a request
// shorter than its header, an unknown class or command, one whose feature was not negotiated,
// data of the wrong length (MAC_TABLE_SET: tables whose entry counts do not add up to the
// bytes given), a multicast or zero MAC, a pair count outside 1..max_pairs, an ANNOUNCE_ACK
// with no announcement pending.
uint8_t ApplyNetCtrl(std::span<const uint8_t> request, const NetCtrlLimits& limits,
                     NetCtrlState* state);

// Whether a frame for `dest` (its first six bytes; a shorter frame only in promiscuous mode)
// reaches a driver that set `filter`, the device's MAC being `mac`.
bool RxFilterAccepts(const RxFilter& filter, const MacAddress& mac, std::span<const uint8_t> frame);

// A source MAC that is not `mac` (G25 with MAC pinning): frames shorter than an Ethernet
// header are spoofed too.
bool SourceMacSpoofed(const MacAddress& mac, std::span<const uint8_t> ethernet_header);

}  // namespace kite::virtio
