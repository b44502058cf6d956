// VMDK descriptor files (see vmdk_extents.h): the extents opened and checked against the
// descriptor, then one read-only DiskImage that routes each request to its extents.
#include "storage/vmdk/vmdk_extents.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/unique_fd.h"
#include "storage/read_only_image.h"
#include "storage/vmdk/vmdk_format.h"

namespace kite::storage {
namespace {

// A FLAT or VMFS extent: `size` bytes of `fd` from `start`.
class FlatExtent final : public ReadOnlyImage {
 public:
  FlatExtent(std::string path, UniqueFd fd, uint64_t start, uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), start_(start), size_(size) {}

  ImageFormat format() const override { return ImageFormat::kVmdk; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return size_; }
  uint64_t allocated_bytes() const override {
    struct stat st;
    return ::fstat(fd_.get(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
  }
  Result<void> ReadV(uint64_t offset, std::span<const iovec> iov) override {
    for (const iovec& v : iov) {
      auto* p = static_cast<uint8_t*>(v.iov_base);
      size_t left = v.iov_len;
      while (left > 0) {
        ssize_t n = ::pread(fd_.get(), p, left, static_cast<off_t>(start_ + offset));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return SysErr("reading " + path_);
        if (n == 0) return Err(path_ + ": unexpected end of file (the extent shrank?)");
        p += n, left -= static_cast<size_t>(n), offset += static_cast<uint64_t>(n);
      }
    }
    return {};
  }
  Result<Extent> BlockStatus(uint64_t offset, uint64_t max_length) override {
    return Extent{.offset = offset,
                  .length = std::min(max_length, size_ - offset),
                  .data = true,
                  .allocated = true,
                  .host_offset = start_ + offset};
  }

 private:
  std::string ReadOnlyReason() const override { return "VMDK images are read-only in kite"; }
  const std::string path_;
  const UniqueFd fd_;
  const uint64_t start_, size_;
};

struct Part {
  uint64_t start = 0;  // guest byte offset of the extent
  std::unique_ptr<DiskImage> image;
};

// The descriptor's extents, one after the other.
class MultiExtentImage final : public ReadOnlyImage {
 public:
  MultiExtentImage(std::string path, UniqueFd fd, std::vector<Part> parts, uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), parts_(std::move(parts)), size_(size) {}

  ImageFormat format() const override { return ImageFormat::kVmdk; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return size_; }
  uint64_t allocated_bytes() const override {
    uint64_t total = 0;
    struct stat st;
    if (::fstat(fd_.get(), &st) == 0) total = static_cast<uint64_t>(st.st_blocks) * 512;
    for (const Part& p : parts_) total += p.image->allocated_bytes();
    return total;
  }
  std::vector<std::string> extra_files() const override {
    std::vector<std::string> files;
    for (const Part& p : parts_) files.push_back(p.image->path());
    return files;
  }
  Result<void> ReadV(uint64_t offset, std::span<const iovec> iov) override;
  Result<Extent> BlockStatus(uint64_t offset, uint64_t max_length) override;

 private:
  std::string ReadOnlyReason() const override { return "VMDK images are read-only in kite"; }
  // The part holding guest byte `offset` (< size_).
  const Part& PartAt(uint64_t offset) const {
    auto it = std::upper_bound(parts_.begin(), parts_.end(), offset,
                               [](uint64_t o, const Part& p) { return o < p.start; });
    return *(it - 1);
  }

  const std::string path_;
  const UniqueFd fd_;  // the descriptor file, held open for its lock
  const std::vector<Part> parts_;
  const uint64_t size_;
};

Result<void> MultiExtentImage::ReadV(uint64_t offset, std::span<const iovec> iov) {
  uint64_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  if (offset > size_ || total > size_ - offset) {
    return Err(path_ + ": read beyond the end of the disk");
  }
  for (const iovec& v : iov) {
    auto* p = static_cast<uint8_t*>(v.iov_base);
    size_t left = v.iov_len;
    while (left > 0) {
      const Part& part = PartAt(offset);
      uint64_t in_part = offset - part.start;
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(left, part.image->size() - in_part));
      TRY(part.image->Read(in_part, p, chunk));
      p += chunk, left -= chunk, offset += chunk;
    }
  }
  return {};
}

// The extent's status inside one part; host offsets are dropped (they are in another file).
Result<Extent> MultiExtentImage::BlockStatus(uint64_t offset, uint64_t max_length) {
  if (offset >= size_) return Err(path_ + ": block status beyond the end of the disk");
  const Part& part = PartAt(offset);
  uint64_t in_part = offset - part.start;
  Extent e =
      TRY(part.image->BlockStatus(in_part, std::min(max_length, part.image->size() - in_part)));
  e.offset = offset;
  e.host_offset.reset();
  return e;
}

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

Result<std::unique_ptr<DiskImage>> OpenFlat(const std::string& descriptor, const std::string& file,
                                            const VmdkExtentLine& e) {
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return SysErr(descriptor + ": opening extent file " + file);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return SysErr("fstat " + file);
  if (!S_ISREG(st.st_mode)) return Err(descriptor + ": extent " + file + " is not a regular file");
  uint64_t need = (e.flat_offset + e.sectors) * 512;
  if (static_cast<uint64_t>(st.st_size) < need) {
    return Err(descriptor + ": extent file " + file +
               " is too short: " + std::to_string(st.st_size) + " bytes, the descriptor's offset " +
               std::to_string(e.flat_offset) + " + size " + std::to_string(e.sectors) +
               " sectors need " + std::to_string(need));
  }
  return std::unique_ptr<DiskImage>(
      new FlatExtent(file, std::move(fd), e.flat_offset * 512, e.sectors * 512));
}

Result<std::unique_ptr<DiskImage>> OpenSparsePart(const std::string& descriptor,
                                                  const std::string& file,
                                                  const VmdkExtentLine& e) {
  auto image = TRY_CTX(OpenVmdkSparseExtent(file), descriptor + ": extent");
  if (image->size() != e.sectors * 512) {
    return Err(descriptor + ": extent file " + file + " has a capacity of " +
               std::to_string(image->size() / 512) + " sectors, the descriptor's extent size is " +
               std::to_string(e.sectors));
  }
  return image;
}

}  // namespace

Result<std::unique_ptr<DiskImage>> OpenVmdkDescriptorFile(const std::string& path, UniqueFd fd,
                                                          std::string_view text) {
  VmdkDescriptor d = TRY(ParseVmdkDescriptorFile(text, path));
  std::vector<Part> parts;
  uint64_t start = 0;
  for (const VmdkExtentLine& e : d.extents) {
    if (e.file.find('\0') != std::string::npos) return Err(path + ": extent name contains NUL");
    std::string file = e.file.front() == '/' ? e.file : DirectoryOf(path) + e.file;
    auto image =
        e.kind == VmdkExtentKind::kFlat ? OpenFlat(path, file, e) : OpenSparsePart(path, file, e);
    if (!image) return std::move(image).error();
    parts.push_back({start, std::move(*image)});
    start += e.sectors * 512;
  }
  return std::unique_ptr<DiskImage>(
      new MultiExtentImage(path, std::move(fd), std::move(parts), start));
}

}  // namespace kite::storage
