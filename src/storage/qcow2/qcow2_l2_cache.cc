// ClusterCache implementation: an LRU list plus a hash index. See qcow2_l2_cache.h.
#include "storage/qcow2/qcow2_l2_cache.h"

#include <cstring>

#include "storage/raw_image.h"

namespace kite::storage::qcow2 {

ClusterCache::ClusterCache(int fd, size_t cluster_size, size_t capacity)
    : fd_(fd), cluster_size_(cluster_size), capacity_(capacity < 2 ? 2 : capacity) {}

uint8_t* ClusterCache::Insert(uint64_t offset, std::vector<uint8_t> data) {
  auto it = index_.find(offset);
  if (it != index_.end()) {
    it->second->data = std::move(data);
    lru_.splice(lru_.begin(), lru_, it->second);
    return lru_.front().data.data();
  }
  while (lru_.size() >= capacity_) {
    index_.erase(lru_.back().offset);
    lru_.pop_back();
  }
  lru_.push_front({offset, std::move(data)});
  index_[offset] = lru_.begin();
  return lru_.front().data.data();
}

Result<uint8_t*> ClusterCache::Get(uint64_t offset) {
  auto it = index_.find(offset);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return lru_.front().data.data();
  }
  std::vector<uint8_t> data(cluster_size_);
  TRY_CTX(PreadFull(fd_, data.data(), data.size(), offset), "reading qcow2 metadata");
  return Insert(offset, std::move(data));
}

const uint8_t* ClusterCache::Peek(uint64_t offset) const {
  auto it = index_.find(offset);
  return it == index_.end() ? nullptr : it->second->data.data();
}

Result<void> ClusterCache::Write(uint64_t offset, size_t byte_off, const void* data, size_t len) {
  TRY_CTX(PwriteFull(fd_, data, len, offset + byte_off), "writing qcow2 metadata");
  auto it = index_.find(offset);
  if (it != index_.end()) std::memcpy(it->second->data.data() + byte_off, data, len);
  return {};
}

Result<void> ClusterCache::Put(uint64_t offset, std::vector<uint8_t> data) {
  TRY_CTX(PwriteFull(fd_, data.data(), data.size(), offset), "writing qcow2 metadata");
  Insert(offset, std::move(data));
  return {};
}

void ClusterCache::Invalidate(uint64_t offset) {
  auto it = index_.find(offset);
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
}

void ClusterCache::Clear() {
  lru_.clear();
  index_.clear();
}

}  // namespace kite::storage::qcow2
