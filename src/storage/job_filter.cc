// JobFilter: chunk locks, the dirty bitmap and the before-write hook. See job_filter.h.
#include "storage/job_filter.h"

#include <algorithm>

namespace kite::storage {
namespace {

uint64_t IovBytes(std::span<const iovec> iov) {
  uint64_t n = 0;
  for (const iovec& v : iov) n += v.iov_len;
  return n;
}

}  // namespace

JobFilter::JobFilter(std::shared_ptr<DiskImage> below, uint64_t granularity)
    : below_(std::move(below)), granularity_(granularity) {
  dirty_.assign((chunks() + 63) / 64, 0);
}

void JobFilter::set_tracking(bool on) {
  std::lock_guard lock(mu_);
  tracking_ = on;
}

std::vector<uint64_t> JobFilter::TakeDirty(size_t max) {
  std::vector<uint64_t> out;
  std::lock_guard lock(mu_);
  for (size_t w = 0; w < dirty_.size() && out.size() < max; ++w) {
    while (dirty_[w] != 0 && out.size() < max) {
      int bit = __builtin_ctzll(dirty_[w]);
      dirty_[w] &= dirty_[w] - 1;
      --dirty_count_;
      out.push_back(w * 64 + static_cast<uint64_t>(bit));
    }
  }
  return out;
}

uint64_t JobFilter::dirty_count() const {
  std::lock_guard lock(mu_);
  return dirty_count_;
}

void JobFilter::Lock(uint64_t first, uint64_t last) {
  std::unique_lock lock(mu_);
  unlocked_.wait(lock, [&] {
    return std::none_of(held_.begin(), held_.end(),
                        [&](const auto& r) { return r.first <= last && first <= r.second; });
  });
  held_.emplace_back(first, last);
}

void JobFilter::Unlock(uint64_t first, uint64_t last) {
  {
    std::lock_guard lock(mu_);
    auto it = std::find(held_.begin(), held_.end(), std::pair{first, last});
    if (it != held_.end()) held_.erase(it);
  }
  unlocked_.notify_all();
}

JobFilter::ChunkLock::ChunkLock(JobFilter* filter, uint64_t first, uint64_t last)
    : filter_(filter), first_(first), last_(last) {
  filter_->Lock(first_, last_);
}

JobFilter::ChunkLock::~ChunkLock() {
  filter_->Unlock(first_, last_);
}

Result<void> JobFilter::GuestWrite(uint64_t offset, uint64_t length,
                                   const std::function<Result<void>()>& write) {
  // Out-of-range requests are refused by the image below; nothing to lock for them.
  if (length == 0 || offset >= size() || length > size() - offset) return write();
  uint64_t first = offset / granularity_;
  uint64_t last = (offset + length - 1) / granularity_;
  ChunkLock hold(this, first, last);
  if (before_write_) TRY(before_write_(first, last));
  Result<void> done = write();
  std::lock_guard lock(mu_);
  if (tracking_) {
    for (uint64_t c = first; c <= last; ++c) {
      uint64_t bit = uint64_t{1} << (c % 64);
      if ((dirty_[c / 64] & bit) == 0) {
        dirty_[c / 64] |= bit;
        ++dirty_count_;
      }
    }
  }
  return done;
}

Result<void> JobFilter::WriteV(uint64_t offset, std::span<const iovec> iov) {
  return GuestWrite(offset, IovBytes(iov), [&] { return below_->WriteV(offset, iov); });
}

Result<void> JobFilter::Discard(uint64_t offset, uint64_t length) {
  return GuestWrite(offset, length, [&] { return below_->Discard(offset, length); });
}

Result<void> JobFilter::WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap) {
  return GuestWrite(offset, length, [&] { return below_->WriteZeroes(offset, length, may_unmap); });
}

}  // namespace kite::storage
