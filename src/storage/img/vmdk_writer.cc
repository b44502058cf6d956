// VmdkStreamWriter (see vmdk_writer.h): the streamOptimized layout, appended in one pass.
// Field offsets are those of the packed little-endian SparseExtentHeader of VMware's
// "Virtual Disk Format 5.0" (4.1); the descriptor and header values follow what qemu-img writes
// so that VMware sees the same disk from either tool.
#include "storage/img/vmdk_writer.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>

#include "base/unique_fd.h"
#include "storage/img/convert_util.h"
#include "storage/img/vmdk_format.h"
#include "storage/raw_image.h"

namespace kite::img {
namespace {

constexpr uint64_t kSectorBytes = 512;
constexpr uint64_t kGrainBytes = kVmdkWriteGrainSectors * kSectorBytes;
constexpr uint32_t kGtes = kVmdkMaxGtesPerGt;  // 512 entries: one table covers 32 MiB
constexpr uint64_t kDescriptorSectors = 20;    // qemu-img's room for the embedded descriptor
constexpr uint64_t kOverheadSectors = 128;     // grains start at 64 KiB, as in qemu-img's files
constexpr uint64_t kMaxGte = UINT32_MAX;       // grain-table entries are 32-bit sector numbers

template <typename T>
void Store(uint8_t* at, T v) {
  std::memcpy(at, &v, sizeof(T));  // x86_64 is little-endian, as the format
}

uint64_t CapacitySectors(uint64_t size) {
  return (size + kSectorBytes - 1) / kSectorBytes;
}

// The SparseExtentHeader of a stream-optimized extent; gd_offset is GD_AT_END in the header
// and the grain directory's sector in the footer.
std::vector<uint8_t> HeaderSector(uint64_t capacity, uint32_t flags, uint64_t gd_offset) {
  std::vector<uint8_t> s(kSectorBytes, 0);
  Store<uint32_t>(&s[0], kVmdkMagic);
  Store<uint32_t>(&s[4], 3);  // version 3: stream-optimized
  Store<uint32_t>(&s[8], flags);
  Store<uint64_t>(&s[12], capacity);
  Store<uint64_t>(&s[20], kVmdkWriteGrainSectors);
  Store<uint64_t>(&s[28], 1);  // descriptor right after the header
  Store<uint64_t>(&s[36], kDescriptorSectors);
  Store<uint32_t>(&s[44], kGtes);
  Store<uint64_t>(&s[48], 0);  // no redundant grain directory in a stream
  Store<uint64_t>(&s[56], gd_offset);
  Store<uint64_t>(&s[64], kOverheadSectors);
  s[72] = 0;                                              // uncleanShutdown
  s[73] = '\n', s[74] = ' ', s[75] = '\r', s[76] = '\n';  // detects text-mode transfers
  Store<uint16_t>(&s[77], kVmdkCompressDeflate);
  return s;
}

class StreamWriter final : public VmdkStreamWriter {
 public:
  StreamWriter(std::string path, UniqueFd fd, uint64_t size, uint32_t flags)
      : path_(std::move(path)),
        fd_(std::move(fd)),
        size_(size),
        flags_(flags),
        gt_(kGtes, 0),
        gd_((CapacitySectors(size) + kVmdkWriteGrainSectors * kGtes - 1) /
                (kVmdkWriteGrainSectors * kGtes),
            0),
        grain_buf_(kGrainBytes, 0) {}

  storage::ImageFormat format() const override { return storage::ImageFormat::kVmdk; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return size_; }
  bool read_only() const override { return false; }
  uint64_t allocated_bytes() const override { return pos_; }

  Result<void> ReadV(uint64_t, std::span<const iovec>) override { return Refused("read"); }
  Result<void> Discard(uint64_t, uint64_t) override { return Refused("discard"); }
  Result<storage::Extent> BlockStatus(uint64_t, uint64_t) override {
    return Refused("block status");
  }
  Result<void> Flush() override { return {}; }  // the stream is complete only after Finish

  Result<void> WriteV(uint64_t offset, std::span<const iovec> iov) override {
    std::lock_guard lock(mu_);
    uint64_t len = 0;
    for (const iovec& v : iov) len += v.iov_len;
    TRY(CheckOrder(offset, len));
    for (const iovec& v : iov) {
      TRY(Append(offset, static_cast<const uint8_t*>(v.iov_base), v.iov_len));
      offset += v.iov_len;
    }
    next_ = offset;
    return {};
  }

  // Zeros are what a stream leaves out: only the order is checked.
  Result<void> WriteZeroes(uint64_t offset, uint64_t length, bool) override {
    std::lock_guard lock(mu_);
    TRY(CheckOrder(offset, length));
    next_ = offset + length;
    return {};
  }

