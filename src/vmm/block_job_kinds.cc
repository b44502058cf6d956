// The three block jobs (block_jobs.h has the model and the states):
//
//   stream  Copies into the active layer what it reads from its backing chain above `base`,
//           a step at a time, each step with its chunks locked against the guest's writes
//           (a chunk the guest wrote meanwhile is allocated in the active layer and skipped).
//           Then, with the disk's I/O stopped, the active layer's header is rewritten to name
//           `base` (or no backing file) and the chain is reopened.
//   commit  Copies into `base` what the layers from `top` down to above `base` hold; `base` is
//           reopened read-write for it. Intermediate `top`: the guest does not write there, so
//           plain copies suffice; then the layer above `top` is rebased onto `base`. Active
//           `top`: the guest's writes are tracked (JobFilter dirty bitmap) and copied again
//           until nothing is dirty, then READY; block-job-complete stops the I/O, copies the
//           last dirty chunks, flushes `base` and pivots the disk to it.
//   backup  Copies the whole disk to `target` as of the job's start: a guest write to a chunk
//           not yet copied first copies the old data (copy-before-write in the JobFilter).
//
// Crash safety: before a pivot the old chain is untouched (stream and commit only add data
// that reads the same to layers the chain already reads through); the pivot rewrites one
// header or switches the disk to a `base` flushed beforehand.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

#include "storage/job_filter.h"
#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "vmm/block_job.h"

