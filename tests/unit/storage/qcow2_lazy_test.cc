// Lazy refcounts (qcow2 compatible feature bit 0): the first allocating write sets the dirty
// bit on disk; refcount blocks then stay in memory (qemu-img check of the open image sees
// stale refcounts) until a clean close writes them and clears the bit. Images without the
// feature keep their refcounts on disk at every write. After a SIGKILL (F9) the dirty bit is
// set, qemu-img check finds only refcount problems, a read-only open writes nothing, and a
// read-write open repairs the image: qemu-img check is clean and every flushed write is there.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "base/unique_fd.h"
#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2_l2_cache.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;
namespace t = kite::storage::testing;

constexpr uint64_t kSize = 8 << 20;
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kOffIncompat = 72;

bool DirtyOnDisk(const std::string& path) {
  return t::ReadBe64(path, kOffIncompat) & 1;
}

std::string CreateImage(const TempDir& dir, bool lazy) {
  std::string p = dir.File(lazy ? "lazy.qcow2" : "eager.qcow2");
  Qcow2CreateOptions co;
  co.size = kSize;
  co.lazy_refcounts = lazy;
  EXPECT_TRUE(CreateQcow2(p, co));
  return p;
}

bool DirectWorks(const std::string& path) {
  OpenOptions o;
  o.cache = CacheMode::kNone;
  o.read_only = true;
  return OpenImage(path, ImageFormat::kQcow2, o).has_value();
}

std::unique_ptr<DiskImage> Open(const std::string& path, CacheMode cache, bool ro = false) {
  OpenOptions o;
  o.cache = cache;
  o.read_only = ro;
  auto r = OpenImage(path, ImageFormat::kQcow2, o);
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  return r ? std::move(*r) : nullptr;
}

// Random 4 KiB-aligned writes (allocating and in place) and one discard, mirrored in `model`.
void Workload(DiskImage& img, std::vector<uint8_t>& model, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int i = 0; i < 64; ++i) {
    uint64_t len = (1 + rng() % 4) * kBlock;
    uint64_t off = (rng() % ((kSize - len) / kBlock)) * kBlock;
    auto d = t::Pattern(off, len, seed * 1000 + static_cast<uint32_t>(i));
    ASSERT_TRUE(img.Write(off, d.data(), d.size()));
    std::memcpy(model.data() + off, d.data(), len);
  }
  ASSERT_TRUE(img.Discard(1 << 20, 1 << 20));  // frees clusters: refcounts drop
  std::fill(model.begin() + (1 << 20), model.begin() + (2 << 20), 0);
}

void ExpectSameAsModel(const std::string& path, const std::vector<uint8_t>& model) {
  auto img = Open(path, CacheMode::kWriteback, true);
  ASSERT_TRUE(img);
  EXPECT_TRUE(t::ReadAll(*img) == model);
}

// Every problem qemu-img check reports is about refcounts (not about L1/L2 or data).
void ExpectOnlyRefcountProblems(const std::string& output) {
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    bool problem = line.rfind("ERROR", 0) == 0 || line.rfind("Leaked", 0) == 0;
    if (!problem) continue;
    bool refcount =
        line.find("refcount=") != std::string::npos || line.rfind("Leaked cluster", 0) == 0;
    EXPECT_TRUE(refcount) << "not a refcount problem: " << line;
  }
}

// qemu-img check of a copy of an image kite has open (kite's lock keeps qemu-img out even
// with -U): what a crash at this moment would leave.
t::CommandResult CheckCopy(const std::string& path) {
  std::string copy = path + ".copy";
  auto cp = t::Run("cp --sparse=always '" + path + "' '" + copy + "'");
  EXPECT_EQ(cp.exit_code, 0) << cp.output;
  auto r = t::Run("qemu-img check '" + copy + "'");
  std::remove(copy.c_str());
  return r;
}

TEST(Qcow2Lazy, FirstAllocatingWrite_SetsDirtyBitOnDisk) {
  TempDir dir;
  std::string p = CreateImage(dir, true);
  auto img = Open(p, CacheMode::kWriteback);
  ASSERT_TRUE(img);
  EXPECT_FALSE(DirtyOnDisk(p)) << "an open without writes made the image dirty";
  std::vector<uint8_t> d = t::Pattern(0, kBlock, 1);
  ASSERT_TRUE(img->Write(0, d.data(), d.size()));
  EXPECT_TRUE(DirtyOnDisk(p));
}

