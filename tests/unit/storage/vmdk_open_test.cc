// VMDK through OpenImage, as `kite run` opens a disk: monolithicSparse and streamOptimized
// images qemu-img writes read equal to their raw source (cache=none too); a read-write open is
// refused naming the file, readonly=on and the qcow2 overlay; a qcow2 overlay over a VMDK
// (sparse or a monolithicFlat descriptor file) reads the base, takes the writes, and leaves
// every VMDK file byte-for-byte unchanged (qemu-img reads the overlay the same).
#include <gtest/gtest.h>

#include <cstring>

#include "storage/qcow2/qcow2.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::ReadFile;
using kite::testing::TempDir;
using kite::testing::WriteFile;
using testing::Pattern;
using testing::ReadAll;
using testing::Run;

constexpr uint64_t kDiskBytes = 2 << 20;

std::vector<uint8_t> Bytes(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

// A 2 MiB raw disk: data across the first two 64 KiB grains, a hole, data at 1 MiB, a tail.
std::string MakeSource(const TempDir& dir) {
  std::vector<uint8_t> data(kDiskBytes, 0);
  std::vector<uint8_t> a = Pattern(0, 70000, 1), b = Pattern(1 << 20, 5000, 2);
  std::memcpy(data.data(), a.data(), a.size());
  std::memcpy(data.data() + (1 << 20), b.data(), b.size());
  std::memcpy(data.data() + kDiskBytes - 5, "tail!", 5);
  std::string path = dir.File("src.raw");
  WriteFile(path, std::string(data.begin(), data.end()));
  return path;
}

// qemu-img converts `raw` to a VMDK of `subformat` and returns its path.
std::string QemuVmdk(const TempDir& dir, const std::string& raw, const std::string& subformat) {
  std::string vmdk = dir.File(subformat + ".vmdk");
  auto r = Run("qemu-img convert -f raw -O vmdk -o subformat=" + subformat + " '" + raw + "' '" +
               vmdk + "' 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return vmdk;
}

Result<std::unique_ptr<DiskImage>> Open(const std::string& path, ImageFormat format, bool read_only,
                                        CacheMode cache = CacheMode::kWriteback) {
  OpenOptions o;
  o.read_only = read_only;
  o.cache = cache;
  return OpenImage(path, format, o);
}

// kite's own qcow2 overlay (as `kite-img create -f qcow2 -b BASE -F vmdk`) over `base`.
std::string MakeOverlay(const TempDir& dir, const std::string& base) {
  Qcow2CreateOptions create;
  create.backing_file = base;
  create.backing_format = "vmdk";
  std::string overlay = dir.File("over.qcow2");
  auto created = CreateQcow2(overlay, create);
  EXPECT_TRUE(created) << created.error().message();
  return overlay;
}

void ExpectReadsAsSource(const std::string& vmdk, const std::string& src,
                         CacheMode cache = CacheMode::kWriteback) {
  auto image = Open(vmdk, ImageFormat::kVmdk, /*read_only=*/true, cache);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ((*image)->format(), ImageFormat::kVmdk);
  EXPECT_TRUE((*image)->read_only());
  EXPECT_EQ(ReadAll(**image), Bytes(ReadFile(src)));
}

TEST(VmdkOpen, MonolithicSparse_ReadsEqualToRawSource) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  ExpectReadsAsSource(QemuVmdk(dir, src, "monolithicSparse"), src);
}

TEST(VmdkOpen, StreamOptimized_ReadsEqualToRawSource) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  ExpectReadsAsSource(QemuVmdk(dir, src, "streamOptimized"), src);
}

// cache=none would open the file O_DIRECT; the VMDK reader's unaligned reads still work.
TEST(VmdkOpen, CacheNone_ReadsEqualToRawSource) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  ExpectReadsAsSource(QemuVmdk(dir, src, "monolithicSparse"), src, CacheMode::kNone);
}

TEST(VmdkOpen, ReadWrite_RefusedNamingFileReadonlyAndOverlay) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string vmdk = QemuVmdk(dir, MakeSource(dir), "monolithicSparse");
  std::string before = ReadFile(vmdk);
  auto image = Open(vmdk, ImageFormat::kVmdk, /*read_only=*/false);
  ASSERT_FALSE(image);
  const std::string& msg = image.error().message();
  EXPECT_NE(msg.find(vmdk), std::string::npos) << msg;
  EXPECT_NE(msg.find("VMDK images are read-only in kite"), std::string::npos) << msg;
  EXPECT_NE(msg.find("readonly=on"), std::string::npos) << msg;
  EXPECT_NE(msg.find("kite-img create -f qcow2 -b " + vmdk + " -F vmdk"), std::string::npos) << msg;
  EXPECT_EQ(ReadFile(vmdk), before);
}

TEST(VmdkOpen, WriteToReadOnlyDisk_RefusedAndFileUnchanged) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string vmdk = QemuVmdk(dir, MakeSource(dir), "monolithicSparse");
  std::string before = ReadFile(vmdk);
  auto image = Open(vmdk, ImageFormat::kVmdk, /*read_only=*/true);
  ASSERT_TRUE(image) << image.error().message();
  char byte = 'x';
  EXPECT_FALSE((*image)->Write(0, &byte, 1));
  EXPECT_FALSE((*image)->WriteZeroes(0, 65536, true));
  EXPECT_FALSE((*image)->Discard(0, 65536));
  image->reset();
  EXPECT_EQ(ReadFile(vmdk), before);
}

