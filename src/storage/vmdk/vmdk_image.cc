// VmdkImage (see vmdk_image.h): open-time validation of header, footer, descriptor and grain
// directory; grain lookup through a bounded grain-table cache; raw and deflate grain reads.
// OpenVmdk tells a sparse file (KDMV) from a descriptor file (vmdk_extents.cc).
#include "storage/vmdk/vmdk_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/unique_fd.h"
#include "storage/read_only_image.h"
#include "storage/vmdk/vmdk_extents.h"
#include "storage/vmdk/vmdk_format.h"

namespace kite::storage {
namespace {

constexpr size_t kMaxCachedTables = 4096;

Result<void> PreadFull(int fd, void* buf, size_t len, uint64_t offset, const std::string& what) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysErr("reading " + what);
    if (n == 0) return Err(what + ": unexpected end of file at offset " + std::to_string(offset));
    p += n, len -= static_cast<size_t>(n), offset += static_cast<uint64_t>(n);
  }
  return {};
}

class VmdkImage final : public ReadOnlyImage {
 public:
  VmdkImage(std::string path, UniqueFd fd, uint64_t file_size, VmdkHeader h,
            std::vector<uint32_t> gd)
      : path_(std::move(path)),
        fd_(std::move(fd)),
        file_size_(file_size),
        h_(h),
        gd_(std::move(gd)) {}

  ImageFormat format() const override { return ImageFormat::kVmdk; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return h_.capacity_bytes(); }
  uint64_t allocated_bytes() const override {
    struct stat st;
    return ::fstat(fd_.get(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
  }

  Result<void> ReadV(uint64_t offset, std::span<const iovec> iov) override;
  Result<Extent> BlockStatus(uint64_t offset, uint64_t max_length) override;

 private:
  std::string ReadOnlyReason() const override { return "VMDK images are read-only in kite"; }
  // The grain-table entry of grain `grain` (0 = unallocated).
  Result<uint32_t> Gte(uint64_t grain);
  // Reads `len` bytes at `in_grain` within grain `grain` into `out`.
  Result<void> ReadGrain(uint64_t grain, uint64_t in_grain, uint8_t* out, size_t len);
  Result<void> ReadCompressedGrain(uint64_t grain, uint32_t gte, std::vector<uint8_t>& out);

  const std::string path_;
  const UniqueFd fd_;
  const uint64_t file_size_;
  const VmdkHeader h_;
  const std::vector<uint32_t> gd_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<uint32_t>> tables_;  // guarded by mu_
};

Result<uint32_t> VmdkImage::Gte(uint64_t grain) {
  uint64_t gd_index = grain / h_.gtes_per_gt;
  if (gd_index >= gd_.size() || gd_[gd_index] == 0) return 0u;
  std::lock_guard lock(mu_);
  auto it = tables_.find(gd_index);
  if (it == tables_.end()) {
    if (tables_.size() >= kMaxCachedTables) tables_.clear();
    std::vector<uint32_t> table(h_.gtes_per_gt);
    TRY(PreadFull(fd_.get(), table.data(), table.size() * 4, uint64_t{gd_[gd_index]} * 512,
                  path_ + ": grain table " + std::to_string(gd_index)));
    it = tables_.emplace(gd_index, std::move(table)).first;
  }
  return it->second[grain % h_.gtes_per_gt];
}

Result<void> VmdkImage::ReadCompressedGrain(uint64_t grain, uint32_t gte,
                                            std::vector<uint8_t>& out) {
  const std::string what = path_ + ": grain " + std::to_string(grain);
  uint8_t head[16] = {};
  uint64_t at = uint64_t{gte} * 512;
  if (at + 12 > file_size_) return Err(what + ": marker beyond end of file");
  TRY(PreadFull(fd_.get(), head, 12, at, what));
  VmdkMarker m = ParseVmdkMarker(std::span<const uint8_t, 16>(head, 16));
  if (m.value != grain * h_.grain_sectors) {
    return Err(what + ": marker names LBA " + std::to_string(m.value) + ", expected " +
               std::to_string(grain * h_.grain_sectors));
  }
  // A deflate stream of one grain never needs more than the grain plus its framing (I30).
  if (m.size == 0 || m.size > h_.grain_bytes() + h_.grain_bytes() / 8 + 1024) {
    return Err(what + ": compressed size " + std::to_string(m.size) + " out of range");
  }
  if (at + 12 + m.size > file_size_) return Err(what + ": compressed data beyond end of file");
  std::vector<uint8_t> packed(m.size);
  TRY(PreadFull(fd_.get(), packed.data(), packed.size(), at + 12, what));
  out.assign(h_.grain_bytes(), 0);
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return Err(what + ": inflateInit failed");
  z.next_in = packed.data();
  z.avail_in = static_cast<uInt>(packed.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&z, Z_FINISH);
  uint64_t produced = out.size() - z.avail_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END) {
    return Err(what + (z.avail_out == 0 ? ": deflate stream inflates beyond the grain size"
                                        : ": truncated or corrupt deflate stream"));
  }
  uint64_t needed =
      std::min<uint64_t>(h_.grain_bytes(), h_.capacity_bytes() - grain * h_.grain_bytes());
  if (produced < needed) return Err(what + ": deflate stream shorter than the grain");
  return {};
}

Result<void> VmdkImage::ReadGrain(uint64_t grain, uint64_t in_grain, uint8_t* out, size_t len) {
  uint32_t gte = TRY(Gte(grain));
  if (gte == 0 || (gte == 1 && h_.zeroed_gte())) {
    std::memset(out, 0, len);
    return {};
  }
  if (h_.compressed()) {
    std::vector<uint8_t> buf;
    TRY(ReadCompressedGrain(grain, gte, buf));
    std::memcpy(out, buf.data() + in_grain, len);
    return {};
  }
  uint64_t at = uint64_t{gte} * 512 + in_grain;
  if (at + len > file_size_) {
    return Err(path_ + ": grain " + std::to_string(grain) + " lies beyond the end of file");
  }
  return PreadFull(fd_.get(), out, len, at, path_ + ": grain " + std::to_string(grain));
}

Result<void> VmdkImage::ReadV(uint64_t offset, std::span<const iovec> iov) {
  uint64_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  if (offset > size() || total > size() - offset) {
    return Err(path_ + ": read beyond the end of the disk");
  }
  const uint64_t grain_bytes = h_.grain_bytes();
  for (const iovec& v : iov) {
    auto* p = static_cast<uint8_t*>(v.iov_base);
    size_t left = v.iov_len;
    while (left > 0) {
      uint64_t in_grain = offset % grain_bytes;
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(left, grain_bytes - in_grain));
      TRY(ReadGrain(offset / grain_bytes, in_grain, p, chunk));
      p += chunk, left -= chunk, offset += chunk;
    }
  }
  return {};
}

