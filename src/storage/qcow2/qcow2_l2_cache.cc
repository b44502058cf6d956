// ClusterCache implementation: an LRU list plus a hash index. See qcow2_l2_cache.h.
#include "storage/qcow2/qcow2_l2_cache.h"

#include <algorithm>
#include <cstring>

namespace kite::storage::qcow2 {

ClusterCache::ClusterCache(const FileIo& io, size_t cluster_size, size_t capacity)
    : io_(io), cluster_size_(cluster_size), capacity_(capacity < 2 ? 2 : capacity) {}

Result<uint8_t*> ClusterCache::Insert(uint64_t offset, std::vector<uint8_t> data) {
  auto it = index_.find(offset);
  if (it != index_.end()) {
    it->second->data = std::move(data);
    it->second->dirty = false;
    lru_.splice(lru_.begin(), lru_, it->second);
    return lru_.front().data.data();
  }
  while (lru_.size() >= capacity_) {
    Entry& victim = lru_.back();
    if (victim.dirty) {  // write-back: the evicted cluster reaches the file now
      TRY_CTX(io_.WriteHeld(victim.data, victim.offset, victim.offset, victim.data.size()),
              "writing qcow2 metadata");
    }
    index_.erase(victim.offset);
    lru_.pop_back();
  }
  lru_.push_front({offset, std::move(data)});
  index_[offset] = lru_.begin();
  return lru_.front().data.data();
}

Result<uint8_t*> ClusterCache::Get(uint64_t offset) {
  // Lookups come in runs on one table (a cluster after the other): the most recent entry
  // answers without the hash lookup.
  if (!lru_.empty() && lru_.front().offset == offset) return lru_.front().data.data();
  auto it = index_.find(offset);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return lru_.front().data.data();
  }
  std::vector<uint8_t> data(cluster_size_);
  TRY_CTX(io_.Read(data.data(), data.size(), offset), "reading qcow2 metadata");
  return Insert(offset, std::move(data));
}

const uint8_t* ClusterCache::Peek(uint64_t offset) const {
  auto it = index_.find(offset);
  return it == index_.end() ? nullptr : it->second->data.data();
}

Result<void> ClusterCache::Write(uint64_t offset, size_t byte_off, const void* data, size_t len) {
  if (write_back_) {
    uint8_t* cached = TRY(Get(offset));
    std::memcpy(cached + byte_off, data, len);
    lru_.front().dirty = true;  // Get made it the front entry
    return {};
  }
  auto it = index_.find(offset);
  if (it == index_.end()) {
    TRY_CTX(io_.Write(data, len, offset + byte_off), "writing qcow2 metadata");
    return {};
  }
  std::vector<uint8_t>& cached = it->second->data;
  std::memcpy(cached.data() + byte_off, data, len);
  TRY_CTX(io_.WriteHeld(cached, offset, offset + byte_off, len), "writing qcow2 metadata");
  return {};
}

Result<void> ClusterCache::Put(uint64_t offset, std::vector<uint8_t> data) {
  TRY_CTX(io_.Write(data.data(), data.size(), offset), "writing qcow2 metadata");
  TRY(Insert(offset, std::move(data)));
  return {};
}

Result<void> ClusterCache::WriteDirty() {
  std::vector<Entry*> dirty;
  for (Entry& e : lru_) {
    if (e.dirty) dirty.push_back(&e);
  }
  std::sort(dirty.begin(), dirty.end(), [](Entry* a, Entry* b) { return a->offset < b->offset; });
  for (Entry* e : dirty) {
    TRY_CTX(io_.WriteHeld(e->data, e->offset, e->offset, e->data.size()), "writing qcow2 metadata");
    e->dirty = false;
  }
  return {};
}

size_t ClusterCache::dirty_count() const {
  return static_cast<size_t>(
      std::count_if(lru_.begin(), lru_.end(), [](const Entry& e) { return e.dirty; }));
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