namespace kite {
namespace {

using storage::DiskImage;
using storage::Extent;
using storage::JobFilter;
using ImagePtr = std::shared_ptr<DiskImage>;

constexpr int kNoBase = 1 << 30;  // deeper than any chain

std::string Absolute(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

bool AllZero(const std::vector<uint8_t>& buf, size_t len) {
  return std::all_of(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(len),
                     [](uint8_t b) { return b == 0; });
}

// The disk's chain reopened from `path` with `options` (the old one must be closed: locks).
Result<ImagePtr> OpenChain(const std::string& path, storage::ImageFormat format,
                           const storage::OpenOptions& options) {
  return ImagePtr(TRY(storage::OpenImage(path, format, options)));
}

// Copies [offset, offset + length) as `source` reads it into `dest`: data is written, zeros
// become WriteZeroes unless `skip_zeros`.
Result<void> CopyRange(DiskImage& source, DiskImage& dest, uint64_t offset, uint64_t length,
                       std::vector<uint8_t>& buf, bool skip_zeros) {
  if (buf.size() < length) buf.resize(length);
  TRY(source.Read(offset, buf.data(), length));
  if (AllZero(buf, length)) {
    if (skip_zeros) return {};
    return dest.WriteZeroes(offset, length, /*may_unmap=*/false);
  }
  return dest.Write(offset, buf.data(), length);
}

// The filter under the disk, or the disk's image itself.
JobFilter* AsFilter(const ImagePtr& image) {
  return dynamic_cast<JobFilter*>(image.get());
}

// Puts a JobFilter on the disk (with the disk's I/O stopped).
Result<std::shared_ptr<JobFilter>> InstallFilter(const BlockJobHost& host,
                                                 const std::string& device) {
  std::shared_ptr<JobFilter> filter;
  TRY(host.reconfigure(device, [&](ImagePtr& image) -> Result<void> {
    if (AsFilter(image)) return Err("a block job's filter is already on the disk");
    filter = std::make_shared<JobFilter>(image, kJobGranularity);
    image = filter;
    return {};
  }));
  return filter;
}

// Takes the filter off again (the image below goes back under the device).
void RemoveFilter(const BlockJobHost& host, const std::string& device) {
  (void)host.reconfigure(device, [](ImagePtr& image) -> Result<void> {
    if (JobFilter* filter = AsFilter(image)) image = filter->below();
    return {};
  });
}

// ---- stream ----

class StreamJob final : public BlockJob {
 public:
  StreamJob(const BlockJobRequest& r, std::string id, const BlockJobHost* host)
      : BlockJob(BlockJobType::kStream, std::move(id), r.device, r.speed, host), base_(r.base) {}
  ~StreamJob() override { Join(); }

 protected:
  Result<void> Prepare(ImagePtr image) override {
    if (image->format() != storage::ImageFormat::kQcow2 || !image->backing()) {
      return Err("block-stream: " + image->path() + " has no backing file to stream from");
    }
    if (!base_.empty()) {
      auto layer = storage::FindLayer(*image, base_);
      if (!layer || layer->second == 0) {
        return Err("block-stream: base '" + base_ + "' is not in the backing chain of " +
                   image->path());
      }
      base_depth_ = layer->second;
      base_path_ = Absolute(layer->first->path());
      base_format_ = storage::ImageFormatName(layer->first->format());
    }
    SetLength(image->size());
    filter_ = TRY(InstallFilter(host(), device()));
    return {};
  }

  Result<void> Run() override {
    DiskImage& top = *filter_->below();
    std::vector<uint8_t> buf;
    for (uint64_t off = 0; off < top.size();) {
      uint64_t step = std::min(kJobStep, top.size() - off);
      uint64_t first = off / kJobGranularity, last = (off + step - 1) / kJobGranularity;
      {
        JobFilter::ChunkLock hold(filter_.get(), first, last);
        for (uint64_t pos = off; pos < off + step;) {
          Extent e = TRY(top.BlockStatus(pos, off + step - pos));
          if (e.depth > 0 && e.depth < base_depth_) {
            // Zeros need writing only when a base below could read otherwise.
            TRY(CopyRange(top, top, pos, e.length, buf, /*skip_zeros=*/base_depth_ == kNoBase));
          }
          pos += e.length;
        }
      }
      off += step;
      AddProgress(step);
      if (!Checkpoint(step)) return {};
    }
    return top.Flush();
  }

  Result<void> Finish(bool) override {
    filter_.reset();
    storage::OpenOptions options = TRY(host().open_options(device()));
    return host().reconfigure(device(), [&](ImagePtr& image) -> Result<void> {
      if (JobFilter* filter = AsFilter(image)) image = filter->below();
      std::string path = image->path();
      storage::ImageFormat format = image->format();
      image.reset();  // closes the chain: its locks go with it
      auto rebased = storage::SetBackingFile(path, base_path_, base_format_);
      auto reopened = OpenChain(path, format, options);
      if (reopened) image = std::move(*reopened);
      TRY(rebased);
      return reopened ? Result<void>{} : std::move(reopened).error();
    });
  }

  void Abort() override {
    filter_.reset();
    RemoveFilter(host(), device());
  }

 private:
  std::string base_;
  int base_depth_ = kNoBase;
  std::string base_path_, base_format_;
  std::shared_ptr<JobFilter> filter_;
};

// ---- commit ----

class CommitJob final : public BlockJob {
 public:
  CommitJob(const BlockJobRequest& r, std::string id, const BlockJobHost* host)
      : BlockJob(BlockJobType::kCommit, std::move(id), r.device, r.speed, host),
        top_name_(r.top),
        base_name_(r.base) {}
  ~CommitJob() override { Join(); }

 protected:
  Result<void> Prepare(ImagePtr image) override {
    TRY(Resolve(*image));
    options_ = TRY(host().open_options(device()));
    active_path_ = image->path();
    active_format_ = image->format();
    image.reset();
    // Reopen the chain with the base writable (and, for an active commit, a filter on top).
    storage::OpenOptions writable = options_;
    writable.writable_backing = base_path_;
    bool active = top_depth_ == 0;
    TRY(host().reconfigure(device(), [&](ImagePtr& disk) -> Result<void> {
      disk.reset();
      auto reopened = OpenChain(active_path_, active_format_, writable);
      if (!reopened) {
        disk = TRY(OpenChain(active_path_, active_format_, options_));
        return std::move(reopened).error();
      }
      disk = std::move(*reopened);
      if (active) {
        filter_ = std::make_shared<JobFilter>(disk, kJobGranularity);
        filter_->set_tracking(true);
        disk = filter_;
      }
      chain_ = active ? filter_->below() : disk;
      return {};
    }));
    DiskImage* base = storage::FindLayer(*chain_, base_path_)->first;
    if (base->size() < chain_->size()) TRY(storage::GrowOpenImage(*base, chain_->size()));
    SetLength(chain_->size());
    return {};
  }

  Result<void> Run() override {
    DiskImage* top = Layer(top_depth_);
    DiskImage* base = Layer(base_depth_);
    std::vector<uint8_t> buf;
    for (uint64_t off = 0; off < top->size();) {
      uint64_t step = std::min(kJobStep, top->size() - off);
      TRY(CopyStep(*top, *base, off, step, buf));
      off += step;
      AddProgress(step);
      if (!Checkpoint(step)) return {};
    }
    TRY(base->Flush());
    if (!filter_) return {};
    // Active commit: copy what the guest wrote meanwhile until nothing is dirty, then READY,
    // and go on copying new writes until block-job-complete or a cancel.
    for (;;) {
      std::vector<uint64_t> dirty = filter_->TakeDirty(kJobStep / kJobGranularity);
      for (uint64_t chunk : dirty) {
        uint64_t off = chunk * kJobGranularity;
        uint64_t len = std::min(kJobGranularity, top->size() - off);
        JobFilter::ChunkLock hold(filter_.get(), chunk, chunk);
        TRY(CopyRange(*top, *base, off, len, buf, /*skip_zeros=*/false));
      }
      if (!dirty.empty()) {
        if (!Checkpoint(dirty.size() * kJobGranularity)) return {};
        continue;
      }
      EnterReady();
      if (completing()) return {};
      if (WaitInReady(std::chrono::milliseconds(20))) return {};
      if (!Checkpoint(0)) return {};
    }
  }

  Result<void> Finish(bool pivot) override {
    if (!filter_) return FinishIntermediate();
    std::vector<uint8_t> buf;
    std::string base_path = base_path_;
    storage::ImageFormat base_format = Layer(base_depth_)->format();
    Result<void> done = host().reconfigure(device(), [&](ImagePtr& disk) -> Result<void> {
      // The guest's I/O is stopped: the last dirty chunks, then the pivot.
      DiskImage* top = Layer(0);
      DiskImage* base = Layer(base_depth_);
      for (;;) {
        std::vector<uint64_t> dirty = filter_->TakeDirty(1024);
        if (dirty.empty()) break;
        for (uint64_t chunk : dirty) {
          uint64_t off = chunk * kJobGranularity;
          TRY(CopyRange(*top, *base, off, std::min(kJobGranularity, top->size() - off), buf,
                        false));
        }
      }
      TRY(base->Flush());
      disk.reset();
      filter_.reset();
      chain_.reset();
      std::string path = pivot ? base_path : active_path_;
      storage::ImageFormat format = pivot ? base_format : active_format_;
      auto reopened = OpenChain(path, format, options_);
      if (reopened) {
        disk = std::move(*reopened);
        return {};
      }
      disk = TRY(OpenChain(active_path_, active_format_, options_));
      return std::move(reopened).error();
    });
    return done;
  }

  void Abort() override {
    filter_.reset();
    chain_.reset();
    // Back to the chain as it was: base read-only again, no filter.
    (void)host().reconfigure(device(), [&](ImagePtr& disk) -> Result<void> {
      disk.reset();
      disk = TRY(OpenChain(active_path_, active_format_, options_));
      return {};
    });
  }

 private:
  Result<void> Resolve(DiskImage& active) {
    if (!active.backing()) {
      return Err("block-commit: " + active.path() + " has no backing file to commit into");
    }
    if (!top_name_.empty()) {
      auto top = storage::FindLayer(active, top_name_);
      if (!top) return Err("block-commit: top '" + top_name_ + "' is not in the chain");
      top_depth_ = top->second;
    }
    DiskImage* base = nullptr;
    if (base_name_.empty()) {
      int depth = 0;
      for (DiskImage* layer = &active; layer; layer = layer->backing(), ++depth) {
        base = layer;
        base_depth_ = depth;
      }
    } else {
      auto found = storage::FindLayer(active, base_name_);
      if (!found) return Err("block-commit: base '" + base_name_ + "' is not in the chain");
      base = found->first;
      base_depth_ = found->second;
    }
    if (base_depth_ <= top_depth_) {
      return Err("block-commit: base '" + base->path() + "' is not below top in the chain");
    }
    base_path_ = Absolute(base->path());
    if (top_depth_ > 0) {
      DiskImage* above = &active;
      for (int d = 0; d < top_depth_ - 1; ++d) above = above->backing();
      above_top_path_ = above->path();
    }
    return {};
  }

  DiskImage* Layer(int depth) const {
    DiskImage* layer = chain_.get();
    for (int d = 0; d < depth && layer; ++d) layer = layer->backing();
    return layer;
  }

  // One step of the first pass: what the layers from top to above base hold goes to base.
  Result<void> CopyStep(DiskImage& top, DiskImage& base, uint64_t off, uint64_t step,
                        std::vector<uint8_t>& buf) {
    std::optional<JobFilter::ChunkLock> hold;
    if (filter_)
      hold.emplace(filter_.get(), off / kJobGranularity, (off + step - 1) / kJobGranularity);
    int shift = top_depth_;  // BlockStatus depths below are relative to `top`
    for (uint64_t pos = off; pos < off + step;) {
      Extent e = TRY(top.BlockStatus(pos, off + step - pos));
      if (e.depth + shift < base_depth_ && (e.data || e.zero)) {
        TRY(CopyRange(top, base, pos, e.length, buf, /*skip_zeros=*/false));
      }
      pos += e.length;
    }
    return {};
  }

  // Rebase the layer above top onto base, reopen the chain as it normally is.
  Result<void> FinishIntermediate() {
    chain_.reset();
    std::string base_format = "";
    return host().reconfigure(device(), [&](ImagePtr& disk) -> Result<void> {
      DiskImage* base = storage::FindLayer(*disk, base_path_)->first;
      base_format = storage::ImageFormatName(base->format());
      TRY(base->Flush());
      disk.reset();
      auto rebased = storage::SetBackingFile(above_top_path_, base_path_, base_format);
      disk = TRY(OpenChain(active_path_, active_format_, options_));
      return rebased;
    });
  }

  std::string top_name_, base_name_;
  int top_depth_ = 0, base_depth_ = 0;
  std::string base_path_, above_top_path_, active_path_;
  storage::ImageFormat active_format_ = storage::ImageFormat::kQcow2;
  storage::OpenOptions options_;
  ImagePtr chain_;  // the chain as reopened (below the filter for an active commit)
  std::shared_ptr<JobFilter> filter_;
};

// ---- backup ----

class BackupJob final : public BlockJob {
 public:
  BackupJob(const BlockJobRequest& r, std::string id, const BlockJobHost* host)
      : BlockJob(BlockJobType::kBackup, std::move(id), r.device, r.speed, host), request_(r) {}
  ~BackupJob() override { Join(); }

 protected:
  Result<void> Prepare(ImagePtr image) override {
    if (storage::FindLayer(*image, request_.target)) {
      return Err("drive-backup: target '" + request_.target + "' is part of the disk's chain");
    }
    uint64_t size = image->size();
    storage::ImageFormat format = TRY(storage::ParseImageFormat(request_.format));
    if (!request_.existing) {
      if (format == storage::ImageFormat::kQcow2) {
        storage::Qcow2CreateOptions create;
        create.size = size;
        TRY(storage::CreateQcow2(request_.target, create));
      } else {
        TRY(storage::CreateRaw(request_.target, size, storage::Preallocation::kOff));
      }
    }
    storage::OpenOptions options;
    options.open_backing = false;
    target_ = ImagePtr(TRY(storage::OpenImage(request_.target, format, options)));
    if (target_->size() < size) {
      return Err("drive-backup: target '" + request_.target + "' is smaller than the disk");
    }
    fresh_ = !request_.existing;
    copied_.assign((size + kJobGranularity - 1) / kJobGranularity, false);
    SetLength(size);
    source_ = image;
    filter_ = std::make_shared<JobFilter>(image, kJobGranularity);
    filter_->set_before_write([this](uint64_t first, uint64_t last) {
      return CopyChunks(first, last);  // the old data first (the range is locked)
    });
    image.reset();
    TRY(host().reconfigure(device(), [&](ImagePtr& disk) -> Result<void> {
      disk = filter_;
      return {};
    }));
    return {};
  }

  Result<void> Run() override {
    uint64_t chunks_per_step = kJobStep / kJobGranularity;
    for (uint64_t chunk = 0; chunk < copied_.size(); chunk += chunks_per_step) {
      uint64_t last = std::min<uint64_t>(copied_.size(), chunk + chunks_per_step) - 1;
      {
        JobFilter::ChunkLock hold(filter_.get(), chunk, last);
        TRY(CopyChunks(chunk, last));
      }
      uint64_t bytes = (last - chunk + 1) * kJobGranularity;
      AddProgress(bytes);
      if (!Checkpoint(bytes)) return {};
    }
    return target_->Flush();
  }

  Result<void> Finish(bool) override {
    Abort();  // the filter goes; the target is complete
    return {};
  }

  void Abort() override {
    RemoveFilter(host(), device());  // no guest write runs the hook after this
    filter_.reset();
    source_.reset();
    target_.reset();
  }

 private:
  // Copies chunks [first, last] not yet copied, with them locked by the caller.
  Result<void> CopyChunks(uint64_t first, uint64_t last) {
    std::lock_guard lock(copy_mu_);
    DiskImage& source = *source_;
    for (uint64_t c = first; c <= last && c < copied_.size(); ++c) {
      if (copied_[c]) continue;
      uint64_t off = c * kJobGranularity;
      uint64_t len = std::min(kJobGranularity, source.size() - off);
      TRY(CopyRange(source, *target_, off, len, buf_, /*skip_zeros=*/fresh_));
      copied_[c] = true;
    }
    return {};
  }

  BlockJobRequest request_;
  ImagePtr source_;  // the disk's image below the filter
  ImagePtr target_;
  bool fresh_ = true;
  std::shared_ptr<JobFilter> filter_;
  std::mutex copy_mu_;  // copied_ and buf_ (the job and the guest's writes both copy)
  std::vector<bool> copied_;
  std::vector<uint8_t> buf_;
};

}  // namespace

std::shared_ptr<BlockJob> MakeBlockJob(const BlockJobRequest& request, std::string id,
                                       const BlockJobHost* host) {
  switch (request.type) {
    case BlockJobType::kStream:
      return std::make_shared<StreamJob>(request, std::move(id), host);
    case BlockJobType::kCommit:
      return std::make_shared<CommitJob>(request, std::move(id), host);
    case BlockJobType::kBackup:
      return std::make_shared<BackupJob>(request, std::move(id), host);
  }
  return nullptr;
}

}  // namespace kite
