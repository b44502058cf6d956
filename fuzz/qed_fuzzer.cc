// libFuzzer target for the read-only QED reader (src/storage/qed/): the input is a QED file,
// opened as `kite run --disk ...,format=qed,readonly=on` opens one (storage OpenImage), which
// checks the header, the backing file name and every used L1 entry, and resolves a backing
// file. An image that opens is read (the first sector of each of its first clusters, the last
// sector, reads across cluster boundaries), mapped with BlockStatus, described by
// `kite-img info` and checked by `kite-img check` (JSON and text; check walks every table). Nothing
// may crash, hang or allocate without bound (BAD_INPUTS I2-I31). Checks beyond the sanitizers: the
// image is read-only and refuses writes; BlockStatus returns a non-empty extent inside the disk
// where it succeeds.
//
// The image lives in a private temporary directory that is also the backing root, holding the
// only files a backing name may reach: base.raw and base.qcow2; it is removed when the fuzzer
// ends, however it ends.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_private_dir.h"
#include "fuzz_read_only_image.h"
#include "storage/disk_image.h"
#include "storage/img/cli.h"
#include "storage/img/commands.h"
#include "storage/qcow2/qcow2.h"

namespace {

using kite::storage::DiskImage;

constexpr size_t kMaxInput = 4 << 20;
constexpr uint64_t kSector = 512;
constexpr uint64_t kBaseSize = 256 << 10;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "qed_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

const std::string& TheDir() {
  static std::string* dir = [] {
    std::string tmpl = kite::fuzz::MakePrivateDir("kite-qed-fuzz");
    if (tmpl.empty()) Fail("mkdtemp failed");
    std::vector<char> pattern(kBaseSize);
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>(i * 13 + 7);
    std::ofstream(tmpl + "/base.raw", std::ios::binary).write(pattern.data(), kBaseSize);
    kite::storage::Qcow2CreateOptions opts{.size = kBaseSize,
                                           .cluster_size = 4096,
                                           .backing_file = "base.raw",
                                           .backing_format = "raw"};
    if (!kite::storage::CreateQcow2(tmpl + "/base.qcow2", opts)) Fail("creating base.qcow2");
    return new std::string(tmpl);
  }();
  return *dir;
}

void Exercise(DiskImage& image) {
  const uint64_t size = image.size();
  std::vector<uint8_t> buf(2 * kSector);
  if (const char* violated = kite::fuzz::CheckReadOnlyImage(image)) Fail(violated);
  if (size < 2 * kSector) {
    (void)image.Read(0, buf.data(), size);
    return;
  }
  for (uint64_t at = 0, n = 0; at < size && n < 8; at += 4096, ++n) {
    (void)image.Read(at, buf.data(), kSector);
  }
  for (uint64_t at = 65536, n = 0; at < size && n < 8; at += 65536, ++n) {
    (void)image.Read(at - kSector, buf.data(), 2 * kSector);  // across a cluster boundary
  }
  (void)image.Read(size - kSector, buf.data(), kSector);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  const std::string& dir = TheDir();
  const std::string path = dir + "/top.qed";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) Fail("writing the image");
  }
  kite::storage::OpenOptions options{
      .read_only = true, .max_backing_depth = 4, .backing_root = dir, .lock = false};
  auto image = kite::storage::OpenImage(path, kite::storage::ImageFormat::kQed, options);
  if (image) {
    Exercise(**image);
  }
  std::ostringstream out, err;
  kite::img::Console console{out, err};
  for (auto output : {kite::img::OutputFormat::kJson, kite::img::OutputFormat::kHuman}) {
    (void)kite::img::RunInfo({.format = "qed", .output = output, .filename = path}, console);
    (void)kite::img::RunCheck({.format = "qed", .output = output, .filename = path}, console);
  }
  return 0;
}