Result<Extent> VmdkImage::BlockStatus(uint64_t offset, uint64_t max_length) {
  if (offset >= size()) return Err(path_ + ": block status beyond the end of the disk");
  max_length = std::min(max_length, size() - offset);
  const uint64_t grain_bytes = h_.grain_bytes();
  auto kind = [&](uint32_t gte) { return gte == 0 ? 0 : (gte == 1 && h_.zeroed_gte()) ? 1 : 2; };
  uint32_t first = TRY(Gte(offset / grain_bytes));
  Extent e;
  e.offset = offset;
  e.allocated = first != 0;
  e.data = kind(first) == 2;
  e.zero = !e.data;
  if (e.data && !h_.compressed()) e.host_offset = uint64_t{first} * 512 + offset % grain_bytes;
  uint64_t end = std::min(offset + max_length, (offset / grain_bytes + 1) * grain_bytes);
  uint32_t prev = first;
  while (end < offset + max_length) {
    uint32_t gte = TRY(Gte(end / grain_bytes));
    if (kind(gte) != kind(first)) break;
    if (e.host_offset && gte != prev + h_.grain_sectors) break;
    prev = gte;
    end = std::min(offset + max_length, end + grain_bytes);
  }
  e.length = end - offset;
  return e;
}

// For GD_AT_END: the footer marker, footer header and end-of-stream marker close the file.
Result<VmdkHeader> ReadFooter(int fd, uint64_t file_size, const std::string& path) {
  if (file_size < 4 * 512) return Err(path + ": stream-optimized VMDK too short for a footer");
  std::vector<uint8_t> tail(3 * 512);
  TRY(PreadFull(fd, tail.data(), tail.size(), file_size - tail.size(), path + ": footer"));
  VmdkMarker footer = ParseVmdkMarker(std::span<const uint8_t, 16>(tail.data(), 16));
  VmdkMarker eos = ParseVmdkMarker(std::span<const uint8_t, 16>(tail.data() + 1024, 16));
  if (footer.size != 0 || footer.type != kVmdkMarkerFooter) {
    return Err(path + ": gdOffset is GD_AT_END but no footer marker precedes the footer");
  }
  if (eos.value != 0 || eos.size != 0 || eos.type != kVmdkMarkerEos) {
    return Err(path + ": stream-optimized VMDK does not end with an end-of-stream marker");
  }
  VmdkHeader h = TRY(ParseVmdkHeader(std::span(tail).subspan(512, 512), path + " (footer)"));
  if (h.gd_offset == kVmdkGdAtEnd) return Err(path + ": footer gdOffset is GD_AT_END too");
  return h;
}

