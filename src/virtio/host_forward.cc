// ParseHostForward (net_backend.h): QEMU's hostfwd syntax for the user-mode NAT backend,
//   [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport
// e.g. "tcp::2222-:22" or "udp:127.0.0.1:5555-10.0.2.15:5555". An empty protocol means tcp
// (as in QEMU); addresses are dotted IPv4 (empty = the defaults in HostForward); ports are
// 1-65535. Pure, any thread.
#include <arpa/inet.h>

#include <charconv>
#include <string_view>

#include "virtio/net_backend.h"

namespace kite::virtio {
namespace {

Result<uint16_t> ParsePort(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0 ||
      value > 65535) {
    return Err("bad port '" + std::string(text) + "'");
  }
  return static_cast<uint16_t>(value);
}

Result<void> CheckAddress(const std::string& text) {
  in_addr addr;
  if (!text.empty() && inet_pton(AF_INET, text.c_str(), &addr) != 1) {
    return Err("bad IPv4 address '" + text + "'");
  }
  return {};
}

// "addr:port" → address (maybe empty) and port.
Result<void> ParseEndpoint(std::string_view text, std::string* addr, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return Err("expected [address]:port");
  *addr = std::string(text.substr(0, colon));
  TRY(CheckAddress(*addr));
  *port = TRY(ParsePort(text.substr(colon + 1)));
  return {};
}

Result<HostForward> Parse(std::string_view text) {
  HostForward fwd;
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return Err("expected [tcp|udp]:...");
  std::string_view proto = text.substr(0, colon);
  if (proto == "udp") {
    fwd.udp = true;
  } else if (!proto.empty() && proto != "tcp") {
    return Err("unknown protocol '" + std::string(proto) + "'");
  }
  std::string_view rest = text.substr(colon + 1);
  size_t dash = rest.find('-');
  if (dash == std::string_view::npos) return Err("expected host-guest");
  TRY(ParseEndpoint(rest.substr(0, dash), &fwd.host_addr, &fwd.host_port));
  TRY(ParseEndpoint(rest.substr(dash + 1), &fwd.guest_addr, &fwd.guest_port));
  return fwd;
}

}  // namespace

Result<HostForward> ParseHostForward(const std::string& text) {
  Result<HostForward> fwd = Parse(text);
  if (!fwd) return std::move(fwd).error().Context("host forward '" + text + "'");
  return fwd;
}

}  // namespace kite::virtio
