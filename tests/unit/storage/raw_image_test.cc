// RawImage: holes, discard, write-zeroes, refused file types (I32), cache modes, locking.
#include "storage/raw_image.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage_test_util.h"
#include "testing/temp_dir.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;
using testing::Pattern;

TEST(RawImage, Create_SparseFile_ReadsZeros) {
  TempDir dir;
  std::string p = dir.File("a.raw");
  ASSERT_TRUE(CreateRaw(p, 1 << 20, Preallocation::kOff));
  auto img = testing::OpenForTest(p, ImageFormat::kRaw);
  ASSERT_TRUE(img);
  EXPECT_EQ(img->size(), 1u << 20);
  auto all = testing::ReadAll(*img);
  EXPECT_EQ(std::count(all.begin(), all.end(), 0), 1 << 20);
}

TEST(RawImage, WriteRead_ScatterGather_RoundTrips) {
  TempDir dir;
  std::string p = dir.File("a.raw");
  ASSERT_TRUE(CreateRaw(p, 1 << 20, Preallocation::kOff));
  auto img = testing::OpenForTest(p, ImageFormat::kRaw);
  auto data = Pattern(4096, 12288, 7);
  iovec w[3] = {{data.data(), 100}, {data.data() + 100, 8000}, {data.data() + 8100, 4188}};
  ASSERT_TRUE(img->WriteV(4096, w));
  std::vector<uint8_t> back(12288);
  iovec r[2] = {{back.data(), 5}, {back.data() + 5, 12283}};
  ASSERT_TRUE(img->ReadV(4096, r));
  EXPECT_EQ(back, data);
}

TEST(RawImage, Write_PastEnd_Refused) {
  TempDir dir;
  std::string p = dir.File("a.raw");
  ASSERT_TRUE(CreateRaw(p, 4096, Preallocation::kOff));
  auto img = testing::OpenForTest(p, ImageFormat::kRaw);
  std::vector<uint8_t> buf(512, 1);
  EXPECT_FALSE(img->Write(4000, buf.data(), buf.size()));
  EXPECT_FALSE(img->Read(~0ull - 10, buf.data(), buf.size()));
}

TEST(RawImage, Discard_PunchesHole_ReadsZeros) {
  TempDir dir;
  std::string p = dir.File("a.raw");
  ASSERT_TRUE(CreateRaw(p, 1 << 20, Preallocation::kOff));
  auto img = testing::OpenForTest(p, ImageFormat::kRaw);
  auto data = Pattern(0, 1 << 20, 1);
  ASSERT_TRUE(img->Write(0, data.data(), data.size()));
  ASSERT_TRUE(img->Discard(65536, 131072));
  std::vector<uint8_t> back(131072);
  ASSERT_TRUE(img->Read(65536, back.data(), back.size()));
  EXPECT_EQ(std::count(back.begin(), back.end(), 0), 131072);
  auto st = img->BlockStatus(65536, 1 << 20);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->zero);
  EXPECT_EQ(st->length, 131072u);
}

TEST(RawImage, WriteZeroes_RangeReadsZeros_NeighboursKept) {
  TempDir dir;
  std::string p = dir.File("a.raw");
  ASSERT_TRUE(CreateRaw(p, 65536, Preallocation::kFull));
  auto img = testing::OpenForTest(p, ImageFormat::kRaw);
  auto data = Pattern(0, 65536, 2);
  ASSERT_TRUE(img->Write(0, data.data(), data.size()));
  ASSERT_TRUE(img->WriteZeroes(1000, 5000, false));
  auto all = testing::ReadAll(*img);
  for (size_t i = 0; i < all.size(); ++i) {
    uint8_t want = (i >= 1000 && i < 6000) ? 0 : data[i];
    ASSERT_EQ(all[i], want) << i;
  }
}

TEST(RawImage, Read_ShorterFileThanDisk_ReturnsZeros) {
  TempDir dir;
  std::string p = dir.File("a.raw");
  ASSERT_TRUE(CreateRaw(p, 8192, Preallocation::kOff));
  auto img = testing::OpenForTest(p, ImageFormat::kRaw);
  ASSERT_EQ(::truncate(p.c_str(), 100), 0);  // shrunk behind our back
  std::vector<uint8_t> buf(8192, 0xff);
  ASSERT_TRUE(img->Read(0, buf.data(), buf.size()));
  EXPECT_EQ(std::count(buf.begin(), buf.end(), 0), 8192);
}

