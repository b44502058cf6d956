// DiskImage: one open disk image (raw file, host block device, qcow2, ...), as the guest's
// disk sees it: a flat array of `size()` bytes.
//
// The calls here are synchronous and thread-safe: several may run at once from the async
// layer's workers (async_disk.h), which is what the VMM's devices use. Formats serialise their
// own metadata updates internally. Every value read from an image file is untrusted
// (BAD_INPUTS.md section I): a bad one fails the open with an Error naming file and field, or,
// once open, fails the request (the guest sees IOERR) and, for qcow2, sets the corrupt bit.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kite::storage {

// kQed and kVmdk are read-only (storage/qed/qed_image.h, storage/vmdk/vmdk_image.h).
enum class ImageFormat { kRaw, kQcow2, kVmdk, kQed };

// "raw", "qcow2", "vmdk", "qed" <-> ImageFormat. Unknown names are an error.
Result<ImageFormat> ParseImageFormat(std::string_view name);
const char* ImageFormatName(ImageFormat format);

enum class CacheMode {
  kWriteback,     // page cache; flush = fdatasync
  kWritethrough,  // every write followed by fdatasync before completion
  kNone,          // O_DIRECT; flush = fdatasync
  kUnsafe,        // flush ignored
};

// "writeback", "writethrough", "none", "unsafe" (also "directsync" = none) <-> CacheMode.
Result<CacheMode> ParseCacheMode(std::string_view name);

// How much of a new image (or of a grown one) is allocated up front, as qemu-img's
// preallocation=off|metadata|falloc|full.
enum class Preallocation { kOff, kMetadata, kFalloc, kFull };
Result<Preallocation> ParsePreallocation(std::string_view name);
const char* PreallocationName(Preallocation prealloc);

struct OpenOptions {
  bool read_only = false;
  CacheMode cache = CacheMode::kWriteback;
  // Take the advisory lock shared (read-only users alongside a writer), like qemu-img -U.
  // With force_share no lock conflicts are reported at all.
  bool force_share = false;
  // Backing files: how deep a chain may be, and whether to open backings at all.
  int max_backing_depth = 16;
  bool open_backing = true;
  // A qcow2 backing file named without a backing-format extension is refused (I17) unless
  // this is set; then it is opened as raw (never probed).
  bool allow_unformatted_backing_as_raw = false;
  // When non-empty, every backing file must resolve (realpath) inside this directory (I14).
  std::string backing_root;
  // A qcow2 image with an external data file (BAD_INPUTS I7): the data file is `data_file`
  // when given (qemu's data-file=, libvirt's <dataStore>; top image only). Else the name the
  // image's header stores is followed only with follow_data_file (kite-img: the image's owner
  // runs it, as qemu-img); otherwise the open is refused, so that an image file cannot point
  // kite at a host file for the guest to read and write.
  std::string data_file;
  bool follow_data_file = false;
  // Take advisory locks at all (tests of the lock itself turn it off for the peer).
  bool lock = true;
  // The backing layer at this path (compared after realpath) is opened read-write, with an
  // exclusive lock, instead of read-only: block-commit writes into its base that way. Empty:
  // every backing layer is read-only.
  std::string writable_backing;
};

// What a range of the disk holds, for map/convert/compare and block-status queries.
struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool data = false;                    // reads return stored data (else zeros)
  bool zero = false;                    // reads return zeros
  bool allocated = false;               // allocated in this image (not its backing)
  int depth = 0;                        // 0 = this image, 1 = its backing, ...
  std::optional<uint64_t> host_offset;  // where the data lives in the file, when known
};

class DiskImage {
 public:
  virtual ~DiskImage() = default;

  virtual ImageFormat format() const = 0;
  virtual const std::string& path() const = 0;
  // The file BlockStatus's host offsets refer to: path(), or a qcow2 external data file.
  virtual const std::string& data_path() const { return path(); }
  virtual uint64_t size() const = 0;  // virtual disk size in bytes
  virtual bool read_only() const = 0;
  // Bytes the image file occupies on the host (allocated blocks, as `du`).
  virtual uint64_t allocated_bytes() const = 0;
  virtual DiskImage* backing() const { return nullptr; }
  // The files besides path() whose bytes this layer reads (a VMDK descriptor file's extents),
  // for the jail to bind.
  virtual std::vector<std::string> extra_files() const { return {}; }

  // Scatter-gather I/O at a byte offset. Out-of-range requests fail; so does any write to
  // a read-only image (and nothing is written).
  virtual Result<void> ReadV(uint64_t offset, std::span<const iovec> iov) = 0;
  virtual Result<void> WriteV(uint64_t offset, std::span<const iovec> iov) = 0;
  // Answers a read at once when that needs neither data I/O nor waiting for a lock (qcow2: the
  // range reads as zeros according to metadata already in memory); nullopt: use ReadV.
  virtual std::optional<Result<void>> TryReadNow(uint64_t /*offset*/,
                                                 std::span<const iovec> /*iov*/) {
    return std::nullopt;
  }
  virtual Result<void> Flush() = 0;
  // Deallocates the range where the format allows; reads then return zeros.
  virtual Result<void> Discard(uint64_t offset, uint64_t length) = 0;
  // Makes the range read as zeros, without writing zero bytes where the format allows.
  virtual Result<void> WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap) = 0;
  // The extent starting at `offset`, at most `max_length` long, with uniform status.
  virtual Result<Extent> BlockStatus(uint64_t offset, uint64_t max_length) = 0;
  // Set once a write-back failure (fdatasync error, F4) made the image unusable for writes.
  virtual bool failed() const { return false; }
  // The fd whose bytes at the guest's offsets are the disk's, when a plain positioned read or
  // write on it is all a read or write needs (raw images, except cache=writethrough): lets the
  // async layer use io_uring. nullopt for formats with metadata.
  virtual std::optional<int> raw_fd() const { return std::nullopt; }

  // Convenience wrappers for one buffer.
  Result<void> Read(uint64_t offset, void* buf, size_t len) {
    iovec v{buf, len};
    return ReadV(offset, {&v, 1});
  }
  Result<void> Write(uint64_t offset, const void* buf, size_t len) {
    iovec v{const_cast<void*>(buf), len};
    return WriteV(offset, {&v, 1});
  }
};

// Changes the virtual size of an open, writable raw or qcow2 image (block_resize). Growing
// only: a running guest's data would be cut off otherwise. A raw block device cannot grow.
// Not thread-safe against I/O on the image: the caller stops I/O first.
Result<void> GrowOpenImage(DiskImage& image, uint64_t new_size);

// The layer of `top`'s chain whose file is `path` (compared after realpath), with its depth
// (0: top); nullopt when the chain has no such layer.
std::optional<std::pair<DiskImage*, int>> FindLayer(DiskImage& top, const std::string& path);

// Guesses a format from the first bytes (QFI\xfb: qcow2, KDMV: vmdk, QED\0: qed, else raw), as
// qemu-img does. Only for images no guest can write: kite-img without -f, and read-only disks.
Result<ImageFormat> ProbeImageFormat(const std::string& path);

// Opens an image with an explicit format: kite never guesses the format of an image a guest
// can write (BAD_INPUTS.md I1). Backing files named in a qcow2 header must carry a backing
// format; see docs/STORAGE.md for the path rules. QED and VMDK open read-only only
// (options.read_only; a backing file always is): a writable open is refused naming the file.
// A QED backing file is raw when the header says so, else probed (the whole chain is read-only).
Result<std::unique_ptr<DiskImage>> OpenImage(const std::string& path, ImageFormat format,
                                             const OpenOptions& options);

}  // namespace kite::storage
