// Sizes as people write them: "128M", "2G", "4096", "1.5G" (binary units, as QEMU reads them).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kite {

// Parses a byte count with an optional suffix k/K, M, G, T, P, E (powers of 1024) or B.
// A bare number is bytes. Refuses negatives, garbage and values that overflow 64 bits.
Result<uint64_t> ParseSize(std::string_view text);

// "128 MiB", "1.5 GiB", "512 B": the way qemu-img prints sizes to people.
std::string FormatSize(uint64_t bytes);

// "1f00": lower-case hexadecimal without a prefix.
std::string ToHex(uint64_t value);

}  // namespace kite