Result<void> CheckDescriptor(int fd, const VmdkHeader& h, uint64_t file_size,
                             const std::string& path) {
  if (h.descriptor_size == 0) {
    if (h.compressed()) return Err(path + ": stream-optimized VMDK without a descriptor");
    return {};
  }
  if (h.descriptor_offset > file_size / 512 ||
      h.descriptor_size > file_size / 512 - h.descriptor_offset) {
    return Err(path + ": descriptor lies beyond the end of file");
  }
  std::string text(h.descriptor_size * 512, '\0');
  TRY(PreadFull(fd, text.data(), text.size(), h.descriptor_offset * 512, path + ": descriptor"));
  VmdkDescriptor d = TRY(ParseVmdkDescriptor(text, path));
  if ((d.create_type == "streamOptimized") != h.compressed()) {
    return Err(path + ": createType " + d.create_type + " disagrees with the header flags");
  }
  if (d.extents[0].sectors != h.capacity_sectors) {
    return Err(path + ": descriptor extent of " + std::to_string(d.extents[0].sectors) +
               " sectors, header capacity " + std::to_string(h.capacity_sectors));
  }
  return {};
}

Result<std::vector<uint32_t>> LoadGrainDirectory(int fd, const VmdkHeader& h, uint64_t file_size,
                                                 const std::string& path) {
  uint64_t bytes = h.gd_entries() * 4;
  if (h.gd_offset > file_size / 512 || bytes > file_size - h.gd_offset * 512) {
    return Err(path + ": grain directory (gdOffset " + std::to_string(h.gd_offset) +
               ") lies beyond the end of file");
  }
  std::vector<uint32_t> gd(h.gd_entries());
  TRY(PreadFull(fd, gd.data(), bytes, h.gd_offset * 512, path + ": grain directory"));
  for (size_t i = 0; i < gd.size(); ++i) {
    if (gd[i] != 0 && uint64_t{gd[i]} * 512 + uint64_t{h.gtes_per_gt} * 4 > file_size) {
      return Err(path + ": grain table " + std::to_string(i) + " (sector " + std::to_string(gd[i]) +
                 ") lies beyond the end of file");
    }
  }
  return gd;
}

// A file with a KDMV header: monolithicSparse or streamOptimized with its embedded descriptor,
// or (`extent_only`) a sparse extent of a descriptor file, whose embedded descriptor is unused.
Result<std::unique_ptr<DiskImage>> OpenSparse(const std::string& path, UniqueFd fd,
                                              uint64_t file_size, bool extent_only) {
  std::vector<uint8_t> sector(512);
  TRY(PreadFull(fd.get(), sector.data(), 512, 0, path));
  VmdkHeader h = TRY(ParseVmdkHeader(sector, path));
  if (h.gd_offset == kVmdkGdAtEnd) {
    if (!h.compressed()) return Err(path + ": GD_AT_END outside a stream-optimized VMDK");
    h = TRY(ReadFooter(fd.get(), file_size, path));
  }
  if (!extent_only) TRY(CheckDescriptor(fd.get(), h, file_size, path));
  std::vector<uint32_t> gd = TRY(LoadGrainDirectory(fd.get(), h, file_size, path));
  return std::unique_ptr<DiskImage>(
      new VmdkImage(path, std::move(fd), file_size, h, std::move(gd)));
}

Result<std::pair<UniqueFd, uint64_t>> OpenRegular(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return SysErr("opening " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return SysErr("fstat " + path);
  if (!S_ISREG(st.st_mode)) return Err(path + ": not a regular file");
  return std::pair{std::move(fd), static_cast<uint64_t>(st.st_size)};
}

}  // namespace

Result<std::unique_ptr<DiskImage>> OpenVmdkSparseExtent(const std::string& path) {
  auto [fd, file_size] = TRY(OpenRegular(path));
  if (file_size < 512) return Err(path + ": too short for a VMDK sparse extent header");
  return OpenSparse(path, std::move(fd), file_size, /*extent_only=*/true);
}

Result<std::unique_ptr<DiskImage>> OpenVmdk(const std::string& path) {
  auto [fd, file_size] = TRY(OpenRegular(path));
  return OpenVmdk(path, std::move(fd), file_size);
}

Result<std::unique_ptr<DiskImage>> OpenVmdk(const std::string& path, UniqueFd fd,
                                            uint64_t file_size) {
  std::string head(std::min<uint64_t>(file_size, kVmdkMaxDescriptorSectors * 512), '\0');
  TRY(PreadFull(fd.get(), head.data(), head.size(), 0, path));
  if (LooksLikeVmdkDescriptor(head)) {
    if (file_size > head.size()) return Err(path + ": VMDK descriptor file larger than 1 MiB");
    return OpenVmdkDescriptorFile(path, std::move(fd), head);
  }
  if (file_size < 512) return Err(path + ": too short for a VMDK header");
  return OpenSparse(path, std::move(fd), file_size, /*extent_only=*/false);
}

}  // namespace kite::storage
