// Storage test helpers. See storage_test_util.h.
#include "storage_test_util.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <fstream>

#include "testing/temp_dir.h"

namespace kite::storage::testing {

CommandResult Run(const std::string& command) {
  CommandResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void PatchFile(const std::string& path, uint64_t offset, const std::vector<uint8_t>& bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

void PatchBe32(const std::string& path, uint64_t offset, uint32_t v) {
  PatchFile(path, offset, {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)});
}

void PatchBe64(const std::string& path, uint64_t offset, uint64_t v) {
  std::vector<uint8_t> b(8);
  for (int i = 7; i >= 0; --i, v >>= 8) b[i] = uint8_t(v);
  PatchFile(path, offset, b);
}

uint64_t ReadBe64(const std::string& path, uint64_t offset) {
  std::ifstream f(path, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  uint8_t b[8] = {};
  f.read(reinterpret_cast<char*>(b), 8);
  uint64_t v = 0;
  for (uint8_t x : b) v = (v << 8) | x;
  return v;
}

std::vector<uint8_t> Pattern(uint64_t offset, size_t len, uint32_t seed) {
  std::vector<uint8_t> out(len);
  for (size_t i = 0; i < len; ++i) {
    uint64_t x = (offset + i) * 0x9e3779b97f4a7c15ull + seed * 0x85ebca6bull;
    out[i] = static_cast<uint8_t>((x >> 29) ^ (x >> 47) ^ seed) | 1;  // never zero
  }
  return out;
}

std::unique_ptr<DiskImage> OpenForTest(const std::string& path, ImageFormat format,
                                       bool read_only) {
  OpenOptions o;
  o.read_only = read_only;
  auto r = OpenImage(path, format, o);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
  return r ? std::move(*r) : nullptr;
}

std::vector<uint8_t> ReadAll(DiskImage& image) {
  std::vector<uint8_t> out(image.size());
  auto r = image.Read(0, out.data(), out.size());
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message());
  return out;
}

std::vector<uint8_t> QemuReadAll(const std::string& path, const std::string& format) {
  std::string out = path + ".oracle.raw";
  CommandResult r =
      Run("qemu-img convert -U -f " + format + " -O raw '" + path + "' '" + out + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string data = kite::testing::ReadFile(out);
  std::remove(out.c_str());
  return std::vector<uint8_t>(data.begin(), data.end());
}

}  // namespace kite::storage::testing
