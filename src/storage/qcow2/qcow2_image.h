// Qcow2Image: a DiskImage over a qcow2 file (versions 2 and 3), with an optional backing image.
//
// Threads: any number of callers. `meta_mu_` serialises metadata (lookups, allocation, L2 and
// refcount updates, and the whole of an allocating write). Reads and in-place writes of
// clusters the image already owns (COPIED) do their data I/O after dropping `meta_mu_`,
// holding `io_mu_` shared; anything that frees a data cluster takes `io_mu_` exclusively, so a
// cluster is never reused while I/O to it is in flight. Lock order: meta_mu_, then io_mu_.
// File I/O goes through Meta's FileIo, so the file may be open with O_DIRECT (cache=none).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>

#include "storage/disk_image.h"
#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2_meta.h"
#include "storage/raw_image.h"

namespace kite::storage::qcow2 {

// An open external data file (incompatible bit 2): guest clusters live there at their guest
// offsets, so data I/O goes to it and only metadata to the qcow2 file.
struct ExternalData {
  std::string path;  // as resolved against the image's directory
  OpenedFile file;
};

class Qcow2Image final : public DiskImage {
 public:
  // Takes an opened file (OpenImageFile) and its parsed metadata; `backing` may be null;
  // `data` is required exactly when the header has an external data file.
  // Read-write opens refuse corrupt images (I6), repair dirty ones (I8) and clear unknown
  // autoclear bits (I9).
  static Result<std::unique_ptr<Qcow2Image>> Open(std::string path, OpenedFile file,
                                                  const OpenOptions& options,
                                                  std::unique_ptr<DiskImage> backing,
                                                  std::optional<ExternalData> data = {});
  // A clean close: with lazy refcounts, writes the refcounts and clears the dirty bit.
  ~Qcow2Image() override;

  ImageFormat format() const override { return ImageFormat::kQcow2; }
  const std::string& path() const override { return path_; }
  const std::string& data_path() const override { return data_ ? data_->path : path_; }
  uint64_t size() const override { return size_; }
  bool read_only() const override { return options_.read_only; }
  uint64_t allocated_bytes() const override;
  DiskImage* backing() const override { return backing_.get(); }
  bool failed() const override { return failed_.load() || meta_->sync_failed(); }

