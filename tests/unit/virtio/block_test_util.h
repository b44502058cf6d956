// Helpers for the virtio-blk tests: MemDisk, an in-memory DiskImage that counts every call,
// can fail requests at one offset and can hold requests at one offset until released (to keep
// I/O in flight); and BlockHarness, which wires a device to fake-driver queues and an asio
// loop and builds blk requests the way a guest driver does.
#pragma once

#include <asio/io_context.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "storage/disk_image.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/block.h"
#include "virtio/queue.h"

namespace kite::virtio::testing {

class MemDisk final : public storage::DiskImage {
 public:
  explicit MemDisk(uint64_t size, bool read_only = false) : data_(size), ro_(read_only) {}

  storage::ImageFormat format() const override { return storage::ImageFormat::kRaw; }
  const std::string& path() const override { return path_; }
  uint64_t size() const override { return data_.size(); }
  bool read_only() const override { return ro_; }
  uint64_t allocated_bytes() const override { return data_.size(); }

  Result<void> ReadV(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> WriteV(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> Flush() override;
  Result<void> Discard(uint64_t offset, uint64_t length) override;
  Result<void> WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap) override;
  Result<storage::Extent> BlockStatus(uint64_t, uint64_t) override { return Err("unsupported"); }

  // Requests at `offset` fail with an I/O error.
  void FailAt(uint64_t offset) { fail_offset_ = offset; }
  // Reads and writes at `offset` wait until Release(); WaitHeld() waits until `n` are waiting.
  void HoldAt(uint64_t offset);
  void Release();
  bool WaitHeld(int n);

  std::vector<uint8_t> Bytes(uint64_t offset, size_t len);
  void Fill(uint64_t offset, const std::vector<uint8_t>& bytes);

  std::atomic<int> reads{0}, writes{0}, flushes{0}, discards{0}, write_zeroes{0};
  std::atomic<bool> last_may_unmap{false};
  std::atomic<uint64_t> last_offset{0}, last_length{0};

 private:
  Result<void> Enter(uint64_t offset, uint64_t len);

  std::string path_ = "mem";
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint8_t> data_;
  bool ro_;
  std::optional<uint64_t> fail_offset_;
  std::optional<uint64_t> hold_offset_;
  int held_ = 0;
};

// A request as the harness laid it out in guest memory.
struct BlkReq {
  uint16_t head = 0;
  uint64_t header = 0;
  uint64_t data = 0;  // first data buffer (contiguous data for single-segment requests)
  uint32_t data_len = 0;
  uint64_t status = 0;
};

struct HarnessOptions {
  BlockOptions block;
  uint16_t queues = 1;
  // Features the driver accepts (default: all the device offers).
  std::optional<uint64_t> features;
};

class BlockHarness {
 public:
  BlockHarness(std::shared_ptr<storage::DiskImage> image, HarnessOptions options = {});
  ~BlockHarness();

  VirtioDevice& device() { return *device_; }
  BlockDevice& block() { return *device_; }
  kite::testing::FakeDriver& driver(uint16_t q = 0) { return *drivers_[q]; }
  Queue& queue(uint16_t q = 0) { return *queues_[q]; }
  int signals(uint16_t q = 0) const { return signals_[q]; }
  const std::vector<std::string>& broken() const { return broken_; }

  // Requests (added, not yet published). Data buffers are filled with 0xee, the status byte
  // with 0xff (so a written status is visible). `segments` splits the data evenly; with
  // `high` the last segment is placed in the high memory region.
  BlkReq Read(uint64_t sector, uint32_t len, int segments = 1, uint16_t q = 0, bool high = false);
  BlkReq Write(uint64_t sector, const std::vector<uint8_t>& data, int segments = 1, uint16_t q = 0);
  BlkReq Flush(uint16_t q = 0);
  BlkReq GetId(uint32_t buffer_len);
  // DISCARD or WRITE_ZEROES with the given segments (sector, num_sectors, flags).
  BlkReq DiscardWz(uint32_t type, const std::vector<blk::DiscardWriteZeroes>& segments);
  // Any request: header then `out_data` readable, then `in_len` + 1 writable bytes.
  BlkReq Raw(uint32_t type, uint64_t sector, const std::vector<uint8_t>& out_data, uint32_t in_len,
             uint16_t q = 0);

  // Publishes, kicks queue `q` and runs the loop until `n` used entries arrived (or 5 s).
  // Returns the used elements in the order the device returned them.
  std::vector<UsedElement> Complete(size_t n, uint16_t q = 0);
  // Publishes and kicks without waiting.
  void Kick(uint16_t q = 0);
  // Runs the loop until `pred` or the deadline; collects used elements of queue `q`.
  bool RunUntil(const std::function<bool()>& pred, int timeout_ms = 5000);
  void PollOnce();

  uint8_t Status(const BlkReq& r, uint16_t q = 0) { return driver(q).ReadObj<uint8_t>(r.status); }
  std::vector<uint8_t> Data(const BlkReq& r, uint16_t q = 0);
  asio::io_context& loop() { return loop_; }

 private:
  BlkReq Add(uint32_t type, uint64_t sector, const std::vector<uint8_t>& out_data, uint32_t in_len,
             int segments, uint16_t q, bool high);

  asio::io_context loop_;
  std::vector<std::unique_ptr<kite::testing::FakeDriver>> drivers_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<Queue*> queue_ptrs_;
  std::vector<int> signals_;
  std::vector<std::string> broken_;
  std::shared_ptr<BlockDevice> device_;
  uint64_t high_next_ = 0;
};

}  // namespace kite::virtio::testing
