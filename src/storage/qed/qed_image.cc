// QedImage (see qed_image.h): header and L1 checks at open, cluster lookup through a bounded
// cache of 4 KiB L2 slices, reads from data clusters, the backing file or zeros.
#include "storage/qed/qed_image.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "storage/qcow2/qcow2_io.h"
#include "storage/read_only_image.h"

namespace kite::storage::qed {
namespace {

constexpr uint64_t kSliceEntries = 512;  // 4 KiB of L2 entries
constexpr size_t kMaxCachedSlices = 4096;

// What one guest cluster is.
struct Mapping {
  enum Kind { kUnallocated, kZero, kData } kind = kUnallocated;
  uint64_t host = 0;  // kData: the cluster's file offset
};

class QedImage final : public ReadOnlyImage {
 public:
  QedImage(QedOpenParams p, std::vector<uint64_t> l1)
      : path_(std::move(p.path)),
        file_(std::move(p.file)),
        io_(file_.fd.get()),
        h_(p.header),
        backing_(std::move(p.backing)),
        l1_(std::move(l1)) {}

  ImageFormat format() const override { return ImageFormat::kQed; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return h_.image_size; }
  uint64_t allocated_bytes() const override {
    struct stat st;
    return ::fstat(file_.fd.get(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
  }
  DiskImage* backing() const override { return backing_.get(); }

  Result<void> ReadV(uint64_t offset, std::span<const iovec> iov) override;
  Result<Extent> BlockStatus(uint64_t offset, uint64_t max_length) override;

 private:
  std::string ReadOnlyReason() const override {
    return "QED images are read-only in kite (convert to qcow2 to write)";
  }
  Result<Mapping> Lookup(uint64_t offset);
  Result<uint64_t> L2Entry(uint64_t l2_offset, uint64_t index);
  Result<void> ReadCluster(uint64_t offset, uint8_t* out, size_t len);
  Result<void> ReadBacking(uint64_t offset, uint8_t* out, size_t len);

  const std::string path_;
  const OpenedFile file_;
  const qcow2::FileIo io_;
  const Header h_;
  const std::unique_ptr<DiskImage> backing_;
  const std::vector<uint64_t> l1_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<uint64_t>> slices_;  // by file offset; mu_
};

Result<uint64_t> QedImage::L2Entry(uint64_t l2_offset, uint64_t index) {
  uint64_t slice_at = l2_offset + index / kSliceEntries * kSliceEntries * 8;
  std::lock_guard lock(mu_);
  auto it = slices_.find(slice_at);
  if (it == slices_.end()) {
    if (slices_.size() >= kMaxCachedSlices) slices_.clear();
    std::vector<uint64_t> slice(kSliceEntries);
    TRY_CTX(io_.Read(slice.data(), slice.size() * 8, slice_at),
            path_ + ": reading the L2 table at " + std::to_string(l2_offset));
    it = slices_.emplace(slice_at, std::move(slice)).first;
  }
  return it->second[index % kSliceEntries];
}

Result<Mapping> QedImage::Lookup(uint64_t offset) {
  uint64_t cluster = offset / h_.cluster_size;
  uint64_t l2_offset = l1_[cluster / h_.table_entries()];
  if (l2_offset == kUnallocated) return Mapping{};
  uint64_t index = cluster % h_.table_entries();
  uint64_t entry = TRY(L2Entry(l2_offset, index));
  if (entry == kUnallocated) return Mapping{};
  if (entry == kZeroCluster) return Mapping{Mapping::kZero, 0};
  if (!ValidClusterOffset(h_, entry, 1, file_.size)) {
    return Err(path_ + ": L2 table at " + std::to_string(l2_offset) + ", entry " +
               std::to_string(index) + " (guest offset " +
               std::to_string(cluster * h_.cluster_size) + "): data cluster offset " +
               std::to_string(entry) + " is misaligned, inside the header or beyond the file");
  }
  return Mapping{Mapping::kData, entry};
}

// Unallocated: the backing file's bytes, zeros past its end (BAD_INPUTS I18).
Result<void> QedImage::ReadBacking(uint64_t offset, uint8_t* out, size_t len) {
  size_t from_backing = 0;
  if (backing_ && offset < backing_->size()) {
    from_backing = static_cast<size_t>(std::min<uint64_t>(len, backing_->size() - offset));
    TRY(backing_->Read(offset, out, from_backing));
  }
  std::memset(out + from_backing, 0, len - from_backing);
  return {};
}

// `len` bytes at guest `offset`, all inside one cluster.
Result<void> QedImage::ReadCluster(uint64_t offset, uint8_t* out, size_t len) {
  Mapping m = TRY(Lookup(offset));
  switch (m.kind) {
    case Mapping::kUnallocated:
      return ReadBacking(offset, out, len);
    case Mapping::kZero:
      std::memset(out, 0, len);
      return {};
    case Mapping::kData:
      break;
  }
  return io_.Read(out, len, m.host + offset % h_.cluster_size);
}

Result<void> QedImage::ReadV(uint64_t offset, std::span<const iovec> iov) {
  uint64_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  if (offset > size() || total > size() - offset) {
    return Err(path_ + ": read beyond the end of the disk");
  }
  for (const iovec& v : iov) {
    auto* p = static_cast<uint8_t*>(v.iov_base);
    size_t left = v.iov_len;
    while (left > 0) {
      uint64_t in_cluster = offset % h_.cluster_size;
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(left, h_.cluster_size - in_cluster));
      TRY(ReadCluster(offset, p, chunk));
      p += chunk, left -= chunk, offset += chunk;
    }
  }
  return {};
}

Result<Extent> QedImage::BlockStatus(uint64_t offset, uint64_t max_length) {
  if (offset >= size()) return Err(path_ + ": block status beyond the end of the disk");
  const uint64_t cs = h_.cluster_size, limit = std::min(max_length, size() - offset);
  Mapping first = TRY(Lookup(offset));
  uint64_t len = std::min(limit, cs - offset % cs);
  while (len < limit) {
    Mapping next = TRY(Lookup(offset + len));
    if (next.kind != first.kind) break;
    if (first.kind == Mapping::kData &&
        next.host != first.host + (offset + len) / cs * cs - offset / cs * cs) {
      break;
    }
    len = std::min(limit, len + cs);
  }
  if (first.kind == Mapping::kUnallocated && backing_ && offset < backing_->size()) {
    Extent b = TRY(backing_->BlockStatus(offset, std::min(len, backing_->size() - offset)));
    b.depth += 1;
    b.allocated = false;
    return b;
  }
  Extent e;
  e.offset = offset;
  e.length = len;
  e.allocated = first.kind != Mapping::kUnallocated;
  e.data = first.kind == Mapping::kData;
  e.zero = !e.data;
  if (e.data) e.host_offset = first.host + offset % cs;
  return e;
}

}  // namespace

Result<HeaderAndName> ReadHeader(int fd, uint64_t file_size, const std::string& path) {
  qcow2::FileIo io(fd);
  std::vector<uint8_t> bytes(kHeaderBytes);
  if (file_size >= kHeaderBytes) TRY_CTX(io.Read(bytes.data(), bytes.size(), 0), path);
  HeaderAndName out;
  out.header = TRY(ParseHeader(bytes, file_size, path));
  if (out.header.has_backing()) {
    out.backing_file.resize(out.header.backing_filename_size);
    TRY_CTX(io.Read(out.backing_file.data(), out.backing_file.size(),
                    out.header.backing_filename_offset),
            path + ": backing file name");
    if (out.backing_file.find('\0') != std::string::npos) {
      return Err(path + ": invalid QED header: the backing file name contains a NUL byte");
    }
  }
  return out;
}

Result<std::unique_ptr<DiskImage>> OpenQed(QedOpenParams p) {
  const Header& h = p.header;
  std::vector<uint64_t> l1(h.l1_entries_used());
  TRY_CTX(qcow2::FileIo(p.file.fd.get()).Read(l1.data(), l1.size() * 8, h.l1_table_offset),
          p.path + ": L1 table");
  for (size_t i = 0; i < l1.size(); ++i) {
    if (l1[i] != kUnallocated && !ValidClusterOffset(h, l1[i], h.table_size, p.file.size)) {
      return Err(p.path + ": L1 entry " + std::to_string(i) + ": L2 table offset " +
                 std::to_string(l1[i]) +
                 " is misaligned, inside the header or not wholly inside the file");
    }
  }
  return std::unique_ptr<DiskImage>(new QedImage(std::move(p), std::move(l1)));
}

}  // namespace kite::storage::qed
