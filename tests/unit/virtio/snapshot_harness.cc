// See snapshot_harness.h.
#include "snapshot_harness.h"

#include <chrono>

#include "net_test_frames.h"

namespace kite::virtio::snaptest {

using namespace mmio;

LoopThread::LoopThread(asio::io_context* loop) : loop_(loop), guard_(asio::make_work_guard(*loop)) {
  loop_->restart();
  thread_ = std::thread([this] { loop_->run(); });
}

LoopThread::~LoopThread() {
  guard_.reset();
  loop_->stop();
  thread_.join();
  loop_->restart();
}

TransportHarness::TransportHarness(std::shared_ptr<VirtioDevice> device,
                                   std::vector<kite::testing::FakeDriver*> drivers,
                                   asio::io_context* loop)
    : loop_(loop), device_(std::move(device)), drivers_(std::move(drivers)) {
  transport_ = std::make_unique<MmioTransport>(
      device_, TransportEnv{loop_, irq_, &drivers_.at(0)->memory()});
}

uint32_t TransportHarness::Read32(uint64_t offset) {
  uint32_t v = 0;
  transport_->Read(offset, {reinterpret_cast<uint8_t*>(&v), 4});
  return v;
}

void TransportHarness::Write32(uint64_t offset, uint32_t value) {
  transport_->Write(offset, {reinterpret_cast<const uint8_t*>(&value), 4});
}

::testing::AssertionResult TransportHarness::Init(uint64_t accept) {
  Write32(kStatus, 0);
  Write32(kStatus, kStatusAcknowledge);
  Write32(kStatus, kStatusAcknowledge | kStatusDriver);
  Write32(kDeviceFeaturesSel, 1);
  uint64_t offered = uint64_t{Read32(kDeviceFeatures)} << 32;
  Write32(kDeviceFeaturesSel, 0);
  offered |= Read32(kDeviceFeatures);
  accept &= offered;
  Write32(kDriverFeaturesSel, 1);
  Write32(kDriverFeatures, static_cast<uint32_t>(accept >> 32));
  Write32(kDriverFeaturesSel, 0);
  Write32(kDriverFeatures, static_cast<uint32_t>(accept));
  uint32_t status = kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk;
  Write32(kStatus, status);
  if (Read32(kStatus) != status) return ::testing::AssertionFailure() << "FEATURES_OK refused";
  for (uint32_t q = 0; q < drivers_.size(); ++q) {
    kite::testing::FakeDriver& d = *drivers_[q];
    Write32(kQueueSel, q);
    Write32(kQueueNum, d.queue_size());
    Write32(kQueueDescLow, static_cast<uint32_t>(d.desc_addr()));
    Write32(kQueueDriverLow, static_cast<uint32_t>(d.avail_addr()));
    Write32(kQueueDeviceLow, static_cast<uint32_t>(d.used_addr()));
    Write32(kQueueReady, 1);
    if (Read32(kQueueReady) != 1) return ::testing::AssertionFailure() << "queue " << q;
  }
  Write32(kStatus, status | kStatusDriverOk);
  if (Read32(kStatus) != (status | kStatusDriverOk)) {
    return ::testing::AssertionFailure() << "DRIVER_OK: status " << Read32(kStatus);
  }
  return ::testing::AssertionSuccess();
}

void TransportHarness::Kick(uint16_t q) {
  drivers_[q]->Publish();
  Write32(kQueueNotify, q);
}

void TransportHarness::Poll() {
  loop_->restart();
  loop_->poll();
}

bool TransportHarness::RunUntil(const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    loop_->restart();
    if (loop_->poll() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  Poll();  // batched interrupts after the last completion
  return true;
}

namespace {

class FakeNetBackend final : public NetBackend {
 public:
  explicit FakeNetBackend(std::shared_ptr<NetBackendState> s) : s_(std::move(s)) {}
  bool has_vnet_header() const override { return true; }
  uint64_t offload_features() const override { return 0; }
  Result<void> SetOffloads(uint64_t) override { return {}; }
  Result<bool> Send(std::span<const iovec> iov) override {
    if (s_->full) return false;
    s_->sent.push_back(nettest::Gather(iov));
    return true;
  }
  void StartReceive(FrameSink sink, std::function<void()> on_writable) override {
    s_->sink = std::move(sink);
    s_->on_writable = std::move(on_writable);
  }
  void ResumeReceive() override { ++s_->resumes; }
  void Stop() override { s_->stopped = true; }
  std::string description() const override { return "fake"; }
  NetBackendCounters counters() const override { return {}; }

 private:
  std::shared_ptr<NetBackendState> s_;
};

}  // namespace

std::unique_ptr<NetBackend> MakeFakeNetBackend(std::shared_ptr<NetBackendState> state) {
  return std::make_unique<FakeNetBackend>(std::move(state));
}

}  // namespace kite::virtio::snaptest
