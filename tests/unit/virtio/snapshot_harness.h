// Helpers for the snapshot and quiesce tests: a device behind a real MmioTransport, set up
// through its registers the way Linux's virtio_mmio driver does (one FakeDriver per queue, all
// in one guest memory); an event loop on a thread of its own (Quiesce waits for the loop); and
// a net backend that hands frames to the device through the FrameSink path.
#pragma once

#include <gtest/gtest.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "testing/fake_irq_line.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/mmio_transport.h"
#include "virtio/net_backend.h"

namespace kite::virtio::snaptest {

// Runs `loop` on its own thread until destroyed (then stops, joins and restarts the loop so
// the test thread can poll it again).
class LoopThread {
 public:
  explicit LoopThread(asio::io_context* loop);
  ~LoopThread();

 private:
  asio::io_context* loop_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

class TransportHarness {
 public:
  TransportHarness(std::shared_ptr<VirtioDevice> device,
                   std::vector<kite::testing::FakeDriver*> drivers, asio::io_context* loop);

  MmioTransport& transport() { return *transport_; }
  VirtioDevice& device() { return *device_; }
  kite::testing::FakeIrqLine& irq() { return *irq_; }
  kite::testing::FakeDriver& driver(uint16_t q) { return *drivers_[q]; }

  uint32_t Read32(uint64_t offset);
  void Write32(uint64_t offset, uint32_t value);
  // Reset, ACKNOWLEDGE, DRIVER, features (`accept` & offered), FEATURES_OK, every queue set up
  // at its driver's size and rings, DRIVER_OK.
  ::testing::AssertionResult Init(uint64_t accept = ~uint64_t{0});
  // Publishes queue `q`'s chains and writes QueueNotify (served on the loop).
  void Kick(uint16_t q);
  // Polls the loop on this thread until `pred` or 5 s.
  bool RunUntil(const std::function<bool()>& pred);
  void Poll();

 private:
  asio::io_context* loop_;
  std::shared_ptr<VirtioDevice> device_;
  std::vector<kite::testing::FakeDriver*> drivers_;
  std::shared_ptr<kite::testing::FakeIrqLine> irq_ = std::make_shared<kite::testing::FakeIrqLine>();
  std::unique_ptr<MmioTransport> transport_;
};

// What the fake net backend saw; shared with the test because the device owns the backend.
struct NetBackendState {
  bool full = false;  // Send returns false
  std::vector<std::vector<uint8_t>> sent;
  NetBackend::FrameSink sink;
  std::function<void()> on_writable;
  int resumes = 0;
  bool stopped = false;
};

// A backend with vnet headers and no offloads; frames go in through the FrameSink.
std::unique_ptr<NetBackend> MakeFakeNetBackend(std::shared_ptr<NetBackendState> state);

}  // namespace kite::virtio::snaptest
