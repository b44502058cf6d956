// Shared by the VMDK tests: a source disk for qemu-img to convert, and reading a whole image.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>

#include "storage/disk_image.h"
#include "testing/temp_dir.h"

namespace kite::img::testing {

// A source raw disk of 1 MiB with data in a few places, converted by qemu-img.
inline std::string MakeVmdkSource(const kite::testing::TempDir& dir) {
  std::string data(1 << 20, '\0');
  std::mt19937 rng(7);
  for (size_t i = 0; i < 4096; ++i) data[i] = static_cast<char>(rng());
  for (size_t i = 200000; i < 330000; ++i) data[i] = static_cast<char>(rng() % 3);
  std::memcpy(data.data() + (1 << 20) - 5, "tail!", 5);
  std::string path = dir.File("src.raw");
  kite::testing::WriteFile(path, data);
  return path;
}

inline std::string ReadAll(storage::DiskImage& image) {
  std::string out(image.size(), '\0');
  auto r = image.Read(0, out.data(), out.size());
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  return out;
}

}  // namespace kite::img::testing
