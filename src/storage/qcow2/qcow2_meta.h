// Meta: the metadata of one open qcow2 file: header, L1 table, L2 tables and refcount blocks
// (through bounded caches), the refcount table and the cluster allocator. Every metadata write
// goes straight to the file (write-through) in crash-safe order: a refcount is raised before
// anything points at the cluster, data is written before the L2 entry that maps it, and
// refcounts drop only after nothing points at the cluster any more. A crash at any point
// leaves at most leaked clusters (check exit code 3).
// Lazy refcounts (EnableLazyRefcounts, images with compatible bit 0): before the first
// refcount change the dirty bit is set and flushed; from then on refcount blocks are written
// back only when evicted from their cache or by MarkClean (clean close), so a crash leaves
// stale refcounts that the next read-write open rebuilds (the dirty bit says so). The header,
// L1/L2 tables and data stay write-through in the order above.
// All file I/O goes through FileIo (qcow2_io.h): the file may be open with O_DIRECT.
//
// Not thread-safe: Qcow2Image calls it under its metadata mutex. Split over
// qcow2_meta.cc (open, L1/L2), qcow2_refcount.cc (refcounts) and qcow2_alloc.cc (allocation,
// overlap checks).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/result.h"
#include "storage/qcow2/qcow2_header.h"
#include "storage/qcow2/qcow2_io.h"
#include "storage/qcow2/qcow2_l2_cache.h"

namespace kite::storage::qcow2 {

// What one L2 entry says about a guest cluster. kMixed: extended L2 entries whose subclusters
// differ (qcow2_subcluster.h); `bitmap` says which are allocated or zero.
struct Mapping {
  enum Kind { kUnallocated, kZero, kNormal, kCompressed, kMixed };
  Kind kind = kUnallocated;
  uint64_t host = 0;      // kNormal: cluster offset; kCompressed: byte offset of the stream
  uint64_t comp_len = 0;  // kCompressed: bytes to read
  bool copied = false;    // refcount is exactly 1: may be written in place
  uint64_t entry = 0;     // the raw L2 entry (extended: its descriptor)
  uint64_t bitmap = 0;    // extended L2 entries: the subcluster bitmap
};

// A refcount block entry of width 2^order bits (sub-byte widths: least significant bits
// first, as QEMU). Put returns the byte range [first, first + len) that changed.
uint64_t GetRefcountEntry(const uint8_t* block, uint64_t index, uint32_t order);
std::pair<uint64_t, uint64_t> PutRefcountEntry(uint8_t* block, uint64_t index, uint32_t order,
                                               uint64_t value);

class Meta {
 public:
  // Reads and validates the header, L1 table and refcount table of the open file `fd`.
  static Result<std::unique_ptr<Meta>> Open(int fd, const std::string& path, bool writable);

  const Header& header() const { return header_; }
  Header& mutable_header() { return header_; }
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  const FileIo& io() const { return io_; }
  bool writable() const { return writable_; }
  uint64_t cluster_size() const { return header_.cluster_size(); }
  uint64_t ClusterOf(uint64_t offset) const { return offset >> header_.cluster_bits; }

  // Re-reads header and tables from the file (after a refcount rebuild).
  Result<void> Reload();
  uint64_t file_size() const;

  // --- L1/L2 (qcow2_meta.cc) ---
  Result<Mapping> Lookup(uint64_t guest_offset);
  // Lookup without reading an L2 table from the file: nullopt when it is not cached.
  Result<std::optional<Mapping>> LookupCached(uint64_t guest_offset);
  // Points the guest cluster at `entry`, first giving it an L2 table of its own (allocating
  // one, or copying a shared one) when needed. Frees nothing. `entry` is a classic entry:
  // images with extended L2 entries store ExtendedBitmapFor(entry), or `bitmap` when given.
  Result<void> SetL2Entry(uint64_t guest_offset, uint64_t entry,
                          std::optional<uint64_t> bitmap = std::nullopt);
  // Points `n` consecutive guest clusters from `guest_offset` (cluster-aligned) at consecutive
  // host clusters from `host` with `flags`: one metadata write per L2 table touched.
  Result<void> SetL2Run(uint64_t guest_offset, uint64_t n, uint64_t host, uint64_t flags);
  // Points `n` consecutive guest clusters from `guest_offset` at the same `entry` (zero or
  // unallocated): one metadata write per L2 table touched.
  Result<void> SetL2Entries(uint64_t guest_offset, uint64_t n, uint64_t entry);
  std::vector<uint64_t>& l1() { return l1_; }
  Result<void> WriteL1Entry(uint64_t index, uint64_t value);
  // Decodes an L2 entry (validates it: I25/I26); errors mark the image corrupt. `bitmap`: the
  // subcluster bitmap of an extended L2 entry (ignored otherwise).
  Result<Mapping> Decode(uint64_t entry, uint64_t guest_offset, uint64_t bitmap = 0);
  Result<std::vector<uint64_t>> ReadTable(uint64_t offset, uint64_t entries);
  ClusterCache& l2_cache() { return l2_cache_; }

