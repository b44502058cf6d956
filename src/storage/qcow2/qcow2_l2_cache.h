// ClusterCache: a bounded LRU cache of metadata clusters (L2 tables, refcount blocks) read
// from an image file. Write-through: Write() updates the cached copy and the file at once, so
// the process holds no dirty metadata (a SIGKILL loses nothing that was written, F9) and the
// order of metadata writes on disk is the order of the calls.
// Not thread-safe: the owner (Meta) calls it under its metadata lock.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "base/result.h"

namespace kite::storage::qcow2 {

class ClusterCache {
 public:
  ClusterCache(int fd, size_t cluster_size, size_t capacity);

  // The cluster at `offset`, loaded on a miss. The pointer stays valid until the next call
  // that may evict (Get, Put).
  Result<uint8_t*> Get(uint64_t offset);
  // Writes `len` bytes at `byte_off` inside the cluster at `offset`, in the file and the cache.
  Result<void> Write(uint64_t offset, size_t byte_off, const void* data, size_t len);
  // Writes a whole new cluster to the file and caches it.
  Result<void> Put(uint64_t offset, std::vector<uint8_t> data);
  // The cluster at `offset` if cached, else nullptr; no I/O, the LRU order is unchanged.
  const uint8_t* Peek(uint64_t offset) const;
  void Invalidate(uint64_t offset);
  void Clear();

 private:
  struct Entry {
    uint64_t offset;
    std::vector<uint8_t> data;
  };
  uint8_t* Insert(uint64_t offset, std::vector<uint8_t> data);

  int fd_;
  size_t cluster_size_;
  size_t capacity_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<uint64_t, std::list<Entry>::iterator> index_;
};

}  // namespace kite::storage::qcow2
