// SnapshotWriter: atomic creation and replacement (F11), refusal to replace what is not a
// snapshot, and refusal to write over files the VM uses (C13).
#include "vmm/snapshot/snapshot_writer.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "testing/temp_dir.h"
#include "vmm/snapshot/snapshot_file.h"

namespace kite::snapshot {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr uint64_t kPage = kMemoryPageSize;

struct Ram {
  explicit Ram(uint64_t size, uint8_t fill) : bytes(size, 0) {
    for (uint64_t p = 0; p < size; p += 2 * kPage) bytes[p] = fill;
  }
  std::vector<MemoryRegion> regions() { return {{GuestAddr(0), bytes.size(), bytes.data()}}; }
  std::vector<uint8_t> bytes;
};

// A complete snapshot whose state says {"generation": gen}.
Result<void> Save(const std::string& dir, int gen, std::vector<std::string> forbidden = {}) {
  Ram ram(16 * kPage, static_cast<uint8_t>(gen));
  SnapshotWriter w = TRY(SnapshotWriter::Begin(dir, forbidden));
  MemoryFileLayout layout = TRY(w.WriteMemory(ram.regions()));
  TRY(w.WriteConfig({{"cpus", 1}}));
  TRY(w.WriteState({{"generation", gen}, {"memory", MemoryLayoutToJson(layout)}}));
  return w.Commit();
}

int Generation(const std::string& dir) {
  auto body = ReadStateFile(dir + "/state");
  if (!body) return -1;
  auto layout = MemoryLayoutFromJson((*body)["memory"]);
  if (!layout || !MapMemoryFile(dir + "/memory", *layout)) return -2;
  return (*body)["generation"].get<int>();
}

std::vector<std::string> Partials(const fs::path& parent) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(parent)) {
    std::string name = e.path().filename().string();
    if (name.find(".partial-") != std::string::npos) out.push_back(name);
  }
  return out;
}

TEST(SnapshotWriterTest, NewDirectory_CreatedComplete) {
  testing::TempDir tmp;
  std::string dir = tmp.File("snap");
  ASSERT_TRUE(Save(dir, 1));
  EXPECT_EQ(Generation(dir), 1);
  EXPECT_TRUE(fs::exists(dir + "/config.json"));
  EXPECT_EQ(fs::status(dir).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_TRUE(Partials(tmp.path()).empty());
}

TEST(SnapshotWriterTest, ExistingSnapshot_ReplacedByExchange) {
  testing::TempDir tmp;
  std::string dir = tmp.File("snap");
  ASSERT_TRUE(Save(dir, 1));
  auto replaced = Save(dir, 2);
  ASSERT_TRUE(replaced) << replaced.error().message();
  EXPECT_EQ(Generation(dir), 2);
  EXPECT_TRUE(Partials(tmp.path()).empty()) << "the old tree is removed";
}

TEST(SnapshotWriterTest, EmptyDirectory_Accepted) {
  testing::TempDir tmp;
  fs::create_directory(tmp.File("snap"));
  ASSERT_TRUE(Save(tmp.File("snap"), 1));
  EXPECT_EQ(Generation(tmp.File("snap")), 1);
}

TEST(SnapshotWriterTest, DestroyedBeforeCommit_OldIntactNoPartial) {
  testing::TempDir tmp;
  std::string dir = tmp.File("snap");
  ASSERT_TRUE(Save(dir, 1));
  {
    Ram ram(16 * kPage, 9);
    auto w = SnapshotWriter::Begin(dir, {});
    ASSERT_TRUE(w);
    EXPECT_TRUE(fs::is_directory(w->partial_dir()));
    ASSERT_TRUE(w->WriteMemory(ram.regions()));
    ASSERT_TRUE(w->WriteState({{"generation", 9}}));
  }
  EXPECT_EQ(Generation(dir), 1);
  EXPECT_TRUE(Partials(tmp.path()).empty());
}

TEST(SnapshotWriterTest, CommitIncomplete_Refused) {
  testing::TempDir tmp;
  auto w = SnapshotWriter::Begin(tmp.File("snap"), {});
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->WriteState({{"generation", 1}}));
  EXPECT_FALSE(w->Commit());
  EXPECT_FALSE(fs::exists(tmp.File("snap")));
}

TEST(SnapshotWriterTest, StalePartialOfDeadProcess_Removed) {
  testing::TempDir tmp;
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // a pid that is no longer alive
  std::string stale = tmp.File("snap.partial-" + std::to_string(child) + "-abc");
  std::string live = tmp.File("snap.partial-" + std::to_string(::getppid()) + "-abc");
  std::string other = tmp.File("other.partial-" + std::to_string(child) + "-abc");
  for (const std::string& d : {stale, live, other}) {
    fs::create_directory(d);
    testing::WriteFile(d + "/memory", "half");
  }
  ASSERT_TRUE(Save(tmp.File("snap"), 1));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live)) << "its process is alive";
  EXPECT_TRUE(fs::exists(other)) << "another snapshot's";
}

TEST(SnapshotWriterTest, TargetIsAFile_Refused) {
  testing::TempDir tmp;
  testing::WriteFile(tmp.File("snap"), "data");
  auto r = Save(tmp.File("snap"), 1);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("not a directory"));
  EXPECT_EQ(testing::ReadFile(tmp.File("snap")), "data");
  EXPECT_TRUE(Partials(tmp.path()).empty());
}

