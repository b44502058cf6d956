// ClusterCache: a bounded LRU cache of metadata clusters (L2 tables, refcount blocks) read
// from an image file. Write-through by default: Write() updates the cached copy and the file
// at once, so the process holds no dirty metadata (a SIGKILL loses nothing that was written,
// F9) and the order of metadata writes on disk is the order of the calls.
// Write-back mode (lazy refcounts only, while the image's dirty bit is set): Write() changes
// the cached copy and marks it dirty; a dirty cluster reaches the file when it is evicted or
// on WriteDirty(). Put() always writes through.
// Not thread-safe: the owner (Meta) calls it under its metadata lock.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "storage/qcow2/qcow2_io.h"

namespace kite::storage::qcow2 {

class ClusterCache {
 public:
  ClusterCache(const FileIo& io, size_t cluster_size, size_t capacity);

  // The cluster at `offset`, loaded on a miss. The pointer stays valid until the next call
  // that may evict (Get, Write, Put).
  Result<uint8_t*> Get(uint64_t offset);
  // Writes `len` bytes at `byte_off` inside the cluster at `offset`, in the file and the cache
  // (write-back mode: in the cache only, loading the cluster first when needed).
  Result<void> Write(uint64_t offset, size_t byte_off, const void* data, size_t len);
  // Writes a whole new cluster to the file and caches it.
  Result<void> Put(uint64_t offset, std::vector<uint8_t> data);
  // The cluster at `offset` if cached, else nullptr; no I/O, the LRU order is unchanged.
  const uint8_t* Peek(uint64_t offset) const;
  void Invalidate(uint64_t offset);
  // Drops every cluster, dirty ones included (after the structures were rebuilt on disk).
  void Clear();

  void set_write_back(bool on) { write_back_ = on; }
  bool write_back() const { return write_back_; }
  // Writes every dirty cluster to the file (in offset order); they are clean afterwards.
  Result<void> WriteDirty();
  size_t dirty_count() const;

 private:
  struct Entry {
    uint64_t offset;
    std::vector<uint8_t> data;
    bool dirty = false;
  };
  Result<uint8_t*> Insert(uint64_t offset, std::vector<uint8_t> data);

  const FileIo& io_;
  size_t cluster_size_;
  size_t capacity_;
  bool write_back_ = false;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<uint64_t, std::list<Entry>::iterator> index_;
};

}  // namespace kite::storage::qcow2
