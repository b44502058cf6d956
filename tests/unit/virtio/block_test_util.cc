// MemDisk and BlockHarness for the virtio-blk tests. See block_test_util.h.
#include "block_test_util.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace kite::virtio::testing {

// --- MemDisk ---

Result<void> MemDisk::Enter(uint64_t offset, uint64_t len) {
  std::unique_lock lock(mu_);
  if (offset > data_.size() || len > data_.size() - offset) return Err("mem: out of range");
  if (hold_offset_ && *hold_offset_ == offset) {
    ++held_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !hold_offset_; });
  }
  if (fail_offset_ && *fail_offset_ == offset) return Error("mem: injected I/O error", EIO);
  return {};
}

Result<void> MemDisk::ReadV(uint64_t offset, std::span<const iovec> iov) {
  uint64_t len = 0;
  for (const iovec& v : iov) len += v.iov_len;
  TRY(Enter(offset, len));
  ++reads;
  std::lock_guard lock(mu_);
  for (const iovec& v : iov) {
    std::memcpy(v.iov_base, data_.data() + offset, v.iov_len);
    offset += v.iov_len;
  }
  return {};
}

Result<void> MemDisk::WriteV(uint64_t offset, std::span<const iovec> iov) {
  if (ro_) return Err("mem: read-only");
  uint64_t len = 0;
  for (const iovec& v : iov) len += v.iov_len;
  TRY(Enter(offset, len));
  ++writes;
  std::lock_guard lock(mu_);
  for (const iovec& v : iov) {
    std::memcpy(data_.data() + offset, v.iov_base, v.iov_len);
    offset += v.iov_len;
  }
  return {};
}

Result<void> MemDisk::Flush() {
  ++flushes;
  return {};
}

Result<void> MemDisk::Discard(uint64_t offset, uint64_t length) {
  if (ro_) return Err("mem: read-only");
  TRY(Enter(offset, length));
  ++discards;
  last_offset = offset;
  last_length = length;
  std::lock_guard lock(mu_);
  std::memset(data_.data() + offset, 0, length);
  return {};
}

Result<void> MemDisk::WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap) {
  if (ro_) return Err("mem: read-only");
  TRY(Enter(offset, length));
  ++write_zeroes;
  last_offset = offset;
  last_length = length;
  last_may_unmap = may_unmap;
  std::lock_guard lock(mu_);
  std::memset(data_.data() + offset, 0, length);
  return {};
}

void MemDisk::HoldAt(uint64_t offset) {
  std::lock_guard lock(mu_);
  hold_offset_ = offset;
  held_ = 0;
}

void MemDisk::Release() {
  std::lock_guard lock(mu_);
  hold_offset_.reset();
  cv_.notify_all();
}

bool MemDisk::WaitHeld(int n) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, std::chrono::seconds(5), [&] { return held_ >= n; });
}

std::vector<uint8_t> MemDisk::Bytes(uint64_t offset, size_t len) {
  std::lock_guard lock(mu_);
  return std::vector<uint8_t>(data_.begin() + offset, data_.begin() + offset + len);
}

void MemDisk::Fill(uint64_t offset, const std::vector<uint8_t>& bytes) {
  std::lock_guard lock(mu_);
  std::memcpy(data_.data() + offset, bytes.data(), bytes.size());
}

// --- BlockHarness ---

BlockHarness::BlockHarness(std::shared_ptr<storage::DiskImage> image, HarnessOptions options) {
  options.block.num_queues = options.queues;
  uint16_t size = options.block.queue_size;
  Result<std::shared_ptr<BlockDevice>> dev =
      CreateVirtioBlock(std::move(image), options.block, &loop_);
  EXPECT_TRUE(dev.has_value()) << dev.error().message();
  if (!dev) return;
  device_ = *dev;
  for (uint16_t q = 0; q < options.queues; ++q) {
    drivers_.push_back(std::make_unique<kite::testing::FakeDriver>(
        kite::testing::FakeDriverOptions{.queue_size = size}));
    queues_.push_back(std::make_unique<Queue>(size));
    drivers_[q]->Configure(queues_[q].get());
    EXPECT_TRUE(queues_[q]->Activate(&drivers_[q]->memory(), true, true));
    queue_ptrs_.push_back(queues_[q].get());
  }
  signals_.assign(options.queues, 0);
  ActiveQueues active;
  active.memory = &drivers_[0]->memory();
  active.features = options.features.value_or(device_->device_features());
  active.queues = std::span<Queue* const>(queue_ptrs_);
  active.signal_used = [this](uint16_t q) { signals_.at(q)++; };
  active.mark_broken = [this](const std::string& why) { broken_.push_back(why); };
  Result<void> activated = device_->Activate(std::move(active));
  EXPECT_TRUE(activated.has_value()) << activated.error().message();
}

