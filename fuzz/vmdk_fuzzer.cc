// libFuzzer target for the VMDK reader (src/storage/vmdk/vmdk_image.cc, vmdk_format.cc):
// the input is a VMDK file (in a memfd, opened by path as `kite-img convert -f vmdk` opens
// one) that goes through the header, footer (stream-optimized, GD_AT_END), embedded
// descriptor and grain directory checks; an image that opens is then read — the first sector
// of each of its first grains, the last sector of the disk, a read across a grain boundary —
// and mapped with BlockStatus. Nothing may crash, hang or allocate without bound (BAD_INPUTS
// I30); `kite-img info` describes it, as JSON and as text. Checks beyond the sanitizers: the
// image is read-only and refuses writes, and BlockStatus returns a non-empty extent inside
// the disk where it succeeds.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_read_only_image.h"
#include "storage/img/cli.h"
#include "storage/img/commands.h"
#include "storage/vmdk/vmdk_image.h"

namespace {

using kite::storage::DiskImage;

constexpr size_t kMaxInput = 4 << 20;
constexpr uint64_t kSector = 512;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "vmdk_fuzzer: invariant violated: %s\n", what);
  std::abort();
}

// Checks the read-only invariants (fuzz_read_only_image.h), then reads at 64 KiB steps
// (qemu-img's grain size), at the end and across a grain boundary.
void Exercise(DiskImage& image) {
  const uint64_t size = image.size();
  std::vector<uint8_t> buf(2 * kSector);
  if (const char* violated = kite::fuzz::CheckReadOnlyImage(image)) Fail(violated);
  if (size < kSector) {
    (void)image.Read(0, buf.data(), size);
    return;
  }
  for (uint64_t at = 0, n = 0; at < size && n < 8; at += 64 * 1024, ++n) {
    (void)image.Read(at, buf.data(), kSector);
  }
  (void)image.Read(size - kSector, buf.data(), kSector);
  if (size >= 64 * 1024 + kSector) (void)image.Read(64 * 1024 - kSector, buf.data(), 2 * kSector);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  int fd = memfd_create("vmdk-fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (write(fd, data, size) == static_cast<ssize_t>(size)) {
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    auto image = kite::storage::OpenVmdk(path);
    if (image) {
      Exercise(**image);
      std::ostringstream out, err;
      kite::img::Console console{out, err};
      for (auto output : {kite::img::OutputFormat::kJson, kite::img::OutputFormat::kHuman}) {
        (void)kite::img::RunInfo({.format = "vmdk", .output = output, .filename = path}, console);
      }
    }
  }
  close(fd);
  return 0;
}
