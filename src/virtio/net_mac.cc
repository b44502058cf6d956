// MAC addresses for virtio-net (net.h): parsing "52:54:00:12:34:56", formatting, and
// generating a locally administered unicast address. Pure functions, any thread.
#include <sys/random.h>

#include <cstdio>
#include <random>

#include "virtio/net.h"

namespace kite::virtio {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<MacAddress> ParseMac(const std::string& text) {
  // Exactly six two-digit hex bytes separated by ':' (17 characters).
  MacAddress mac{};
  if (text.size() != 17) return Err("MAC address '" + text + "': expected xx:xx:xx:xx:xx:xx");
  for (size_t i = 0; i < mac.size(); ++i) {
    int hi = HexDigit(text[i * 3]);
    int lo = HexDigit(text[i * 3 + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':')) {
      return Err("MAC address '" + text + "': expected xx:xx:xx:xx:xx:xx");
    }
    mac[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  if (mac[0] & 1) return Err("MAC address '" + text + "' is a multicast address");
  bool zero = true;
  for (uint8_t b : mac) zero = zero && b == 0;
  if (zero) return Err("MAC address '" + text + "' is all zeros");
  return mac;
}

std::string FormatMac(const MacAddress& mac) {
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return text;
}

MacAddress GenerateMac() {
  // 52:54:00 as QEMU uses: bit 1 of the first byte (locally administered) set, bit 0
  // (multicast) clear.
  MacAddress mac{0x52, 0x54, 0x00, 0, 0, 0};
  uint8_t random[3];
  if (getrandom(random, sizeof(random), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(random))) {
    std::random_device device;
    for (uint8_t& b : random) b = static_cast<uint8_t>(device());
  }
  mac[3] = random[0];
  mac[4] = random[1];
  mac[5] = random[2];
  return mac;
}

}  // namespace kite::virtio
