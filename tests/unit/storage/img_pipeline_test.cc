// The request pipeline of convert/commit/rebase/compare (chunk_pipeline.h): Finish in disk
// order, stops and errors end the walk; and the commands on images of several chunks, with any
// number of requests in flight (-m) and out-of-order writes (-W), judged by qemu-img: check
// clean, compare equal, the same allocation as qemu-img convert (zero detection), the first
// mismatch reported as qemu-img reports it.
#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "img_test_util.h"
#include "storage/img/chunk_pipeline.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::img {
namespace {

using Json = nlohmann::json;
using kite::testing::ReadFile;
using kite::testing::TempDir;
using testing::Kite;
using testing::Q;
using testing::Qemu;
using testing::Shell;

constexpr uint64_t kMiB = 1 << 20;

// Records the chunks Finish saw; stops at `stop_at`, fails Work at `fail_at`.
class RecordingJob final : public ChunkJob {
 public:
  Result<void> Plan(Chunk& c, uint64_t max_data, uint64_t /*rest*/) override {
    c.length = std::min<uint64_t>(max_data, 1000);
    return {};
  }
  Result<void> Work(Chunk& c) override {
    if (c.offset == fail_at) return Err("work failed");
    return {};
  }
  Result<bool> Finish(Chunk& c) override {
    std::lock_guard lock(mu);
    finished.push_back(c.offset);
    return c.offset != stop_at;
  }
  uint64_t stop_at = UINT64_MAX, fail_at = UINT64_MAX;
  std::mutex mu;
  std::vector<uint64_t> finished;
};

Result<void> Walk(RecordingJob& job, int requests, bool in_order) {
  std::ostringstream out;
  Progress progress(out, false, 100000);
  return RunPipeline(
      job, {.size = 100000, .requests = requests, .in_order = in_order, .chunk_size = 4096},
      progress);
}

TEST(ImgPipeline, InOrder_FinishesEveryChunkInDiskOrder) {
  RecordingJob job;
  ASSERT_TRUE(Walk(job, 16, true));
  ASSERT_EQ(job.finished.size(), 100u);
  for (size_t i = 0; i < job.finished.size(); ++i) EXPECT_EQ(job.finished[i], i * 1000);
}

TEST(ImgPipeline, OutOfOrder_FinishesEveryChunkOnce) {
  RecordingJob job;
  ASSERT_TRUE(Walk(job, 16, false));
  std::sort(job.finished.begin(), job.finished.end());
  ASSERT_EQ(job.finished.size(), 100u);
  for (size_t i = 0; i < job.finished.size(); ++i) EXPECT_EQ(job.finished[i], i * 1000);
}

TEST(ImgPipeline, FinishFalse_StopsWithoutErrorAndFinishesNothingLater) {
  RecordingJob job;
  job.stop_at = 37000;
  ASSERT_TRUE(Walk(job, 8, true));
  ASSERT_EQ(job.finished.size(), 38u);
  EXPECT_EQ(job.finished.back(), 37000u);
}

TEST(ImgPipeline, WorkError_FailsTheWalk) {
  RecordingJob job;
  job.fail_at = 50000;
  auto r = Walk(job, 4, true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "work failed");
  EXPECT_LE(job.finished.size(), 50u);  // nothing at or after the failed chunk
}

void QemuIo(const std::string& path, const std::string& fmt, const std::string& command) {
  Qemu("qemu-io -f " + fmt + " -c '" + command + "' " + Q(path));
}

// Bytes qemu-img map reports as data.
uint64_t DataBytes(const std::string& path) {
  uint64_t data = 0;
  for (const Json& e : Json::parse(Shell("qemu-img map --output=json " + Q(path)).out)) {
    if (e["data"]) data += e["length"].get<uint64_t>();
  }
  return data;
}

// A 12 MiB raw disk (many pipeline chunks): data extents crossing chunk boundaries, holes, and
// 1 MiB of written zeros inside data (allocated in the file, zero for the guest).
std::string DataImage(const TempDir& dir) {
  std::string raw = dir.File("src.raw");
  Qemu("qemu-img create -q -f raw " + Q(raw) + " 12M");
  QemuIo(raw, "raw", "write -P 0x11 1536k 1M");
  QemuIo(raw, "raw", "write -P 0 2560k 1M");
  QemuIo(raw, "raw", "write -P 0x22 3584k 3M");
  QemuIo(raw, "raw", "write -P 0x33 8M 4k");
  QemuIo(raw, "raw", "write -P 0x44 10M 1536k");
  return raw;
}

class ConvertFlags : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(ConvertFlags, ToQcow2_CleanEqualAndAllocatedAsQemuConvert) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string raw = DataImage(dir), ours = dir.File("k.qcow2"), theirs = dir.File("q.qcow2");
  std::vector<std::string> args = {"convert", "-f", "raw", "-O", "qcow2"};
  args.insert(args.end(), GetParam().begin(), GetParam().end());
  args.insert(args.end(), {raw, ours});
  auto r = Kite(args);
  ASSERT_EQ(r.code, 0) << r.err;
  Qemu("qemu-img convert -f raw -O qcow2 " + Q(raw) + " " + Q(theirs));
  EXPECT_EQ(Shell("qemu-img check " + Q(ours)).code, 0);
  EXPECT_EQ(Shell("qemu-img compare " + Q(raw) + " " + Q(ours)).code, 0);
  EXPECT_EQ(DataBytes(ours), DataBytes(theirs));
  EXPECT_EQ(DataBytes(ours),
            5 * kMiB + 512 * 1024 + 65536);  // written zeros: a hole; 4k: a cluster
}