  Result<void> ReadV(uint64_t offset, std::span<const iovec> iov) override;
  std::optional<Result<void>> TryReadNow(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> WriteV(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> Flush() override;
  Result<void> Discard(uint64_t offset, uint64_t length) override;
  Result<void> WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap) override;
  Result<Extent> BlockStatus(uint64_t offset, uint64_t max_length) override;

  // Writes one whole guest cluster compressed (qemu-img convert -c). `offset` is
  // cluster-aligned; `cluster` is one cluster long (shorter only for the disk's last cluster,
  // which is padded with zeros). As QEMU, only a cluster this image has not allocated (or a
  // zero cluster without host space) may be written so. Data that does not compress is
  // written as a normal cluster. The stream goes into sector-granular host space shared with
  // the previous compressed cluster where possible (Meta::AllocateBytes).
  Result<void> WriteCompressedCluster(uint64_t offset, std::span<const uint8_t> cluster);
  // The two halves of the call above, so that several threads compress while one stores:
  // the stream for `cluster` (padded to a whole cluster) in the image's compression type, empty
  // when it does not shrink (needs no lock); then the store of that stream (empty: the cluster
  // is written as is).
  Result<std::vector<uint8_t>> CompressForCluster(std::span<const uint8_t> cluster) const;
  Result<void> WriteCompressedCluster(uint64_t offset, std::span<const uint8_t> cluster,
                                      std::span<const uint8_t> stream);

  // Changes the virtual size (grow; shrink only when allowed; not a version 2 image with
  // snapshots).
  Result<void> Resize(uint64_t new_size, const ResizeOptions& options);
  Meta& meta() { return *meta_; }

 private:
  Qcow2Image(std::string path, OpenedFile file, const OpenOptions& options,
             std::unique_ptr<Meta> meta, std::unique_ptr<DiskImage> backing,
             std::optional<ExternalData> data);
  Result<void> PrepareWritable();
  // Where guest clusters are read and written: the external data file, or the image itself.
  const FileIo& data_io() const { return data_io_ ? *data_io_ : meta_->io(); }
  bool external_data() const { return data_.has_value(); }
  // Host space for `n` guest clusters from `guest` (cluster-aligned): new refcounted clusters
  // of the image, or the guest's own offset in an external data file. Under meta_mu_.
  Result<uint64_t> AllocateData(uint64_t guest, uint64_t n);
  // data_file_raw: zeroed or discarded clusters read as zeros in the data file too, so that
  // it stays a consistent raw image. Under meta_mu_ and io_mu_.
  Result<void> ZeroDataFile(uint64_t offset, uint64_t length);
  Result<void> ResizeDataFile(uint64_t new_size);
  Result<void> SyncFile(int fd, const std::string& path);
  Result<void> CheckRange(uint64_t offset, uint64_t length, bool write) const;
  // Fills `iov` with what the guest cluster range reads as, per mapping `m`.
  Result<void> ReadMapped(const Mapping& m, uint64_t offset, std::span<const iovec> iov);
  Result<void> ReadBacking(uint64_t offset, std::span<const iovec> iov);
  // A kMixed cluster (extended L2 entries) read subcluster run by run (qcow2_subcluster_io.cc).
  Result<void> ReadSubclusters(const Mapping& m, uint64_t offset, std::span<const iovec> iov);
  // A write into a kMixed cluster the image owns: the write and the old contents of its
  // unallocated and zero subclusters go to the host cluster in place, then all 32 subclusters
  // are marked allocated. Under meta_mu_.
  Result<void> FillSubclusters(uint64_t offset, std::span<const iovec> iov, const Mapping& m);
  Result<void> ReadCompressed(const Mapping& m, std::vector<uint8_t>& cluster);
  // Extends `chunk` (bytes from `pos`, ending on a cluster boundary or at `limit`) over the
  // following clusters whose mappings continue `m` (same kind; contiguous host clusters for
  // kNormal, also COPIED when `for_write`), so one syscall covers them. Under meta_mu_.
  Result<uint64_t> ExtendRun(const Mapping& m, uint64_t pos, uint64_t chunk, uint64_t limit,
                             bool for_write);
  Result<void> CheckCompressedTarget(uint64_t offset, uint64_t length);
  Result<void> StoreCompressed(uint64_t offset, std::span<const uint8_t> stream);
  Result<void> WriteCluster(uint64_t offset, std::span<const iovec> iov);
  Result<void> AllocatingWrite(uint64_t offset, std::span<const iovec> iov, const Mapping& m);
  // Writes whole clusters from `offset` (cluster-aligned) that hold no host cluster into one
  // newly allocated contiguous run; returns the bytes written (0: the first cluster does not
  // qualify). Under meta_mu_.
  Result<uint64_t> AllocateRun(uint64_t offset, std::span<const iovec> iov);
  Result<void> ZeroCluster(uint64_t cluster_offset, bool discard);
  // `n` whole clusters from `start` (the last may end at the disk's end) made zero or
  // unallocated, in one L2 write per table and one refcount write per run of freed clusters.
  // Not for version 2 images with a backing file (ZeroCluster writes zeros there).
  Result<void> ZeroClusters(uint64_t start, uint64_t n, bool discard);
  Result<void> FreeRuns(const std::vector<Mapping>& freed);
  Result<void> ZeroRange(uint64_t offset, uint64_t length, bool discard);
  Result<void> FreeData(const Mapping& m);

  std::string path_;
  UniqueFd fd_;
  OpenOptions options_;
  std::unique_ptr<Meta> meta_;
  std::unique_ptr<DiskImage> backing_;
  std::optional<ExternalData> data_;
  std::unique_ptr<FileIo> data_io_;  // over data_->file, when there is one
  uint64_t size_;
  std::mutex meta_mu_;
  std::shared_mutex io_mu_;
  std::atomic<bool> failed_{false};
};

// Grows or shrinks an external data file to `new_size` (ftruncate; a block device must already
// be that large). Qcow2Image::Resize and AmendQcow2 share it.
Result<void> ResizeExternalDataFile(const OpenedFile& file, const std::string& path,
                                    uint64_t new_size);

// Resize on the metadata alone (Qcow2Image::Resize under its lock, AmendQcow2): `new_size` a
// multiple of 512; the header's size field is rewritten last.
Result<void> ResizeMeta(Meta& meta, uint64_t new_size, const ResizeOptions& options);

}  // namespace kite::storage::qcow2
