// The virtio-vsock option of `kite run` and the JSON config, parsed into VsockConfig
// (include/kite/kite.h) and checked. Pure code; docs/CLI.md and docs/VSOCK.md are the
// reference.
//
//   --vsock cid=N,uds=PATH        (Cloud Hypervisor's socket= and the JSON name uds_path= are
//                                  accepted for uds=)
//   "vsock": {"cid": N, "uds_path": "PATH"}
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string_view>

#include "base/result.h"
#include "kite/kite.h"

namespace kite::cli {

inline constexpr const char* kVsockId = "vsock0";

Result<VsockConfig> ParseVsockOption(std::string_view text);
Result<VsockConfig> VsockFromJson(const nlohmann::json& v);
nlohmann::json VsockToJson(const VsockConfig& vsock);
// The CID (3 to 4294967294) and the socket path (1 to 107 bytes, with room for "_<port>").
Result<void> ValidateVsock(const VsockConfig& vsock);

}  // namespace kite::cli
