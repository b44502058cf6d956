// Frame builders and parsers for the virtio-net tests: Ethernet, ARP, IPv4/UDP/TCP and a DHCP
// DISCOVER, built byte by byte (network byte order), so the tests need no packet library.
#pragma once

#include <sys/uio.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "virtio/net.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio::nettest {

inline constexpr MacAddress kGuestMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

// Runs the loop until `done` or `seconds` pass (the backend tests drive a real event loop).
inline bool RunUntil(asio::io_context* loop, const std::function<bool()>& done,
                     double seconds = 5) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    loop->restart();
    loop->run_for(std::chrono::milliseconds(5));
  }
  return true;
}
inline constexpr uint16_t kEthertypeIpv4 = 0x0800;
inline constexpr uint16_t kEthertypeArp = 0x0806;
inline constexpr uint16_t kEthertypeTest = 0x88b5;  // IEEE "local experimental"

// The bytes of a frame a backend was handed as iovecs, in one piece.
inline std::vector<uint8_t> Gather(std::span<const iovec> iov) {
  std::vector<uint8_t> frame;
  for (const iovec& v : iov) {
    auto* p = static_cast<const uint8_t*>(v.iov_base);
    frame.insert(frame.end(), p, p + v.iov_len);
  }
  return frame;
}

// A virtio-net header with the given fields (the rest zero).
inline net::Header Hdr(uint8_t flags, uint8_t gso_type = net::kGsoNone, uint16_t gso_size = 0,
                       uint16_t csum_start = 0, uint16_t csum_offset = 0) {
  net::Header hdr{};
  hdr.flags = flags;
  hdr.gso_type = gso_type;
  hdr.gso_size = gso_size;
  hdr.csum_start = csum_start;
  hdr.csum_offset = csum_offset;
  return hdr;
}

uint32_t Ipv4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);
uint16_t Get16(std::span<const uint8_t> bytes, size_t offset);  // big-endian
uint32_t Get32(std::span<const uint8_t> bytes, size_t offset);

// An Ethernet frame of `size` bytes (>= 14) with a recognisable payload: byte i of the
// payload is (seed + i) & 0xff.
std::vector<uint8_t> TestFrame(size_t size, uint8_t seed = 0, uint16_t ethertype = kEthertypeTest);
// An ARP request from `mac`/`sender_ip` for `target_ip` (padded to 60 bytes).
std::vector<uint8_t> ArpRequest(const MacAddress& mac, uint32_t sender_ip, uint32_t target_ip);
// An ARP reply from `mac`/`sender_ip` to `target_mac`/`target_ip`.
std::vector<uint8_t> ArpReply(const MacAddress& mac, uint32_t sender_ip,
                              const MacAddress& target_mac, uint32_t target_ip);
// A broadcast DHCP DISCOVER from `mac` with transaction id `xid`.
std::vector<uint8_t> DhcpDiscover(const MacAddress& mac, uint32_t xid);

struct ArpInfo {
  uint16_t op;
  uint32_t sender_ip;
  uint32_t target_ip;
  MacAddress sender_mac;
};
std::optional<ArpInfo> ParseArp(std::span<const uint8_t> frame);

struct DhcpInfo {
  uint32_t xid;
  uint32_t your_ip;
  uint8_t message_type;  // option 53
};
std::optional<DhcpInfo> ParseDhcp(std::span<const uint8_t> frame);

struct TcpInfo {
  uint32_t dst_ip;
  uint16_t dst_port;
  uint8_t flags;
};
std::optional<TcpInfo> ParseTcp(std::span<const uint8_t> frame);

}  // namespace kite::virtio::nettest
