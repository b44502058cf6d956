// JobFilter: the DiskImage a running block job puts between a disk's device and its image,
// as QEMU puts a filter node on top of a job's source. Every call goes to the image below;
// on the way:
//   * guest writes (WriteV, Discard, WriteZeroes) hold a lock on their range, widened to whole
//     chunks of `granularity` bytes, for the whole call; a job that copies a chunk holds the
//     same lock (LockChunks), so a copy never interleaves with a guest write to that chunk
//     (block-stream, drive-backup);
//   * with tracking on, a guest write marks its chunks dirty once done (active block-commit
//     copies dirty chunks again until the pivot);
//   * with a before-write hook, the hook runs with the range locked, before the write reaches
//     the image (drive-backup's copy-before-write: the old data reaches the target first).
// Reads and flushes pass straight through. raw_fd() is nullopt, so the async layer sends every
// request through WriteV here (io_uring resumes when the job ends and the filter is removed).
//
// Threads: any (the async layer's workers and the job's thread). The hook and the dirty
// bitmap are set before the filter is put under the device.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "storage/disk_image.h"

namespace kite::storage {

class JobFilter final : public DiskImage {
 public:
  // Called with [first_chunk, last_chunk] locked, before a guest write to those chunks.
  using BeforeWrite = std::function<Result<void>(uint64_t first_chunk, uint64_t last_chunk)>;

  JobFilter(std::shared_ptr<DiskImage> below, uint64_t granularity);

  const std::shared_ptr<DiskImage>& below() const { return below_; }
  uint64_t granularity() const { return granularity_; }
  uint64_t chunks() const { return (below_->size() + granularity_ - 1) / granularity_; }

  void set_before_write(BeforeWrite hook) { before_write_ = std::move(hook); }
  void set_tracking(bool on);
  // Takes (and clears) up to `max` dirty chunks, lowest first.
  std::vector<uint64_t> TakeDirty(size_t max);
  uint64_t dirty_count() const;

  // Holds chunks [first, last] against guest writes (and other holders) until destroyed.
  class ChunkLock {
   public:
    ChunkLock(JobFilter* filter, uint64_t first, uint64_t last);
    ~ChunkLock();
    ChunkLock(const ChunkLock&) = delete;
    ChunkLock& operator=(const ChunkLock&) = delete;

   private:
    JobFilter* filter_;
    uint64_t first_, last_;
  };

  // DiskImage
  ImageFormat format() const override { return below_->format(); }
  const std::string& path() const override { return below_->path(); }
  uint64_t size() const override { return below_->size(); }
  bool read_only() const override { return below_->read_only(); }
  uint64_t allocated_bytes() const override { return below_->allocated_bytes(); }
  DiskImage* backing() const override { return below_->backing(); }
  bool failed() const override { return below_->failed(); }
  Result<void> ReadV(uint64_t offset, std::span<const iovec> iov) override {
    return below_->ReadV(offset, iov);
  }
  std::optional<Result<void>> TryReadNow(uint64_t offset, std::span<const iovec> iov) override {
    return below_->TryReadNow(offset, iov);
  }
  Result<void> WriteV(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> Flush() override { return below_->Flush(); }
  Result<void> Discard(uint64_t offset, uint64_t length) override;
  Result<void> WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap) override;
  Result<Extent> BlockStatus(uint64_t offset, uint64_t max_length) override {
    return below_->BlockStatus(offset, max_length);
  }

 private:
  // Runs `write` on [offset, offset + length) with its chunks locked, the hook first and the
  // dirty marks after.
  Result<void> GuestWrite(uint64_t offset, uint64_t length,
                          const std::function<Result<void>()>& write);
  void Lock(uint64_t first, uint64_t last);
  void Unlock(uint64_t first, uint64_t last);

  const std::shared_ptr<DiskImage> below_;
  const uint64_t granularity_;
  BeforeWrite before_write_;

  mutable std::mutex mu_;
  std::condition_variable unlocked_;
  std::vector<std::pair<uint64_t, uint64_t>> held_;  // locked chunk ranges, inclusive
  bool tracking_ = false;
  std::vector<uint64_t> dirty_;  // one bit per chunk
  uint64_t dirty_count_ = 0;
};

}  // namespace kite::storage