BlockHarness::~BlockHarness() {
  if (device_) device_->Reset();
}

BlkReq BlockHarness::Add(uint32_t type, uint64_t sector, const std::vector<uint8_t>& out_data,
                         uint32_t in_len, int segments, uint16_t q, bool high) {
  kite::testing::FakeDriver& d = driver(q);
  BlkReq r;
  r.header = d.Alloc(sizeof(blk::RequestHeader));
  d.WriteObj(r.header, blk::RequestHeader{type, 0, sector});
  std::vector<kite::testing::FakeBuffer> bufs{{r.header, sizeof(blk::RequestHeader), false}};
  bool writable = out_data.empty();
  uint32_t len = writable ? in_len : static_cast<uint32_t>(out_data.size());
  r.data_len = len;
  if (len > 0) {
    uint32_t seg = len / static_cast<uint32_t>(segments);
    for (int i = 0; i < segments; ++i) {
      uint32_t n = i == segments - 1 ? len - seg * (segments - 1) : seg;
      uint64_t addr;
      if (high && i == segments - 1) {
        addr = d.HighAddr(high_next_);
        high_next_ += (n + 15) / 16 * 16;
      } else {
        addr = d.Alloc(n);
      }
      if (i == 0) r.data = addr;
      if (writable) {
        std::vector<uint8_t> fill(n, 0xee);
        d.WriteBytes(addr, fill.data(), n);
      } else {
        d.WriteBytes(addr, out_data.data() + seg * i, n);
      }
      bufs.push_back({addr, n, writable});
    }
  }
  r.status = d.Alloc(1);
  d.WriteObj<uint8_t>(r.status, 0xff);
  bufs.push_back({r.status, 1, true});
  r.head = d.AddChain(bufs);
  return r;
}

BlkReq BlockHarness::Read(uint64_t sector, uint32_t len, int segments, uint16_t q, bool high) {
  return Add(blk::kTypeIn, sector, {}, len, segments, q, high);
}

BlkReq BlockHarness::Write(uint64_t sector, const std::vector<uint8_t>& data, int segments,
                           uint16_t q) {
  return Add(blk::kTypeOut, sector, data, 0, segments, q, false);
}

BlkReq BlockHarness::Flush(uint16_t q) {
  return Add(blk::kTypeFlush, 0, {}, 0, 1, q, false);
}

BlkReq BlockHarness::GetId(uint32_t buffer_len) {
  return Add(blk::kTypeGetId, 0, {}, buffer_len, 1, 0, false);
}

BlkReq BlockHarness::DiscardWz(uint32_t type,
                               const std::vector<blk::DiscardWriteZeroes>& segments) {
  std::vector<uint8_t> bytes(segments.size() * sizeof(blk::DiscardWriteZeroes));
  if (!segments.empty()) std::memcpy(bytes.data(), segments.data(), bytes.size());
  return Add(type, 0, bytes, 0, 1, 0, false);
}

BlkReq BlockHarness::Raw(uint32_t type, uint64_t sector, const std::vector<uint8_t>& out_data,
                         uint32_t in_len, uint16_t q) {
  return Add(type, sector, out_data, out_data.empty() ? in_len : 0, 1, q, false);
}

void BlockHarness::PollOnce() {
  loop_.restart();
  loop_.poll();
}

void BlockHarness::Kick(uint16_t q) {
  driver(q).Publish();
  device_->ProcessQueue(q);
}

bool BlockHarness::RunUntil(const std::function<bool()>& pred, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    loop_.restart();
    if (loop_.poll() == 0) std::this_thread::yield();
  }
  PollOnce();  // the batched interrupt after the last completion
  return true;
}

std::vector<UsedElement> BlockHarness::Complete(size_t n, uint16_t q) {
  Kick(q);
  std::vector<UsedElement> used;
  RunUntil([&] {
    while (auto u = driver(q).PopUsed()) used.push_back(*u);
    return used.size() >= n;
  });
  EXPECT_EQ(used.size(), n);
  return used;
}

std::vector<uint8_t> BlockHarness::Data(const BlkReq& r, uint16_t q) {
  std::vector<uint8_t> out(r.data_len);
  driver(q).ReadBytes(r.data, out.data(), r.data_len);
  return out;
}

}  // namespace kite::virtio::testing
