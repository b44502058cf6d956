// Helpers for the storage tests: running qemu-img/qemu-io (the oracle), patching image bytes,
// deterministic test patterns.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "storage/disk_image.h"

namespace kite::storage::testing {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs a shell command line.
CommandResult Run(const std::string& command);
// Tests that need qemu-img or qemu-io ask for them with testing/tool_required.h: a missing tool
// skips the test (or only its oracle check), and fails it under CI=true.

// Overwrites bytes of a file at `offset`.
void PatchFile(const std::string& path, uint64_t offset, const std::vector<uint8_t>& bytes);
void PatchBe32(const std::string& path, uint64_t offset, uint32_t value);
void PatchBe64(const std::string& path, uint64_t offset, uint64_t value);
uint64_t ReadBe64(const std::string& path, uint64_t offset);

// A byte pattern that depends on offset and seed (so misplaced data is detected).
std::vector<uint8_t> Pattern(uint64_t offset, size_t len, uint32_t seed);

// Opens an image for tests (explicit format; read-write unless `read_only`).
std::unique_ptr<DiskImage> OpenForTest(const std::string& path, ImageFormat format,
                                       bool read_only = false);
// Reads the whole disk.
std::vector<uint8_t> ReadAll(DiskImage& image);
// Reads `path` through `qemu-img convert -O raw` (the oracle's view of the guest data).
std::vector<uint8_t> QemuReadAll(const std::string& path, const std::string& format);

}  // namespace kite::storage::testing