TEST(Qcow2Lazy, OpenImage_RefcountsStayInMemory) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string p = CreateImage(dir, true);
  std::vector<uint8_t> model(kSize, 0);
  auto img = Open(p, CacheMode::kWriteback);
  ASSERT_TRUE(img);
  Workload(*img, model, 2);
  ASSERT_TRUE(img->Flush());  // a flush writes data and L2 tables, not refcounts
  auto r = CheckCopy(p);
  EXPECT_EQ(r.exit_code, 2) << "the refcounts on disk are up to date: not lazy\n" << r.output;
  ExpectOnlyRefcountProblems(r.output);
}

TEST(Qcow2Lazy, CleanClose_RefcountsWrittenDirtyBitCleared) {
  TempDir dir;
  std::string p = CreateImage(dir, true);
  std::vector<uint8_t> model(kSize, 0);
  {
    auto img = Open(p, CacheMode::kWriteback);
    ASSERT_TRUE(img);
    Workload(*img, model, 3);
    EXPECT_TRUE(DirtyOnDisk(p));
  }
  EXPECT_FALSE(DirtyOnDisk(p));
  ExpectSameAsModel(p, model);
  KITE_REQUIRE_TOOL("qemu-img");
  auto r = t::Run("qemu-img check '" + p + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Qcow2Lazy, CleanCloseWithCacheNone_CheckClean) {
  TempDir dir;
  std::string p = CreateImage(dir, true);
  std::vector<uint8_t> model(kSize, 0);
  if (!DirectWorks(p)) GTEST_SKIP() << "no O_DIRECT in " << dir.path();
  {
    auto img = Open(p, CacheMode::kNone);
    ASSERT_TRUE(img);
    Workload(*img, model, 4);
  }
  EXPECT_FALSE(DirtyOnDisk(p));
  ExpectSameAsModel(p, model);
  KITE_REQUIRE_TOOL("qemu-img");
  auto r = t::Run("qemu-img check '" + p + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Qcow2Lazy, WithoutLazyBit_RefcountsOnDiskAtEveryWrite) {
  KITE_REQUIRE_TOOL("qemu-img");
  TempDir dir;
  std::string p = CreateImage(dir, false);
  std::vector<uint8_t> model(kSize, 0);
  auto img = Open(p, CacheMode::kWriteback);
  ASSERT_TRUE(img);
  Workload(*img, model, 5);
  EXPECT_FALSE(DirtyOnDisk(p));
  auto r = CheckCopy(p);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Qcow2Lazy, WriteBackCache_DirtyClusterReachesFileOnEvictionAndWriteDirty) {
  TempDir dir;
  std::string p = dir.File("cache.bin");
  kite::testing::WriteFile(p, std::string(4 * 512, '\0'));
  UniqueFd fd(::open(p.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd);
  qcow2::FileIo io(fd.get());
  qcow2::ClusterCache cache(io, 512, 2);
  cache.set_write_back(true);
  uint8_t a = 0xaa, b = 0xbb;
  ASSERT_TRUE(cache.Write(0, 10, &a, 1));
  ASSERT_TRUE(cache.Write(512, 20, &b, 1));
  EXPECT_EQ(kite::testing::ReadFile(p)[10], '\0') << "a write-back cluster was written at once";
  ASSERT_TRUE(cache.Get(1024));  // evicts cluster 0, the least recently used
  EXPECT_EQ(static_cast<uint8_t>(kite::testing::ReadFile(p)[10]), 0xaa);
  EXPECT_EQ(kite::testing::ReadFile(p)[512 + 20], '\0');
  EXPECT_EQ(cache.dirty_count(), 1u);
  ASSERT_TRUE(cache.WriteDirty());
  EXPECT_EQ(static_cast<uint8_t>(kite::testing::ReadFile(p)[512 + 20]), 0xbb);
  EXPECT_EQ(cache.dirty_count(), 0u);
}

// --- F9: SIGKILL while writing with lazy refcounts ---

struct Msg {
  uint32_t type;  // 1 = write about to start, 2 = flush completed
  uint32_t seed;
  uint64_t offset;
  uint64_t length;
};

[[noreturn]] void Child(const std::string& path, CacheMode cache, int fd, uint32_t seed) {
  OpenOptions o;
  o.cache = cache;
  auto img = OpenImage(path, ImageFormat::kQcow2, o);
  if (!img) _exit(10);
  std::mt19937 rng(seed);
  for (uint32_t i = 1;; ++i) {
    uint64_t len = (1 + rng() % 16) * kBlock;
    uint64_t off = (rng() % ((kSize - len) / kBlock)) * kBlock;
    uint32_t s = seed * 100000 + i;
    Msg m{1, s, off, len};
    if (write(fd, &m, sizeof(m)) != sizeof(m)) _exit(11);
    auto d = t::Pattern(off, len, s);
    if (!(*img)->Write(off, d.data(), d.size())) _exit(12);
    if (i % 8 == 0) {
      if (!(*img)->Flush()) _exit(13);
      Msg f{2, 0, 0, 0};
      if (write(fd, &f, sizeof(f)) != sizeof(f)) _exit(14);
    }
  }
}

// What each 4 KiB block may hold after the crash: its last flushed write, or a write started
// after that flush.
struct Expect {
  std::vector<int64_t> flushed = std::vector<int64_t>(kSize / kBlock, -1);  // -1: zeros
  std::vector<std::set<uint32_t>> pending = std::vector<std::set<uint32_t>>(kSize / kBlock);
  std::vector<Msg> since_flush;

  void Apply(const Msg& m) {
    if (m.type == 1) {
      since_flush.push_back(m);
      for (uint64_t b = m.offset / kBlock; b < (m.offset + m.length) / kBlock; ++b) {
        pending[b].insert(m.seed);
      }
      return;
    }
    for (const Msg& w : since_flush) {
      for (uint64_t b = w.offset / kBlock; b < (w.offset + w.length) / kBlock; ++b) {
        flushed[b] = w.seed;
        pending[b].clear();
      }
    }
    since_flush.clear();
  }

  bool Holds(uint64_t b, const uint8_t* got) const {
    std::set<int64_t> candidates(pending[b].begin(), pending[b].end());
    candidates.insert(flushed[b]);
    for (int64_t s : candidates) {
      auto want = s < 0 ? std::vector<uint8_t>(kBlock, 0)
                        : t::Pattern(b * kBlock, kBlock, static_cast<uint32_t>(s));
      if (std::memcmp(want.data(), got, kBlock) == 0) return true;
    }
    return false;
  }
};

// Runs the child until it has completed `flushes` flushes, then SIGKILLs it.
void RunAndKill(const std::string& path, CacheMode cache, uint32_t seed, int flushes,
                Expect& expect) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    Child(path, cache, fds[1], seed);
  }
  close(fds[1]);
  int seen = 0;
  Msg m;
  while (read(fds[0], &m, sizeof(m)) == static_cast<ssize_t>(sizeof(m))) {
    expect.Apply(m);
    if (m.type == 2 && ++seen == flushes) kill(pid, SIGKILL);
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
}

std::string FileBytes(const std::string& path) {
  return kite::testing::ReadFile(path);
}

class Qcow2LazyCrash : public ::testing::TestWithParam<CacheMode> {};

TEST_P(Qcow2LazyCrash, F9_SigkillWithLazyRefcounts_RepairedOnOpenFlushedDataKept) {
  TempDir dir;
  std::string p = CreateImage(dir, true);
  if (GetParam() == CacheMode::kNone && !DirectWorks(p)) {
    GTEST_SKIP() << "no O_DIRECT in " << dir.path();
  }
  Expect expect;
  RunAndKill(p, GetParam(), 7, 4, expect);
  ASSERT_TRUE(DirtyOnDisk(p)) << "killed with lazy refcounts, yet the dirty bit is clear";
  if (kite::testing::ToolsOrMarkSkipped({"qemu-img"})) {
    auto r = t::Run("qemu-img check '" + p + "'");
    EXPECT_NE(r.exit_code, 1) << r.output;
    ExpectOnlyRefcountProblems(r.output);
  }
  {  // I8: a read-only open of the dirty image reads it and writes nothing
    std::string before = FileBytes(p);
    auto ro = Open(p, CacheMode::kWriteback, true);
    ASSERT_TRUE(ro);
    (void)t::ReadAll(*ro);
    ro.reset();
    EXPECT_TRUE(FileBytes(p) == before) << "a read-only open changed the dirty image";
  }
  ASSERT_TRUE(Open(p, GetParam()));  // read-write: repairs, then closes cleanly
  EXPECT_FALSE(DirtyOnDisk(p));
  if (kite::testing::ToolsOrMarkSkipped({"qemu-img"})) {
    auto r = t::Run("qemu-img check '" + p + "'");
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  auto img = Open(p, CacheMode::kWriteback, true);
  ASSERT_TRUE(img);
  auto all = t::ReadAll(*img);
  for (uint64_t b = 0; b < kSize / kBlock; ++b) {
    ASSERT_TRUE(expect.Holds(b, all.data() + b * kBlock))
        << "block " << b << " lost flushed data (seed " << expect.flushed[b] << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Cache, Qcow2LazyCrash,
                         ::testing::Values(CacheMode::kWriteback, CacheMode::kNone),
                         [](const ::testing::TestParamInfo<CacheMode>& info) {
                           return std::string(info.param == CacheMode::kNone ? "None"
                                                                             : "Writeback");
                         });

}  // namespace
}  // namespace kite::storage
