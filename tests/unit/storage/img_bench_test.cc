// kite-img bench: -i threads|io_uring (qemu-img bench's -i aio) and the pattern default (0, as
// qemu-img). Each mechanism writes the pattern that qemu-io then reads back from a raw image.
#include <gtest/gtest.h>

#include "img_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::img {
namespace {

using kite::testing::TempDir;
using testing::Kite;
using testing::Q;
using testing::Shell;

BenchArgs ParseBench(std::vector<std::string> args) {
  auto c = ParseCommandLine(args);
  EXPECT_TRUE(c) << (c ? "" : c.error().message());
  if (!c || !std::holds_alternative<BenchArgs>(*c)) return BenchArgs{};
  return std::get<BenchArgs>(*c);
}

TEST(ImgBench, PatternDefault_IsZeroAsQemuImg) {
  EXPECT_EQ(ParseBench({"bench", "x"}).pattern, 0);
}

TEST(ImgBench, AioOption_ThreadsOrIoUring) {
  EXPECT_EQ(ParseBench({"bench", "x"}).aio, "");
  EXPECT_EQ(ParseBench({"bench", "-i", "threads", "x"}).aio, "threads");
  EXPECT_EQ(ParseBench({"bench", "-i", "io_uring", "x"}).aio, "io_uring");
  EXPECT_FALSE(ParseCommandLine({"bench", "-i", "native", "x"}));
  EXPECT_FALSE(ParseCommandLine({"bench", "-i", "bogus", "x"}));
}

TEST(ImgBench, RawWriteEachAio_QemuReadsPattern) {
  KITE_REQUIRE_TOOL("qemu-io");
  for (const char* aio : {"threads", "io_uring"}) {
    TempDir dir;
    std::string img = dir.File("b.raw");
    ASSERT_EQ(Kite({"create", "-f", "raw", img, "4M"}).code, 0);
    auto w = Kite({"bench", "-w", "-c", "2000", "-d", "16", "-i", aio, "--pattern=0x5c", "-S",
                   "12288", "-f", "raw", img});
    ASSERT_EQ(w.code, 0) << aio << ": " << w.err;
    EXPECT_NE(w.out.find("Run completed in "), std::string::npos);
    auto r = Kite({"bench", "-c", "2000", "-d", "16", "-i", aio, "-f", "raw", img});
    ASSERT_EQ(r.code, 0) << aio << ": " << r.err;
    // 2000 writes of 4 KiB with a 12 KiB stride touch blocks 0, 3, 6, ... (wrapping), not 1.
    auto q = Shell(
        "qemu-io -f raw -c 'read -P 0x5c 0 4096' -c 'read -P 0x5c 12288 4096' -c "
        "'read -P 0 4096 4096' " +
        Q(img));
    EXPECT_EQ(q.out.find("Pattern verification failed"), std::string::npos) << aio << q.out;
    EXPECT_NE(q.out.find("read 4096/4096"), std::string::npos) << aio << q.out;
  }
}

}  // namespace
}  // namespace kite::img