  // --- header (qcow2_meta.cc) ---
  Result<void> WriteHeaderBytes(uint64_t offset, const void* data, size_t len);
  Result<void> RewriteHeader();  // whole cluster 0 from header_
  Result<void> SetIncompatBit(uint64_t bit, bool on);
  // Sets the corrupt bit (if writable) and returns an error naming `why` (I25, I27, I29).
  Error MarkCorrupt(const std::string& why);
  bool corrupt() const { return header_.incompatible_features & kIncompatCorrupt; }
  Result<void> Sync();

  // --- lazy refcounts (qcow2_refcount.cc) ---
  // Turns lazy refcounts on (version 3 images only; a no-op otherwise).
  void EnableLazyRefcounts();
  bool lazy_refcounts() const { return lazy_; }
  // Clean close: writes the cached refcount blocks, flushes, clears the dirty bit, flushes.
  // No-op unless lazy refcounts made the image dirty.
  Result<void> MarkClean();
  // A Sync failed: the kernel may have dropped dirty pages, so the image must fail every
  // later write and flush (F4), as a failed Flush does.
  bool sync_failed() const { return sync_failed_.load(); }

  // --- refcounts (qcow2_refcount.cc) ---
  Result<uint64_t> GetRefcount(uint64_t cluster);
  Result<void> SetRefcount(uint64_t cluster, uint64_t value);
  // Sets `n` consecutive clusters' refcounts to `value`: one write per refcount block.
  Result<void> SetRefcounts(uint64_t first, uint64_t n, uint64_t value);
  // Adds `delta` to the refcount of each cluster in [offset, offset + bytes).
  Result<void> UpdateRefcounts(uint64_t offset, uint64_t bytes, int delta);
  const std::vector<uint64_t>& reftable() const { return reftable_; }
  uint64_t refcount_max() const;

  // --- allocation (qcow2_alloc.cc) ---
  // Allocates `n` contiguous clusters with refcount 1; returns the host offset.
  Result<uint64_t> Allocate(uint64_t n);
  // Allocates `bytes` (at most one cluster) of byte-granular space for a compressed cluster,
  // continuing in the host cluster the previous call ended in when the data fits there or the
  // next cluster is free (QEMU's qcow2_alloc_bytes). Every host cluster the range touches
  // gets one more reference, so the refcount of a shared cluster counts its users.
  Result<uint64_t> AllocateBytes(uint64_t bytes);
  // Drops one reference to each cluster in range (data clusters, tables).
  Result<void> Free(uint64_t offset, uint64_t bytes);
  // Drops the reference a (normal or compressed) L2 entry holds; none with an external data file.
  Result<void> FreeMapping(const Mapping& m);
  // I27: refuses (and marks corrupt) a data write into a metadata cluster (never one with an
  // external data file: data goes to the other file).
  Result<void> CheckDataWrite(uint64_t host_offset);
  void AddMetadata(uint64_t offset, uint64_t bytes);
  void RemoveMetadata(uint64_t offset, uint64_t bytes);
  uint64_t alloc_end() const { return alloc_end_; }  // first cluster index past all use

 private:
  Meta(int fd, std::string path, bool writable, Header header);
  Result<void> LoadTables();
  Result<Mapping> DecodeExternal(Mapping m, uint64_t guest_offset);
  // Writes entry `index` of an in-memory table stored at `table_offset` (L1, refcount table).
  Result<void> WriteTableEntry(uint64_t table_offset, const std::vector<uint64_t>& table,
                               uint64_t index, const char* what);
  // Lazy refcounts: sets and flushes the dirty bit before the first deferred refcount change.
  Result<void> MarkDirty();
  Result<uint64_t> L2TableFor(uint64_t l1_index, bool for_write);
  // Decodes entry `index` of the L2 table `table` (8 or 16 bytes an entry).
  Result<Mapping> DecodeAt(const uint8_t* table, uint64_t index, uint64_t guest_offset);
  // Stores classic entry `entry` at `out` in this image's entry format (8 or 16 bytes).
  void PutL2Entry(uint8_t* out, uint64_t entry) const;
  // Writes entry(i) for the i-th of `n` guest clusters from `guest_offset`, one write per table.
  Result<void> WriteL2Entries(uint64_t guest_offset, uint64_t n,
                              const std::function<uint64_t(uint64_t)>& entry);
  Result<void> EnsureRefblock(uint64_t block, int depth);
  Result<void> GrowRefcountTable(uint64_t min_blocks);
  Result<uint64_t> FindFree(uint64_t n, uint64_t start);
  void NoteUse(uint64_t cluster_end);

  int fd_;
  FileIo io_;
  std::string path_;
  std::atomic<bool> sync_failed_{false};
  bool writable_;
  Header header_;
  std::vector<uint64_t> l1_;
  std::vector<uint64_t> reftable_;
  ClusterCache l2_cache_;
  ClusterCache refblock_cache_;
  std::unordered_set<uint64_t> metadata_;  // cluster indices holding metadata
  uint64_t free_hint_ = 0;                 // no free cluster below this index
  uint64_t alloc_end_ = 0;
  uint64_t free_byte_offset_ = 0;  // where AllocateBytes continues; 0: in a new cluster
  bool lazy_ = false;              // lazy refcounts: refblock cache in write-back mode
};

}  // namespace kite::storage::qcow2
