// Frame builders and parsers for the virtio-net tests (net_test_frames.h).
#include "net_test_frames.h"

#include <cstring>

namespace kite::virtio::nettest {
namespace {

constexpr MacAddress kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

void Put16(std::vector<uint8_t>* out, uint16_t v) {
  out->push_back(static_cast<uint8_t>(v >> 8));
  out->push_back(static_cast<uint8_t>(v));
}
void Put32(std::vector<uint8_t>* out, uint32_t v) {
  Put16(out, static_cast<uint16_t>(v >> 16));
  Put16(out, static_cast<uint16_t>(v));
}
void PutMac(std::vector<uint8_t>* out, const MacAddress& mac) {
  out->insert(out->end(), mac.begin(), mac.end());
}
void Ethernet(std::vector<uint8_t>* out, const MacAddress& dst, const MacAddress& src,
              uint16_t type) {
  PutMac(out, dst);
  PutMac(out, src);
  Put16(out, type);
}

uint16_t IpChecksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += uint32_t{data[i]} << 8 | data[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace

uint32_t Ipv4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d;
}
uint16_t Get16(std::span<const uint8_t> bytes, size_t offset) {
  return static_cast<uint16_t>(bytes[offset] << 8 | bytes[offset + 1]);
}
uint32_t Get32(std::span<const uint8_t> bytes, size_t offset) {
  return uint32_t{Get16(bytes, offset)} << 16 | Get16(bytes, offset + 2);
}

std::vector<uint8_t> TestFrame(size_t size, uint8_t seed, uint16_t ethertype) {
  std::vector<uint8_t> frame;
  Ethernet(&frame, kBroadcast, kGuestMac, ethertype);
  for (size_t i = 0; frame.size() < size; ++i) frame.push_back(static_cast<uint8_t>(seed + i));
  frame.resize(size);
  return frame;
}

std::vector<uint8_t> ArpReply(const MacAddress& mac, uint32_t sender_ip,
                              const MacAddress& target_mac, uint32_t target_ip) {
  std::vector<uint8_t> frame;
  Ethernet(&frame, target_mac, mac, kEthertypeArp);
  Put16(&frame, 1);       // Ethernet
  Put16(&frame, 0x0800);  // IPv4
  frame.push_back(6);
  frame.push_back(4);
  Put16(&frame, 2);  // reply
  PutMac(&frame, mac);
  Put32(&frame, sender_ip);
  PutMac(&frame, target_mac);
  Put32(&frame, target_ip);
  frame.resize(60, 0);
  return frame;
}

std::vector<uint8_t> ArpRequest(const MacAddress& mac, uint32_t sender_ip, uint32_t target_ip) {
  std::vector<uint8_t> frame = ArpReply(mac, sender_ip, MacAddress{}, target_ip);
  std::memcpy(frame.data(), kBroadcast.data(), 6);
  frame[21] = 1;  // request
  return frame;
}

std::vector<uint8_t> DhcpDiscover(const MacAddress& mac, uint32_t xid) {
  std::vector<uint8_t> bootp;
  bootp.push_back(1);  // BOOTREQUEST
  bootp.push_back(1);  // Ethernet
  bootp.push_back(6);
  bootp.push_back(0);
  Put32(&bootp, xid);
  Put16(&bootp, 0);
  Put16(&bootp, 0x8000);               // broadcast reply
  bootp.resize(bootp.size() + 16, 0);  // ciaddr, yiaddr, siaddr, giaddr
  PutMac(&bootp, mac);
  bootp.resize(236, 0);                        // chaddr padding, sname, file
  Put32(&bootp, 0x63825363);                   // DHCP magic cookie
  bootp.insert(bootp.end(), {53, 1, 1, 255});  // DHCPDISCOVER, end
  bootp.resize(236 + 312, 0);                  // the full options field, as slirp expects

  std::vector<uint8_t> frame;
  Ethernet(&frame, kBroadcast, mac, kEthertypeIpv4);
  size_t ip = frame.size();
  frame.push_back(0x45);
  frame.push_back(0);
  Put16(&frame, static_cast<uint16_t>(20 + 8 + bootp.size()));
  Put32(&frame, 0);  // id, flags, fragment offset
  frame.push_back(64);
  frame.push_back(17);  // UDP
  Put16(&frame, 0);     // checksum, below
  Put32(&frame, 0);
  Put32(&frame, 0xffffffff);
  uint16_t sum = IpChecksum(frame.data() + ip, 20);
  frame[ip + 10] = static_cast<uint8_t>(sum >> 8);
  frame[ip + 11] = static_cast<uint8_t>(sum);
  Put16(&frame, 68);
  Put16(&frame, 67);
  Put16(&frame, static_cast<uint16_t>(8 + bootp.size()));
  Put16(&frame, 0);  // no UDP checksum
  frame.insert(frame.end(), bootp.begin(), bootp.end());
  return frame;
}

std::optional<ArpInfo> ParseArp(std::span<const uint8_t> f) {
  if (f.size() < 42 || Get16(f, 12) != kEthertypeArp) return std::nullopt;
  ArpInfo info{Get16(f, 20), Get32(f, 28), Get32(f, 38), {}};
  std::memcpy(info.sender_mac.data(), f.data() + 22, 6);
  return info;
}

std::optional<DhcpInfo> ParseDhcp(std::span<const uint8_t> f) {
  if (f.size() < 14 + 20 + 8 + 240 || Get16(f, 12) != kEthertypeIpv4 || f[23] != 17) {
    return std::nullopt;
  }
  size_t udp = 14 + (f[14] & 0xf) * 4;
  if (Get16(f, udp + 2) != 68) return std::nullopt;
  size_t bootp = udp + 8;
  if (f.size() < bootp + 240 || f[bootp] != 2) return std::nullopt;
  DhcpInfo info{Get32(f, bootp + 4), Get32(f, bootp + 16), 0};
  for (size_t i = bootp + 240; i + 1 < f.size() && f[i] != 255;) {
    if (f[i] == 0) {
      ++i;
      continue;
    }
    if (f[i] == 53 && i + 2 < f.size()) info.message_type = f[i + 2];
    i += 2 + f[i + 1];
  }
  return info;
}

std::optional<TcpInfo> ParseTcp(std::span<const uint8_t> f) {
  if (f.size() < 14 + 20 + 20 || Get16(f, 12) != kEthertypeIpv4 || f[23] != 6) {
    return std::nullopt;
  }
  size_t tcp = 14 + (f[14] & 0xf) * 4;
  if (f.size() < tcp + 20) return std::nullopt;
  return TcpInfo{Get32(f, 30), Get16(f, tcp + 2), f[tcp + 13]};
}

}  // namespace kite::virtio::nettest
