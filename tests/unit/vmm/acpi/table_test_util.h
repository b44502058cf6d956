// Helpers for the ACPI table tests: little-endian field reads and table lookup by signature.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/acpi/acpi_tables.h"

namespace kite::acpi::testing {

inline uint64_t Le(const std::vector<uint8_t>& t, size_t off, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= uint64_t{t.at(off + i)} << (8 * i);
  return v;
}

inline uint8_t Sum(const std::vector<uint8_t>& t, size_t len) {
  uint8_t s = 0;
  for (size_t i = 0; i < len; ++i) s = static_cast<uint8_t>(s + t.at(i));
  return s;
}

inline const std::vector<uint8_t>& Table(const std::vector<AcpiTable>& tables,
                                         const std::string& signature) {
  for (const auto& [sig, bytes] : tables) {
    if (sig == signature) return bytes;
  }
  ADD_FAILURE() << "no " << signature << " table";
  static const std::vector<uint8_t> kEmpty;
  return kEmpty;
}

// Occurrences of `needle` in `haystack`.
inline size_t Count(const std::vector<uint8_t>& haystack, const std::string& needle) {
  size_t n = 0;
  std::string s(haystack.begin(), haystack.end());
  for (size_t pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + 1)) ++n;
  return n;
}

}  // namespace kite::acpi::testing
