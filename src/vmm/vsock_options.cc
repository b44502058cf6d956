// Parsing and checking of the virtio-vsock option. See vsock_options.h.
#include "vmm/vsock_options.h"

#include <sys/un.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "base/key_values.h"
#include "virtio/vsock_cid.h"

namespace kite::cli {
namespace {

// The longest port suffix a guest can ask for: "_4294967295".
constexpr size_t kPortSuffixBytes = 11;

Result<uint64_t> ParseCid(const std::string& text) {
  uint64_t cid = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), cid);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return Err("cid=" + text + ": not a number");
  }
  return cid;
}

}  // namespace

Result<VsockConfig> ParseVsockOption(std::string_view text) {
  VsockConfig vsock;
  for (const KeyValue& kv : SplitKeyValues(text)) {
    if (kv.key == "cid") {
      vsock.cid = TRY(ParseCid(kv.value));
    } else if (kv.key == "uds" || kv.key == "uds_path" || kv.key == "socket") {
      vsock.uds_path = kv.value;
    } else {
      return Err("unknown vsock setting '" + kv.text() + "' (expected cid=, uds=)");
    }
  }
  TRY(ValidateVsock(vsock));
  return vsock;
}

Result<VsockConfig> VsockFromJson(const nlohmann::json& v) {
  if (!v.is_object()) return Err("'vsock' must be an object {\"cid\": N, \"uds_path\": PATH}");
  VsockConfig vsock;
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (it.key() == "cid" && it->is_number_unsigned()) {
      vsock.cid = it->get<uint64_t>();
    } else if (it.key() == "uds_path" && it->is_string()) {
      vsock.uds_path = it->get<std::string>();
    } else {
      return Err("vsock: '" + it.key() +
                 "' is not a setting (expected \"cid\": a number, \"uds_path\": a string)");
    }
  }
  TRY(ValidateVsock(vsock));
  return vsock;
}

nlohmann::json VsockToJson(const VsockConfig& vsock) {
  return {{"cid", vsock.cid}, {"uds_path", vsock.uds_path}};
}

Result<void> ValidateVsock(const VsockConfig& vsock) {
  TRY_CTX(virtio::CheckGuestCid(vsock.cid), "vsock cid");
  size_t max = sizeof(sockaddr_un::sun_path) - 1 - kPortSuffixBytes;
  if (vsock.uds_path.empty() || vsock.uds_path.size() > max) {
    return Err("vsock uds path '" + vsock.uds_path + "' must be 1 to " + std::to_string(max) +
               " bytes (guest connections go to PATH_<port>)");
  }
  return {};
}

}  // namespace kite::cli