TEST(RawImage, I32_Fifo_RefusedWithoutBlocking) {
  TempDir dir;
  std::string p = dir.File("fifo");
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  OpenOptions o;
  o.read_only = true;
  auto r = OpenImage(p, ImageFormat::kRaw, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("FIFO"), std::string::npos) << r.error().message();
}

TEST(RawImage, I32_Directory_Refused) {
  TempDir dir;
  OpenOptions o;
  o.read_only = true;
  auto r = OpenImage(dir.path().string(), ImageFormat::kRaw, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("directory"), std::string::npos) << r.error().message();
}

TEST(RawImage, I32_CharDevice_Refused) {
  OpenOptions o;
  o.read_only = true;
  auto r = OpenImage("/dev/null", ImageFormat::kRaw, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("character device"), std::string::npos);
}

TEST(RawImage, ProcFile_Refused) {
  OpenOptions o;
  o.read_only = true;
  EXPECT_FALSE(OpenImage("/proc/self/status", ImageFormat::kRaw, o));
}

TEST(RawImage, ReadOnly_WriteRefused) {
  TempDir dir;
  std::string p = dir.File("a.raw");
  ASSERT_TRUE(CreateRaw(p, 4096, Preallocation::kOff));
  auto img = testing::OpenForTest(p, ImageFormat::kRaw, true);
  char b = 1;
  EXPECT_FALSE(img->Write(0, &b, 1));
  EXPECT_FALSE(img->Discard(0, 4096));
}

TEST(RawImage, Lock_SecondWriter_Refused_ForceShareAllowed) {
  TempDir dir;
  std::string p = dir.File("a.raw");
  ASSERT_TRUE(CreateRaw(p, 4096, Preallocation::kOff));
  auto first = testing::OpenForTest(p, ImageFormat::kRaw);
  ASSERT_TRUE(first);
  auto second = OpenImage(p, ImageFormat::kRaw, OpenOptions{});
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message().find("lock"), std::string::npos);
  OpenOptions shared;
  shared.read_only = true;
  shared.force_share = true;
  EXPECT_TRUE(OpenImage(p, ImageFormat::kRaw, shared));
  first.reset();
  EXPECT_TRUE(OpenImage(p, ImageFormat::kRaw, OpenOptions{}));
}

TEST(RawImage, CacheModes_OpenAndRoundTrip) {
  TempDir dir;
  for (CacheMode mode :
       {CacheMode::kWriteback, CacheMode::kWritethrough, CacheMode::kUnsafe, CacheMode::kNone}) {
    std::string p = dir.File(std::string("c").append(std::to_string(int(mode))) + ".raw");
    ASSERT_TRUE(CreateRaw(p, 65536, Preallocation::kOff));
    OpenOptions o;
    o.cache = mode;
    auto img = OpenImage(p, ImageFormat::kRaw, o);
    if (!img && mode == CacheMode::kNone && img.error().sys_errno() == EINVAL) {
      continue;  // file system without O_DIRECT (tmpfs)
    }
    ASSERT_TRUE(img) << img.error().message();
    auto data = Pattern(3, 1000, 3);  // unaligned: O_DIRECT bounces
    ASSERT_TRUE((*img)->Write(3, data.data(), data.size()));
    ASSERT_TRUE((*img)->Flush());
    std::vector<uint8_t> back(1000);
    ASSERT_TRUE((*img)->Read(3, back.data(), back.size()));
    EXPECT_EQ(back, data) << int(mode);
  }
}

TEST(RawImage, ParseNames_UnknownRefused) {
  EXPECT_FALSE(ParseImageFormat("vdi"));
  EXPECT_EQ(*ParseImageFormat("qcow2"), ImageFormat::kQcow2);
  EXPECT_EQ(*ParseCacheMode("none"), CacheMode::kNone);
  EXPECT_FALSE(ParseCacheMode("fast"));
  EXPECT_EQ(*ParsePreallocation("falloc"), Preallocation::kFalloc);
  EXPECT_FALSE(ParsePreallocation("some"));
}

}  // namespace
}  // namespace kite::storage
