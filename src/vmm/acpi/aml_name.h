// AML names: NameString (ACPI 6.5 §20.2.2) and compressed EISA ids (§19.6.35), checked at
// compile time when built from literals (consteval), so an invalid name does not compile.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.h"

namespace kite::acpi::aml {

// An encoded NameString (ACPI 6.5 §20.2.2): optional root '\' or parent '^' prefixes, then
// dot-separated name segments of 1-4 characters ([A-Z_][A-Z0-9_]*), padded with '_'.
class NameString {
 public:
  static constexpr size_t kMaxEncoded = 64;

  consteval NameString(const char* path) { EncodeOrThrow(path); }  // NOLINT: implicit
  // For names built at run time; refuses what the consteval constructor would not compile.
  static Result<NameString> Parse(std::string_view path);

  std::span<const uint8_t> bytes() const { return {bytes_.data(), size_}; }

 private:
  constexpr NameString() = default;
  // Returns false on an invalid path; the consteval caller turns that into a compile error.
  constexpr bool Encode(std::string_view path);
  consteval void EncodeOrThrow(const char* path) {
    if (!Encode(std::string_view(path))) throw "invalid ACPI name";  // compile-time error
  }

  std::array<uint8_t, kMaxEncoded> bytes_{};
  size_t size_ = 0;
};

// Compressed EISA id: EisaIdValue("PNP0501") == 0x0105d041.
consteval uint32_t EisaIdValue(const char* id);

consteval uint32_t EisaIdValue(const char* id) {
  auto hex = [](char c) -> uint32_t {
    if (c >= '0' && c <= '9') return static_cast<uint32_t>(c - '0');
    if (c >= 'A' && c <= 'F') return static_cast<uint32_t>(c - 'A' + 10);
    throw "EISA id: bad hex digit";
  };
  for (int i = 0; i < 3; ++i) {
    if (id[i] < 'A' || id[i] > 'Z') throw "EISA id: bad vendor letter";
  }
  if (id[7] != '\0') throw "EISA id: must be 7 characters";
  uint32_t v = ((static_cast<uint32_t>(id[0]) & 0x1f) << 26) |
               ((static_cast<uint32_t>(id[1]) & 0x1f) << 21) |
               ((static_cast<uint32_t>(id[2]) & 0x1f) << 16) | (hex(id[3]) << 12) |
               (hex(id[4]) << 8) | (hex(id[5]) << 4) | hex(id[6]);
  // Stored big-endian: the byte order of the 32-bit integer is swapped.
  return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >> 8) & 0xff00) | (v >> 24);
}

constexpr bool NameString::Encode(std::string_view path) {
  size_t pos = 0;
  size_ = 0;
  auto put = [this](uint8_t b) {
    if (size_ >= kMaxEncoded) return false;
    bytes_[size_++] = b;
    return true;
  };
  if (!path.empty() && path[0] == '\\') {
    if (!put('\\')) return false;
    pos = 1;
  } else {
    while (pos < path.size() && path[pos] == '^') {
      if (!put('^')) return false;
      ++pos;
    }
  }
  std::string_view rest = path.substr(pos);
  size_t segs = rest.empty() ? 0 : 1;
  for (char c : rest) segs += (c == '.') ? 1 : 0;
  if (segs == 0) return put(0x00);  // NullName
  if (segs > 255) return false;
  if (segs == 2 && !put(0x2e)) return false;                                      // DualNamePrefix
  if (segs > 2 && !(put(0x2f) && put(static_cast<uint8_t>(segs)))) return false;  // MultiName
  while (true) {
    size_t dot = rest.find('.');
    std::string_view seg = rest.substr(0, dot);
    if (seg.empty() || seg.size() > 4) return false;
    for (size_t i = 0; i < 4; ++i) {
      char c = i < seg.size() ? seg[i] : '_';
      bool lead = (c >= 'A' && c <= 'Z') || c == '_';
      bool ok = lead || (i > 0 && c >= '0' && c <= '9');
      if (!ok || !put(static_cast<uint8_t>(c))) return false;
    }
    if (dot == std::string_view::npos) break;
    rest = rest.substr(dot + 1);
  }
  return true;
}

}  // namespace kite::acpi::aml
