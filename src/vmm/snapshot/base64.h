// Base64 (RFC 4648 §4: standard alphabet, '=' padding) for binary blobs inside snapshot JSON,
// such as raw KVM structs. Decoding is strict: the input is untrusted, so anything but the
// canonical encoding (wrong length, stray characters, misplaced padding, non-zero unused bits)
// is refused.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kite::snapshot {

std::string Base64Encode(std::span<const uint8_t> data);
Result<std::vector<uint8_t>> Base64Decode(std::string_view text);

}  // namespace kite::snapshot