TEST(SnapshotWriterTest, TargetNotASnapshot_Refused) {
  testing::TempDir tmp;
  fs::create_directory(tmp.File("photos"));
  testing::WriteFile(tmp.File("photos/cat.jpg"), "meow");
  auto r = Save(tmp.File("photos"), 1);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("not a kite snapshot"));
  EXPECT_EQ(testing::ReadFile(tmp.File("photos/cat.jpg")), "meow");

  fs::create_directory(tmp.File("nostate"));
  testing::WriteFile(tmp.File("nostate/memory"), "x");
  r = Save(tmp.File("nostate"), 1);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("no state file"));
}

TEST(SnapshotWriterTest, ThroughSymlink_ReplacesTheRealDirectory) {
  testing::TempDir tmp;
  ASSERT_TRUE(Save(tmp.File("real"), 1));
  fs::create_directory_symlink(tmp.File("real"), tmp.File("link"));
  ASSERT_TRUE(Save(tmp.File("link"), 2));
  EXPECT_TRUE(fs::is_symlink(tmp.File("link")));
  EXPECT_EQ(Generation(tmp.File("real")), 2);
}

TEST(SnapshotWriterTest, MissingParent_Refused) {
  testing::TempDir tmp;
  EXPECT_FALSE(Save(tmp.File("no/such/snap"), 1));
}

// C13: the memory file a restored VM maps, or its disk, is never written over or removed.
TEST(SnapshotWriterTest, DirIsForbiddenPath_Refused) {
  testing::TempDir tmp;
  testing::WriteFile(tmp.File("disk.img"), "disk");
  auto r = Save(tmp.File("disk.img"), 1, {tmp.File("disk.img")});
  ASSERT_FALSE(r);
  EXPECT_EQ(testing::ReadFile(tmp.File("disk.img")), "disk");
}

TEST(SnapshotWriterTest, DirHoldsMappedMemoryFile_Refused) {
  testing::TempDir tmp;
  std::string dir = tmp.File("snap");
  ASSERT_TRUE(Save(dir, 1));
  auto r = Save(dir, 2, {dir + "/memory"});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("which the running VM uses"));
  EXPECT_EQ(Generation(dir), 1);
  EXPECT_TRUE(Partials(tmp.path()).empty());
}

TEST(SnapshotWriterTest, StateOrMemorySymlinkToForbidden_Refused) {
  testing::TempDir tmp;
  std::string dir = tmp.File("snap");
  testing::WriteFile(tmp.File("disk.img"), "disk");
  for (const char* name : {"memory", "state"}) {
    ASSERT_TRUE(Save(dir, 1));
    fs::remove(dir + "/" + name);
    fs::create_symlink(tmp.File("disk.img"), dir + "/" + name);
    auto r = Save(dir, 2, {tmp.File("disk.img")});
    ASSERT_FALSE(r) << name;
    EXPECT_THAT(r.error().message(), HasSubstr("disk.img")) << name;
    EXPECT_EQ(testing::ReadFile(tmp.File("disk.img")), "disk");
    fs::remove_all(dir);
  }
}

TEST(SnapshotWriterTest, DirSymlinkToForbiddenDirectory_Refused) {
  testing::TempDir tmp;
  ASSERT_TRUE(Save(tmp.File("base"), 1));
  fs::create_directory_symlink(tmp.File("base"), tmp.File("alias"));
  EXPECT_FALSE(Save(tmp.File("alias"), 2, {tmp.File("base")}));
  EXPECT_EQ(Generation(tmp.File("base")), 1);
}

bool MemoryFileHasData(const fs::path& parent) {
  for (const std::string& name : Partials(parent)) {
    struct stat st;
    std::string path = (parent / name / "memory").string();
    if (::stat(path.c_str(), &st) == 0 && st.st_blocks > 0) return true;
  }
  return false;
}

// F11: a save killed at any moment leaves the previous snapshot intact and loadable.
TEST(SnapshotWriterTest, KilledMidWrite_PreviousSnapshotIntact) {
  testing::TempDir tmp;
  std::string dir = tmp.File("snap");
  ASSERT_TRUE(Save(dir, 1));
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipefd[0]);
    const uint64_t size = 128ull << 20;  // every page non-zero: a long write
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) ::_exit(2);
    for (uint64_t i = 0; i < size; i += kPage) static_cast<uint8_t*>(p)[i] = 1;
    auto w = SnapshotWriter::Begin(dir, {});
    if (!w) ::_exit(3);
    (void)!::write(pipefd[1], "x", 1);
    MemoryRegion region{GuestAddr(0), size, static_cast<uint8_t*>(p)};
    (void)w->WriteMemory({&region, 1});
    (void)w->WriteConfig({});
    (void)w->WriteState({{"generation", 2}});
    (void)w->Commit();
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char c;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);
  ::close(pipefd[0]);
  // Kill it once its memory file has data: inside the write (or its fsync), before Commit.
  for (int i = 0; i < 5000 && !MemoryFileHasData(tmp.path()); ++i) ::usleep(200);
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child finished before it was killed";
  EXPECT_EQ(Generation(dir), 1);
  EXPECT_EQ(Partials(tmp.path()).size(), 1u) << "the killed save's partial directory";
  ASSERT_TRUE(Save(dir, 3));  // and the next save removes it
  EXPECT_EQ(Generation(dir), 3);
  EXPECT_TRUE(Partials(tmp.path()).empty());
}

}  // namespace
}  // namespace kite::snapshot
