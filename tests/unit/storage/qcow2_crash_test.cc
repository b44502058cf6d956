// F9: SIGKILL during a random-write workload. A child process writes and flushes, announcing
// each write before it starts and each completed flush afterwards through a pipe; the parent
// kills it at a random moment and checks that every flushed write is there (each 4 KiB block
// holds its last flushed data or data of a write started after that flush) and that
// qemu-img check finds no corruption (leaks allowed: exit code 0 or 3).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <set>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;

// The unit label runs a few kills; the stress target (label `stress`) many more.
#ifdef KITE_STORAGE_STRESS
constexpr uint32_t kIterations = 40;
#else
constexpr uint32_t kIterations = 3;
#endif
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kSize = 8 << 20;

struct Msg {
  uint32_t type;  // 1 = write about to start, 2 = flush completed
  uint32_t seed;
  uint64_t offset;
  uint64_t length;
};

[[noreturn]] void Child(const std::string& path, ImageFormat format, int fd, uint32_t seed) {
  OpenOptions o;
  auto img = OpenImage(path, format, o);
  if (!img) _exit(10);
  std::mt19937 rng(seed);
  for (uint32_t i = 1;; ++i) {
    uint64_t len = (1 + rng() % 16) * kBlock;
    uint64_t off = (rng() % ((kSize - len) / kBlock)) * kBlock;
    uint32_t s = seed * 100000 + i;
    Msg m{1, s, off, len};
    if (write(fd, &m, sizeof(m)) != sizeof(m)) _exit(11);
    auto d = testing::Pattern(off, len, s);
    if (!(*img)->Write(off, d.data(), d.size())) _exit(12);
    if (i % 8 == 0) {
      if (!(*img)->Flush()) _exit(13);
      Msg f{2, 0, 0, 0};
      if (write(fd, &f, sizeof(f)) != sizeof(f)) _exit(14);
    }
  }
}

// `qemu_check`: run qemu-img check on the qcow2 image after the kill.
void RunCrashIteration(const std::string& path, ImageFormat format, uint32_t seed,
                       bool qemu_check) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    Child(path, format, fds[1], seed);
  }
  close(fds[1]);
  std::mt19937 rng(seed);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(50 + rng() % 250);
  std::vector<int64_t> flushed(kSize / kBlock, -1);  // -1: the image's initial contents
  std::vector<std::set<uint32_t>> pending(kSize / kBlock);
  std::vector<Msg> since_flush;
  auto apply = [&](const Msg& m) {
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
  };
  bool killed = false;
  while (true) {
    if (!killed && std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      killed = true;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    Msg m;
    ssize_t n = read(fds[0], &m, sizeof(m));
    if (n == 0) break;
    ASSERT_EQ(n, static_cast<ssize_t>(sizeof(m)));
    apply(m);
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
  if (format == ImageFormat::kQcow2 && qemu_check) {
    auto r = testing::Run("qemu-img check '" + path + "'");
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 3) << r.output;
  }
  auto img = testing::OpenForTest(path, format, true);
  ASSERT_TRUE(img);
  auto all = testing::ReadAll(*img);
  for (uint64_t b = 0; b < kSize / kBlock; ++b) {
    std::vector<uint8_t> got(all.begin() + b * kBlock, all.begin() + (b + 1) * kBlock);
    bool ok = false;
    std::set<int64_t> candidates(pending[b].begin(), pending[b].end());
    candidates.insert(flushed[b]);
    for (int64_t s : candidates) {
      std::vector<uint8_t> want = s < 0 ? std::vector<uint8_t>(kBlock, 0)
                                        : testing::Pattern(b * kBlock, kBlock, uint32_t(s));
      if (s < 0 && got == want) ok = true;
      if (s >= 0 && got == want) ok = true;
    }
    // Blocks never flushed may still hold data of an older, unflushed write of this run.
    ASSERT_TRUE(ok || flushed[b] < 0)
        << "block " << b << " lost flushed data (seed " << flushed[b] << ")";
  }
}

TEST(Crash, F9_Qcow2SigkillDuringWrites_FlushedDataKeptNoCorruption) {
  TempDir dir;
  std::string p = dir.File("c.qcow2");
  Qcow2CreateOptions o;
  o.size = kSize;
  o.cluster_size = 4096;
  ASSERT_TRUE(CreateQcow2(p, o));
  // Without qemu-img the kills still run; the test then ends skipped (failed under CI=true).
  const bool qemu_check = kite::testing::ToolsOrMarkSkipped({"qemu-img"});
  for (uint32_t i = 1; i <= kIterations; ++i) {
    RunCrashIteration(p, ImageFormat::kQcow2, i, qemu_check);
  }
}

TEST(Crash, F9_RawSigkillDuringWrites_FlushedDataKept) {
  TempDir dir;
  std::string p = dir.File("c.raw");
  ASSERT_TRUE(CreateRaw(p, kSize, Preallocation::kOff));
  for (uint32_t i = 1; i <= kIterations; ++i) {
    RunCrashIteration(p, ImageFormat::kRaw, i + 100, /*qemu_check=*/false);
  }
}

}  // namespace
}  // namespace kite::storage
