// Hex(): "0x1f00", for addresses and fields in the loader's error messages.
#pragma once

#include <cstdint>
#include <string>

#include "base/units.h"

namespace kite::boot {

inline std::string Hex(uint64_t value) {
  return "0x" + ToHex(value);
}

}  // namespace kite::boot
