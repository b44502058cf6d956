// Block jobs (vmm/block_jobs.h) on real qcow2 chains, with a fake host standing in for the
// VM: "the disk's I/O stopped" is a mutex the test's guest writer also holds per write, so a
// reconfigure waits for a write in flight as the device's quiesce does.
#include "vmm/block_jobs.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <random>
#include <thread>

#include "storage/job_filter.h"
#include "storage/qcow2/qcow2.h"
#include "testing/temp_dir.h"

namespace kite {
namespace {

using storage::DiskImage;
using ImagePtr = std::shared_ptr<DiskImage>;
using namespace std::chrono_literals;

constexpr uint64_t kSize = 8 << 20;

// A request field by field (designated initializers would leave the others to
// -Wmissing-field-initializers).
BlockJobRequest Req(BlockJobType type, uint64_t speed = 0, std::string top = "",
                    std::string target = "", std::string job_id = "") {
  BlockJobRequest r;
  r.type = type;
  r.speed = speed;
  r.top = std::move(top);
  r.target = std::move(target);
  r.job_id = std::move(job_id);
  return r;
}

class BlockJobsTest : public ::testing::Test {
 protected:
  BlockJobsTest() {
    BlockJobHost host;
    host.reconfigure = [this](const std::string& device,
                              const virtio::BlockDevice::ImageChange& change) -> Result<void> {
      if (device != "vda") return Err("no disk " + device);
      std::lock_guard lock(io_);
      return change(image_);
    };
    host.open_options = [](const std::string&) -> Result<storage::OpenOptions> {
      return storage::OpenOptions{};
    };
    host.emit = [this](const std::string& name, nlohmann::json data) {
      std::lock_guard lock(events_mu_);
      events_.push_back({name, std::move(data)});
      events_cv_.notify_all();
    };
    jobs_ = std::make_unique<BlockJobs>(std::move(host));
  }
  ~BlockJobsTest() override {
    StopWriter();
    jobs_.reset();
  }

  std::string Create(const std::string& name, const std::string& backing = "") {
    storage::Qcow2CreateOptions o;
    o.size = kSize;
    if (!backing.empty()) {
      o.backing_file = dir_.File(backing);
      o.backing_format = "qcow2";
    }
    std::string path = dir_.File(name);
    EXPECT_TRUE(storage::CreateQcow2(path, o).has_value());
    return path;
  }
  // Writes `fill` over [offset, +len) of a chain's top, opened alone.
  void Fill(const std::string& path, uint64_t offset, uint64_t len, uint8_t fill) {
    auto image = storage::OpenImage(path, storage::ImageFormat::kQcow2, {});
    ASSERT_TRUE(image.has_value()) << image.error().message();
    std::vector<uint8_t> buf(len, fill);
    ASSERT_TRUE((*image)->Write(offset, buf.data(), len).has_value());
  }
  void Open(const std::string& path) {
    auto image = storage::OpenImage(path, storage::ImageFormat::kQcow2, {});
    ASSERT_TRUE(image.has_value()) << image.error().message();
    image_ = std::move(*image);
  }
  std::vector<uint8_t> Content() {
    std::lock_guard lock(io_);
    std::vector<uint8_t> out(image_->size());
    EXPECT_TRUE(image_->Read(0, out.data(), out.size()).has_value());
    return out;
  }
  // The guest: random 4 KiB writes through the disk's current image until stopped.
  void StartWriter() {
    writing_ = true;
    writer_ = std::thread([this] {
      std::mt19937_64 rng(7);
      std::vector<uint8_t> buf(4096);
      while (writing_) {
        uint64_t off = rng() % (kSize / 4096) * 4096;
        std::fill(buf.begin(), buf.end(), static_cast<uint8_t>(rng()));
        {
          std::lock_guard lock(io_);
          ASSERT_TRUE(image_->Write(off, buf.data(), buf.size()).has_value());
        }
        ++writes_;
        std::this_thread::sleep_for(200us);
      }
    });
  }
  void StopWriter() {
    writing_ = false;
    if (writer_.joinable()) writer_.join();
  }
  // Waits for event `name`; returns its data.
  nlohmann::json WaitEvent(const std::string& name) {
    std::unique_lock lock(events_mu_);
    bool seen = events_cv_.wait_for(lock, 20s, [&] {
      for (const auto& [n, d] : events_) {
        if (n == name) return true;
      }
      return false;
    });
    EXPECT_TRUE(seen) << "no " << name;
    for (const auto& [n, d] : events_) {
      if (n == name) return d;
    }
    return nullptr;
  }
  bool Saw(const std::string& name) {
    std::lock_guard lock(events_mu_);
    for (const auto& [n, d] : events_) {
      if (n == name) return true;
    }
    return false;
  }
  void WaitGone() {
    for (int i = 0; i < 2000 && !jobs_->Query().empty(); ++i) std::this_thread::sleep_for(5ms);
    EXPECT_TRUE(jobs_->Query().empty());
  }
  Result<void> Start(BlockJobRequest r) {
    r.device = "vda";
    ImagePtr image;
    {
      std::lock_guard lock(io_);
      image = image_;
    }
    return jobs_->Start(r, std::move(image));
  }