  Result<void> Finish(bool sync) override {
    std::lock_guard lock(mu_);
    if (finished_) return Err(path_ + ": VMDK stream already finished");
    finished_ = true;
    TRY(EmitGrain());
    TRY(EmitTable());
    TRY(Marker(std::max<uint64_t>(1, (gd_.size() * 4 + kSectorBytes - 1) / kSectorBytes),
               kVmdkMarkerGd));
    uint64_t gd_offset = pos_ / kSectorBytes;
    TRY(AppendSectors(gd_.data(), gd_.size() * 4));
    TRY(Marker(1, kVmdkMarkerFooter));
    std::vector<uint8_t> footer = HeaderSector(CapacitySectors(size_), flags_, gd_offset);
    TRY(AppendSectors(footer.data(), footer.size()));
    TRY(Marker(0, kVmdkMarkerEos));
    if (sync && ::fdatasync(fd_.get()) != 0) return SysErr(path_ + ": fdatasync");
    return {};
  }

  Result<void> WriteStart(const std::vector<uint8_t>& head) {
    TRY(storage::PwriteFull(fd_.get(), head.data(), head.size(), 0));
    pos_ = head.size();
    return {};
  }

 private:
  Error Refused(const std::string& what) const {
    return Err(path_ + ": " + what + " refused: a stream-optimized VMDK is written only");
  }

  Result<void> CheckOrder(uint64_t offset, uint64_t len) const {
    if (finished_) return Err(path_ + ": write after the VMDK stream was finished");
    if (offset > size_ || len > size_ - offset) {
      return Err(path_ + ": write at " + std::to_string(offset) + " beyond the disk's " +
                 std::to_string(size_) + " bytes");
    }
    if (offset < next_) {
      return Err(path_ + ": write at " + std::to_string(offset) + " before " +
                 std::to_string(next_) + ": a stream-optimized VMDK is written in disk order");
    }
    return {};
  }

  Result<void> Append(uint64_t offset, const uint8_t* data, uint64_t len) {
    while (len > 0) {
      uint64_t grain = offset / kGrainBytes, in = offset % kGrainBytes;
      if (grain != grain_) {
        TRY(EmitGrain());
        grain_ = grain;
      }
      uint64_t n = std::min(len, kGrainBytes - in);
      std::memcpy(grain_buf_.data() + in, data, n);
      grain_dirty_ = true;
      offset += n, data += n, len -= n;
    }
    return {};
  }

  // Appends the buffered grain unless it reads as zeros; the buffer is zeros afterwards (the
  // disk's last grain is compressed whole, zeros past the end of the disk).
  Result<void> EmitGrain() {
    if (!grain_dirty_) return {};
    grain_dirty_ = false;
    if (IsZero(grain_buf_.data(), kGrainBytes)) return {};
    uint64_t table = grain_ / kGtes;
    if (table != table_) {
      TRY(EmitTable());
      table_ = table;
    }
    uLongf packed_len = compressBound(kGrainBytes);
    packed_.resize(12 + packed_len);
    if (compress2(packed_.data() + 12, &packed_len, grain_buf_.data(), kGrainBytes,
                  Z_DEFAULT_COMPRESSION) != Z_OK) {
      return Err(path_ + ": deflate of grain " + std::to_string(grain_) + " failed");
    }
    Store<uint64_t>(&packed_[0], grain_ * kVmdkWriteGrainSectors);  // grain marker: LBA, size
    Store<uint32_t>(&packed_[8], static_cast<uint32_t>(packed_len));
    gt_[grain_ % kGtes] = TRY(HereAsEntry());
    table_used_ = true;
    TRY(AppendSectors(packed_.data(), 12 + packed_len));
    std::fill(grain_buf_.begin(), grain_buf_.end(), 0);
    return {};
  }

  // Appends the current grain table behind its marker, if it holds a grain.
  Result<void> EmitTable() {
    if (!table_used_) return {};
    table_used_ = false;
    TRY(Marker(kGtes * 4 / kSectorBytes, kVmdkMarkerGt));
    gd_[table_] = TRY(HereAsEntry());
    TRY(AppendSectors(gt_.data(), gt_.size() * 4));
    std::fill(gt_.begin(), gt_.end(), 0);
    return {};
  }

  Result<uint32_t> HereAsEntry() const {
    uint64_t sector = pos_ / kSectorBytes;
    if (sector > kMaxGte) {
      return Err(path_ + ": VMDK stream beyond 2 TiB: grain and table offsets are 32-bit sectors");
    }
    return static_cast<uint32_t>(sector);
  }