TEST_P(ConvertFlags, Qcow2ToRaw_EqualAndWrittenZerosBecomeHoles) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string raw = DataImage(dir), q = dir.File("src.qcow2"), out = dir.File("out.raw");
  Qemu("qemu-img convert -f raw -O qcow2 -S 0 " + Q(raw) + " " + Q(q));  // zeros as data
  std::vector<std::string> args = {"convert", "-f", "qcow2", "-O", "raw"};
  args.insert(args.end(), GetParam().begin(), GetParam().end());
  args.insert(args.end(), {q, out});
  ASSERT_EQ(Kite(args).code, 0);
  EXPECT_EQ(Shell("qemu-img compare -f raw -F raw " + Q(raw) + " " + Q(out)).code, 0);
  EXPECT_EQ(DataBytes(out), 5 * kMiB + 512 * 1024 + 4096);
}

INSTANTIATE_TEST_SUITE_P(Requests, ConvertFlags,
                         ::testing::Values(std::vector<std::string>{},
                                           std::vector<std::string>{"-m", "1"},
                                           std::vector<std::string>{"-m", "16"},
                                           std::vector<std::string>{"-W"},
                                           std::vector<std::string>{"-m", "3", "-W"},
                                           std::vector<std::string>{"-t", "writeback"}));

// In-order writes lay the output out in disk order, however many requests are in flight: the
// same file with one request as with sixteen, compressed or not.
TEST(ImgConvertPipeline, InOrder_OutputIndependentOfRequests) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string raw = DataImage(dir);
  for (const char* compress : {"", "-c"}) {
    std::string one = dir.File("one.qcow2"), many = dir.File("many.qcow2");
    std::vector<std::string> base = {"convert", "-f", "raw", "-O", "qcow2"};
    if (*compress) base.push_back(compress);
    auto with = [&](const char* m, const std::string& out) {
      std::vector<std::string> args = base;
      args.insert(args.end(), {"-m", m, raw, out});
      return Kite(args).code;
    };
    ASSERT_EQ(with("1", one), 0);
    ASSERT_EQ(with("16", many), 0);
    EXPECT_EQ(ReadFile(one), ReadFile(many)) << compress;
    EXPECT_EQ(Shell("qemu-img check " + Q(many)).code, 0) << compress;
    EXPECT_EQ(Shell("qemu-img compare " + Q(raw) + " " + Q(many)).code, 0) << compress;
  }
}

// Differences in two chunks: the first is reported, as qemu-img reports it. One image reads
// as zeros where the other holds data (only one is read there): the same.
TEST(ImgComparePipeline, FirstOfSeveralMismatches_ReportedAsQemu) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string a = DataImage(dir), b = dir.File("b.raw"), holes = dir.File("holes.raw");
  Qemu("cp " + Q(a) + " " + Q(b));
  QemuIo(b, "raw", "write -P 0x55 10752k 512");
  QemuIo(b, "raw", "write -P 0x55 4608k 512");
  Qemu("qemu-img create -q -f raw " + Q(holes) + " 12M");
  for (const std::string& other : {b, holes}) {
    auto ours = Kite({"compare", "-f", "raw", "-F", "raw", a, other});
    auto qemu = Shell("qemu-img compare -f raw -F raw " + Q(a) + " " + Q(other));
    EXPECT_EQ(ours.code, 1);
    EXPECT_EQ(ours.out, qemu.out);
    auto reverse = Kite({"compare", "-f", "raw", "-F", "raw", other, a});
    EXPECT_EQ(reverse.out, Shell("qemu-img compare -f raw -F raw " + Q(other) + " " + Q(a)).out);
  }
}

// Safe rebase where the old chain reads as zeros: zeros are written only where the new backing
// holds data; where both read as zeros the overlay stays unallocated.
TEST(ImgRebasePipeline, OldZeros_WrittenOnlyOverNewData) {
  KITE_REQUIRE_TOOL("qemu-img", "qemu-io");
  TempDir dir;
  std::string old_base = dir.File("old.qcow2"), new_base = dir.File("new.qcow2");
  std::string top = dir.File("top.qcow2"), expected = dir.File("expected.raw");
  Qemu("qemu-img create -q -f qcow2 " + Q(old_base) + " 12M");
  QemuIo(old_base, "qcow2", "write -P 0x11 0 2M");
  Qemu("qemu-img create -q -f qcow2 " + Q(new_base) + " 12M");
  QemuIo(new_base, "qcow2", "write -P 0x22 6M 1M");
  Qemu("qemu-img create -q -f qcow2 -b old.qcow2 -F qcow2 " + Q(top));
  Qemu("qemu-img convert -O raw " + Q(top) + " " + Q(expected));
  auto r = Kite({"rebase", "-b", "new.qcow2", "-F", "qcow2", top});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Shell("qemu-img compare " + Q(top) + " " + Q(expected)).code, 0);
  EXPECT_EQ(Shell("qemu-img check " + Q(top)).code, 0);
  uint64_t allocated = 0;
  for (const Json& e : Json::parse(Shell("qemu-img map --output=json " + Q(top)).out)) {
    if (e["depth"] == 0 && (e["data"] || e["zero"])) allocated += e["length"].get<uint64_t>();
  }
  EXPECT_EQ(allocated, 3 * kMiB);  // the old data (2 MiB) and zeros over the new data (1 MiB)
}

}  // namespace
}  // namespace kite::img
