// CheckQed (see qed_check.h).
#include "storage/qed/qed_check.h"

#include <vector>

#include "storage/qcow2/qcow2_io.h"
#include "storage/qed/qed_image.h"
#include "storage/raw_image.h"

namespace kite::storage::qed {
namespace {

constexpr uint64_t kSliceEntries = 512;  // entries read at once (4 KiB)

class Checker {
 public:
  Checker(const Header& h, int fd, uint64_t file_size)
      : h_(h), io_(fd), file_size_(file_size), used_(file_size / h.cluster_size) {}

  Result<CheckReport> Run() {
    report_.total_clusters =
        h_.image_size / h_.cluster_size + (h_.image_size % h_.cluster_size != 0);
    MarkUsed(0, h_.header_size);
    MarkUsed(h_.l1_table_offset, h_.table_size);
    TRY(ForEachEntry(h_.l1_table_offset, [&](uint64_t, uint64_t l2) { return CheckL1Entry(l2); }));
    for (uint64_t c = h_.header_size; c < used_.size(); ++c) {
      if (!used_[c]) ++report_.leaks;
    }
    return report_;
  }

 private:
  // Calls `f(index, entry)` for every entry of the table at `offset`, 4 KiB at a time.
  template <typename F>
  Result<void> ForEachEntry(uint64_t offset, F f) {
    std::vector<uint64_t> slice(kSliceEntries);
    for (uint64_t i = 0; i < h_.table_entries(); i += kSliceEntries) {
      if (!io_.Read(slice.data(), slice.size() * 8, offset + i * 8)) {
        ++report_.check_errors;
        return {};
      }
      for (uint64_t j = 0; j < kSliceEntries; ++j) TRY(f(i + j, slice[j]));
    }
    return {};
  }

  // Marks `n` clusters from `offset` used; a cluster used already is a corruption.
  bool MarkUsed(uint64_t offset, uint64_t n) {
    bool fresh = true;
    for (uint64_t c = offset / h_.cluster_size; n-- > 0; ++c) {
      if (c >= used_.size()) continue;
      if (used_[c]) ++report_.corruptions, fresh = false;
      used_[c] = true;
    }
    return fresh;
  }

  Result<void> CheckL1Entry(uint64_t l2) {
    if (l2 == kUnallocated) return {};
    if (!ValidClusterOffset(h_, l2, h_.table_size, file_size_)) {
      ++report_.corruptions;
      return {};
    }
    if (!MarkUsed(l2, h_.table_size)) return {};
    last_ = 0;
    return ForEachEntry(l2, [&](uint64_t, uint64_t data) { return CheckL2Entry(data); });
  }

  Result<void> CheckL2Entry(uint64_t data) {
    if (data == kUnallocated || data == kZeroCluster) return {};
    ++report_.allocated_clusters;
    if (last_ != 0 && data != last_ + h_.cluster_size) ++report_.fragmented_clusters;
    last_ = data;
    if (!ValidClusterOffset(h_, data, 1, file_size_)) {
      ++report_.corruptions;
      return {};
    }
    MarkUsed(data, 1);
    return {};
  }

  const Header h_;
  const qcow2::FileIo io_;
  const uint64_t file_size_;
  std::vector<bool> used_;  // one bit per whole cluster of the file
  uint64_t last_ = 0;       // the previous data cluster of the L2 table being checked
  CheckReport report_;
};

}  // namespace

Result<CheckReport> CheckQed(const std::string& path) {
  OpenOptions o;
  o.read_only = true;
  OpenedFile file = TRY(OpenImageFile(path, o));
  HeaderAndName hn = TRY(ReadHeader(file.fd.get(), file.size, path));
  return Checker(hn.header, file.fd.get(), file.size).Run();
}

}  // namespace kite::storage::qed