// Writes `data` at `offset` through `image` and into `expected`.
void WriteBoth(DiskImage& image, std::vector<uint8_t>& expected, uint64_t offset,
               const std::vector<uint8_t>& data) {
  auto w = image.Write(offset, data.data(), data.size());
  ASSERT_TRUE(w) << w.error().message();
  std::memcpy(expected.data() + offset, data.data(), data.size());
}

// The overlay reads the VMDK base; writes over base data and over a hole land in the overlay;
// the VMDK is unchanged, and qemu-img reads the overlay as kite does.
void ExpectOverlayOverVmdk(const TempDir& dir, const std::string& src,
                           const std::vector<std::string>& vmdk_files) {
  std::vector<std::string> before;
  for (const std::string& f : vmdk_files) before.push_back(ReadFile(f));
  std::string overlay = MakeOverlay(dir, vmdk_files[0]);
  std::vector<uint8_t> expected = Bytes(ReadFile(src));
  {
    auto image = Open(overlay, ImageFormat::kQcow2, /*read_only=*/false);
    ASSERT_TRUE(image) << image.error().message();
    ASSERT_NE((*image)->backing(), nullptr);
    EXPECT_EQ((*image)->backing()->format(), ImageFormat::kVmdk);
    EXPECT_EQ((*image)->size(), kDiskBytes);
    EXPECT_EQ(ReadAll(**image), expected);
    WriteBoth(**image, expected, 4096, Pattern(4096, 10000, 3));
    WriteBoth(**image, expected, 1536 << 10, Pattern(1536 << 10, 4096, 4));
    ASSERT_TRUE((*image)->Flush());
    EXPECT_EQ(ReadAll(**image), expected);
  }
  auto reopened = Open(overlay, ImageFormat::kQcow2, /*read_only=*/true);
  ASSERT_TRUE(reopened) << reopened.error().message();
  EXPECT_EQ(ReadAll(**reopened), expected);
  EXPECT_EQ(testing::QemuReadAll(overlay, "qcow2"), expected);
  for (size_t i = 0; i < vmdk_files.size(); ++i) {
    EXPECT_EQ(ReadFile(vmdk_files[i]), before[i]) << vmdk_files[i] << " changed";
  }
}

TEST(VmdkOpen, Qcow2OverlayOnMonolithicSparse_ReadsBaseWritesToOverlay_VmdkUnchanged) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  ExpectOverlayOverVmdk(dir, src, {QemuVmdk(dir, src, "monolithicSparse")});
}

TEST(VmdkOpen, Qcow2OverlayOnStreamOptimized_ReadsBaseWritesToOverlay_VmdkUnchanged) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  ExpectOverlayOverVmdk(dir, src, {QemuVmdk(dir, src, "streamOptimized")});
}

// A descriptor file (monolithicFlat.vmdk) and its extent (monolithicFlat-flat.vmdk).
TEST(VmdkOpen, Qcow2OverlayOnMonolithicFlatDescriptor_ReadsBaseWritesToOverlay_VmdkUnchanged) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  std::string descriptor = QemuVmdk(dir, src, "monolithicFlat");
  std::string extent = dir.File("monolithicFlat-flat.vmdk");
  ExpectOverlayOverVmdk(dir, src, {descriptor, extent});
}

// The jail binds what extra_files() names: a descriptor's extents, none for a sparse file.
TEST(VmdkOpen, DescriptorFile_ExtraFilesNameTheExtents) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  auto flat = Open(QemuVmdk(dir, src, "monolithicFlat"), ImageFormat::kVmdk, true);
  ASSERT_TRUE(flat) << flat.error().message();
  EXPECT_EQ((*flat)->extra_files(), std::vector<std::string>{dir.File("monolithicFlat-flat.vmdk")});
  auto sparse = Open(QemuVmdk(dir, src, "monolithicSparse"), ImageFormat::kVmdk, true);
  ASSERT_TRUE(sparse) << sparse.error().message();
  EXPECT_TRUE((*sparse)->extra_files().empty());
}

// An overlay qemu-img made (`qemu-img create -f qcow2 -b BASE -F vmdk`) opens the same way.
TEST(VmdkOpen, QemuMadeOverlayOnVmdk_ReadsBase) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string src = MakeSource(dir);
  std::string vmdk = QemuVmdk(dir, src, "streamOptimized"), overlay = dir.File("q.qcow2");
  auto r =
      testing::Run("qemu-img create -f qcow2 -b '" + vmdk + "' -F vmdk '" + overlay + "' 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto image = Open(overlay, ImageFormat::kQcow2, /*read_only=*/false);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(ReadAll(**image), Bytes(ReadFile(src)));
}

// block-commit opens the base read-write (writable_backing): a VMDK base is refused.
TEST(VmdkOpen, WritableBackingVmdk_RefusedNamingFile) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string vmdk = QemuVmdk(dir, MakeSource(dir), "monolithicSparse");
  std::string overlay = MakeOverlay(dir, vmdk);
  OpenOptions o;
  o.writable_backing = vmdk;
  auto image = OpenImage(overlay, ImageFormat::kQcow2, o);
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message().find(vmdk + ": VMDK images are read-only in kite"),
            std::string::npos)
      << image.error().message();
}

}  // namespace
}  // namespace kite::storage