  // A metadata marker: a sector of its own {sectors of what follows, size 0, type}.
  Result<void> Marker(uint64_t sectors, uint32_t type) {
    uint8_t m[kSectorBytes] = {};
    Store<uint64_t>(&m[0], sectors);
    Store<uint32_t>(&m[12], type);
    return AppendSectors(m, sizeof(m));
  }

  // Appends `len` bytes padded with zeros to a whole sector.
  Result<void> AppendSectors(const void* data, uint64_t len) {
    TRY_CTX(storage::PwriteFull(fd_.get(), data, len, pos_), path_);
    uint64_t padded = (len + kSectorBytes - 1) / kSectorBytes * kSectorBytes;
    if (padded > len) {
      static const uint8_t kZeros[kSectorBytes] = {};
      TRY_CTX(storage::PwriteFull(fd_.get(), kZeros, padded - len, pos_ + len), path_);
    }
    pos_ += padded;
    return {};
  }

  const std::string path_;
  const UniqueFd fd_;
  const uint64_t size_;
  const uint32_t flags_;
  std::mutex mu_;  // the pipeline's in-order Finish calls come from its worker threads
  // Everything below is guarded by mu_.
  uint64_t next_ = 0;  // disk offset where the next write may start
  uint64_t pos_ = 0;   // file offset of the next append, a whole sector
  bool finished_ = false;
  std::vector<uint32_t> gt_;  // the table of table_, filled as its grains are appended
  uint64_t table_ = 0;
  bool table_used_ = false;
  std::vector<uint32_t> gd_;
  std::vector<uint8_t> grain_buf_;  // grain grain_, zeros where not written
  uint64_t grain_ = 0;
  bool grain_dirty_ = false;
  std::vector<uint8_t> packed_;  // grain marker and deflate stream
};

}  // namespace

std::string VmdkStreamDescriptor(const VmdkCreateOptions& options, uint64_t capacity_sectors,
                                 const std::string& basename, uint32_t cid) {
  char cid_hex[9];
  std::snprintf(cid_hex, sizeof(cid_hex), "%08x", cid);
  std::string hw = !options.hwversion.empty() ? options.hwversion : options.compat6 ? "6" : "4";
  uint64_t heads = options.adapter_type == "ide" ? 16 : 255;
  std::string tools = options.toolsversion.empty() ? "2147483647" : options.toolsversion;
  return "# Disk DescriptorFile\nversion=1\nCID=" + std::string(cid_hex) +
         "\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n# Extent description\nRW " +
         std::to_string(capacity_sectors) + " SPARSE \"" + basename +
         "\"\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"" + hw +
         "\"\nddb.geometry.cylinders = \"" + std::to_string(capacity_sectors / (heads * 63)) +
         "\"\nddb.geometry.heads = \"" + std::to_string(heads) +
         "\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"" + options.adapter_type +
         "\"\nddb.toolsVersion = \"" + tools + "\"\n";
}

Result<std::unique_ptr<VmdkStreamWriter>> VmdkStreamWriter::Create(
    const std::string& path, uint64_t size, const VmdkCreateOptions& options) {
  uint64_t capacity = CapacitySectors(size);
  if (capacity == 0) {  // qemu-img creates one, but neither it nor kite-img can open it
    return Err(path + ": a VMDK disk holds at least one sector (0 bytes asked)");
  }
  if (capacity > kVmdkMaxCapacitySectors) {
    return Err(path + ": VMDK disk size " + std::to_string(size) + " too large (at most " +
               std::to_string(kVmdkMaxCapacitySectors * kSectorBytes) + " bytes)");
  }
  std::string basename = path.substr(path.find_last_of('/') + 1);
  std::string descriptor =
      VmdkStreamDescriptor(options, capacity, basename, std::random_device{}());
  if (descriptor.size() > kDescriptorSectors * kSectorBytes) {
    return Err(path + ": VMDK descriptor too long for its " + std::to_string(kDescriptorSectors) +
               " sectors (file name too long?)");
  }
  uint32_t flags = kVmdkFlagNewlineTest | kVmdkFlagCompressed | kVmdkFlagMarkers;
  if (options.zeroed_grain) flags |= kVmdkFlagZeroedGte;
  std::vector<uint8_t> head = HeaderSector(capacity, flags, kVmdkGdAtEnd);
  head.resize(kOverheadSectors * kSectorBytes, 0);
  std::memcpy(head.data() + kSectorBytes, descriptor.data(), descriptor.size());
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return SysErr(path + ": create");
  auto writer = std::make_unique<StreamWriter>(path, std::move(fd), size, flags);
  TRY(writer->WriteStart(head));
  return std::unique_ptr<VmdkStreamWriter>(std::move(writer));
}

}  // namespace kite::img