  testing::TempDir dir_;
  std::mutex io_;
  ImagePtr image_;
  std::unique_ptr<BlockJobs> jobs_;
  std::mutex events_mu_;
  std::condition_variable events_cv_;
  std::vector<std::pair<std::string, nlohmann::json>> events_;
  std::atomic<bool> writing_{false};
  std::atomic<uint64_t> writes_{0};
  std::thread writer_;
};

TEST_F(BlockJobsTest, Stream_CopiesTheBackingIntoTheTopAndDropsIt) {
  std::string base = Create("base.qcow2");
  Fill(base, 0, 3 << 20, 0xaa);
  std::string top = Create("top.qcow2", "base.qcow2");
  Fill(top, 1 << 20, 64 << 10, 0xbb);
  Open(top);
  std::vector<uint8_t> before = Content();
  ASSERT_TRUE(Start(Req(BlockJobType::kStream)).has_value());
  nlohmann::json done = WaitEvent("BLOCK_JOB_COMPLETED");
  EXPECT_FALSE(done.contains("error")) << done.dump();
  EXPECT_EQ(done["type"], "stream");
  EXPECT_EQ(done["len"], kSize);
  EXPECT_EQ(done["offset"], kSize);
  WaitGone();
  EXPECT_EQ(image_->backing(), nullptr);
  EXPECT_EQ(dynamic_cast<storage::JobFilter*>(image_.get()), nullptr);
  EXPECT_EQ(Content(), before);
  auto info = storage::InspectQcow2(top);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->backing_file, "");
}

TEST_F(BlockJobsTest, Stream_WithGuestWrites_KeepsTheGuestsData) {
  std::string base = Create("base.qcow2");
  Fill(base, 0, kSize, 0x11);
  Open(Create("top.qcow2", "base.qcow2"));
  StartWriter();
  ASSERT_TRUE(Start(Req(BlockJobType::kStream, 16 << 20)).has_value());
  WaitEvent("BLOCK_JOB_COMPLETED");
  StopWriter();
  WaitGone();
  EXPECT_GT(writes_.load(), 0u);
  std::vector<uint8_t> now = Content();
  // Reopen the top alone: everything the guest reads is in it.
  {
    std::lock_guard lock(io_);
    image_.reset();
  }
  Open(dir_.File("top.qcow2"));
  EXPECT_EQ(image_->backing(), nullptr);
  EXPECT_EQ(Content(), now);
}

TEST_F(BlockJobsTest, CommitActive_ReadyThenComplete_PivotsToTheBaseWithEveryWrite) {
  std::string base = Create("base.qcow2");
  Fill(base, 0, 2 << 20, 0x22);
  std::string top = Create("top.qcow2", "base.qcow2");
  Fill(top, 4 << 20, 1 << 20, 0x33);
  Open(top);
  StartWriter();
  ASSERT_TRUE(Start(Req(BlockJobType::kCommit)).has_value());
  nlohmann::json ready = WaitEvent("BLOCK_JOB_READY");
  EXPECT_EQ(ready["type"], "commit");
  std::this_thread::sleep_for(50ms);  // writes after READY are mirrored too
  StopWriter();
  std::vector<uint8_t> expected = Content();
  auto listed = jobs_->Query();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_TRUE(listed[0].ready);
  EXPECT_EQ(listed[0].status, "ready");
  ASSERT_TRUE(jobs_->Complete("vda").has_value());
  nlohmann::json done = WaitEvent("BLOCK_JOB_COMPLETED");
  EXPECT_FALSE(done.contains("error")) << done.dump();
  WaitGone();
  EXPECT_TRUE(storage::FindLayer(*image_, base).has_value());
  EXPECT_EQ(storage::FindLayer(*image_, base)->second, 0) << image_->path();
  EXPECT_EQ(Content(), expected);
}

TEST_F(BlockJobsTest, CommitIntermediate_RebasesTheTopOntoTheBase) {
  Create("base.qcow2");
  Fill(dir_.File("base.qcow2"), 0, 1 << 20, 0x01);
  Create("mid.qcow2", "base.qcow2");
  Fill(dir_.File("mid.qcow2"), 512 << 10, 1 << 20, 0x02);
  std::string top = Create("top.qcow2", "mid.qcow2");
  Fill(top, 1 << 20, 64 << 10, 0x03);
  Open(top);
  std::vector<uint8_t> before = Content();
  ASSERT_TRUE(Start(Req(BlockJobType::kCommit, 0, dir_.File("mid.qcow2"))).has_value());
  nlohmann::json done = WaitEvent("BLOCK_JOB_COMPLETED");
  EXPECT_FALSE(done.contains("error")) << done.dump();
  EXPECT_FALSE(Saw("BLOCK_JOB_READY"));
  WaitGone();
  ASSERT_NE(image_->backing(), nullptr);
  EXPECT_TRUE(storage::FindLayer(*image_->backing(), dir_.File("base.qcow2")).has_value());
  EXPECT_EQ(image_->backing()->backing(), nullptr);
  EXPECT_EQ(Content(), before);
}

TEST_F(BlockJobsTest, Backup_IsThePointInTimeOfItsStart) {
  std::string disk = Create("disk.qcow2");
  Fill(disk, 0, kSize, 0x44);
  Open(disk);
  std::vector<uint8_t> at_start = Content();
  // Slow enough that the guest's writes land before the copy reaches them.
  ASSERT_TRUE(
      Start(Req(BlockJobType::kBackup, 8 << 20, "", dir_.File("backup.qcow2"))).has_value());
  StartWriter();
  nlohmann::json done = WaitEvent("BLOCK_JOB_COMPLETED");
  StopWriter();
  EXPECT_FALSE(done.contains("error")) << done.dump();
  WaitGone();
  EXPECT_GT(writes_.load(), 10u);
  EXPECT_EQ(dynamic_cast<storage::JobFilter*>(image_.get()), nullptr);
  EXPECT_NE(Content(), at_start);
  auto backup = storage::OpenImage(dir_.File("backup.qcow2"), storage::ImageFormat::kQcow2, {});
  ASSERT_TRUE(backup.has_value());
  std::vector<uint8_t> copied(kSize);
  ASSERT_TRUE((*backup)->Read(0, copied.data(), kSize).has_value());
  EXPECT_EQ(copied, at_start);
}

TEST_F(BlockJobsTest, Cancel_BeforeReady_LeavesTheChainAsItWas) {
  Create("base.qcow2");
  std::string top = Create("top.qcow2", "base.qcow2");
  Fill(top, 0, kSize, 0x55);
  Open(top);
  ASSERT_TRUE(Start(Req(BlockJobType::kCommit, 1 << 20)).has_value());
  ASSERT_TRUE(jobs_->Cancel("vda", false).has_value());
  nlohmann::json cancelled = WaitEvent("BLOCK_JOB_CANCELLED");
  EXPECT_EQ(cancelled["type"], "commit");
  WaitGone();
  EXPECT_EQ(image_->path(), top);
  EXPECT_EQ(dynamic_cast<storage::JobFilter*>(image_.get()), nullptr);
  EXPECT_TRUE(image_->backing()->read_only());
}

TEST_F(BlockJobsTest, PauseResumeAndStatusErrors) {
  Create("base.qcow2");
  std::string top = Create("top.qcow2", "base.qcow2");
  Fill(top, 0, kSize, 0x66);
  Open(top);
  ASSERT_TRUE(Start(Req(BlockJobType::kCommit, 1 << 20)).has_value());
  auto complete = jobs_->Complete("vda");
  ASSERT_FALSE(complete.has_value());
  EXPECT_NE(complete.error().message().find("cannot accept command verb 'complete'"),
            std::string::npos);
  auto resume = jobs_->Resume("vda");
  EXPECT_FALSE(resume.has_value());
  ASSERT_TRUE(jobs_->Pause("vda").has_value());
  for (int i = 0; i < 400 && jobs_->Query()[0].status != "paused"; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(jobs_->Query()[0].status, "paused");
  EXPECT_TRUE(jobs_->Query()[0].paused);
  ASSERT_TRUE(jobs_->Resume("vda").has_value());
  ASSERT_TRUE(jobs_->SetSpeed("vda", 0).has_value());
  WaitEvent("BLOCK_JOB_READY");
  auto missing = jobs_->Pause("nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind(), ErrorKind::kDeviceNotActive);
  EXPECT_EQ(missing.error().message(), "Block job 'nope' not found");
  ASSERT_TRUE(jobs_->Cancel("vda", true).has_value());
  WaitEvent("BLOCK_JOB_CANCELLED");
}

TEST_F(BlockJobsTest, OneJobPerDisk) {
  Create("base.qcow2");
  std::string top = Create("top.qcow2", "base.qcow2");
  Fill(top, 0, kSize, 0x77);
  Open(top);
  ASSERT_TRUE(Start(Req(BlockJobType::kCommit, 1 << 20)).has_value());
  auto second = Start(Req(BlockJobType::kStream, 0, "", "", "other"));
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().message(),
            "Node 'vda' is busy: block device is in use by block job: commit");
  EXPECT_EQ(jobs_->JobOn("vda"), "commit");
  jobs_->CancelAll();
  EXPECT_TRUE(jobs_->Query().empty());
}

TEST_F(BlockJobsTest, Refusals_NameWhatIsWrong) {
  Open(Create("alone.qcow2"));
  auto stream = Start(Req(BlockJobType::kStream));
  ASSERT_FALSE(stream.has_value());
  EXPECT_NE(stream.error().message().find("no backing file"), std::string::npos);
  auto commit = Start(Req(BlockJobType::kCommit));
  ASSERT_FALSE(commit.has_value());
  EXPECT_NE(commit.error().message().find("no backing file"), std::string::npos);
  auto backup = Start(Req(BlockJobType::kBackup, 0, "", dir_.File("alone.qcow2")));
  ASSERT_FALSE(backup.has_value());
  EXPECT_NE(backup.error().message().find("part of the disk's chain"), std::string::npos);
  EXPECT_TRUE(jobs_->Query().empty());
}

}  // namespace
}  // namespace kite
