#include "base/units.h"

#include <cstdio>

namespace kite {

Result<uint64_t> ParseSize(std::string_view text) {
  auto bad = [&] {
    return Err("invalid size '" + std::string(text) + "' (expected e.g. 512, 128M, 2G)");
  };
  if (text.empty()) return bad();
  uint64_t whole = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    if (whole > (UINT64_MAX - 9) / 10) return bad();
    whole = whole * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  if (i == 0) return bad();
  uint64_t frac_num = 0, frac_den = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t digits = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, ++digits) {
      if (digits < 9) {
        frac_num = frac_num * 10 + static_cast<uint64_t>(text[i] - '0');
        frac_den *= 10;
      }
    }
    if (digits == 0) return bad();
  }
  unsigned shift = 0;
  if (i < text.size()) {
    switch (text[i]) {
      case 'b': case 'B': shift = 0; break;
      case 'k': case 'K': shift = 10; break;
      case 'm': case 'M': shift = 20; break;
      case 'g': case 'G': shift = 30; break;
      case 't': case 'T': shift = 40; break;
      case 'p': case 'P': shift = 50; break;
      case 'e': case 'E': shift = 60; break;
      default: return bad();
    }
    ++i;
    if (i < text.size() && (text[i] == 'i' || text[i] == 'I')) ++i;  // "MiB"
    if (i < text.size() && (text[i] == 'b' || text[i] == 'B') && shift != 0) ++i;
  }
  if (i != text.size()) return bad();
  if (shift > 0 && (whole >> (64 - shift)) != 0) return bad();
  uint64_t bytes = whole << shift;
  if (frac_num != 0) {
    if (shift == 0) return bad();  // fractional bytes
    unsigned __int128 extra = (static_cast<unsigned __int128>(frac_num) << shift) / frac_den;
    if (extra > UINT64_MAX - bytes) return bad();
    bytes += static_cast<uint64_t>(extra);
  }
  return bytes;
}

std::string FormatSize(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  int unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024 && unit < 6) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g %s", value, kUnits[unit]);
  return text;
}

std::string ToHex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof(text), "%llx", static_cast<unsigned long long>(value));
  return text;
}

}  // namespace kite
