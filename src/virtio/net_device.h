// VirtioNet's class declaration, private to src/virtio (and its tests): net.cc holds the device
// (features, configuration space, activation, reset) and the transmit path, net_rx.cc the
// receive path, net_snapshot.cc the quiesce and the device state. Public entry point:
// CreateVirtioNet() in net.h.
#pragma once

#include <asio/io_context.hpp>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "virtio/net.h"
#include "virtio/net_header.h"

namespace kite::virtio {

class VirtioNet final : public NetDevice, public std::enable_shared_from_this<VirtioNet> {
 public:
  static constexpr uint16_t kRxQueue = 0;
  static constexpr uint16_t kTxQueue = 1;

  VirtioNet(std::unique_ptr<NetBackend> backend, const NetOptions& options, asio::io_context* loop);
  ~VirtioNet() override;
  // Connects the backend's receive side to this device (needs shared_from_this).
  void Start();

  uint32_t device_id() const override { return kDeviceIdNet; }
  uint64_t device_features() const override { return features_offered_; }
  std::vector<uint16_t> queue_max_sizes() const override { return {queue_size_, queue_size_}; }
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override;
  Result<void> AcceptFeatures(uint64_t features) override;
  Result<void> Activate(ActiveQueues queues) override;
  void ProcessQueue(uint16_t index) override;
  void Reset() override;
  // Snapshot (net_snapshot.cc).
  Result<void> Quiesce() override;
  void Unquiesce() override;
  std::vector<uint8_t> SaveDeviceState() const override;
  Result<void> RestoreDeviceState(std::span<const uint8_t> bytes) override;
  std::string name() const override { return "virtio-net"; }
  void SetLink(bool up) override;
  bool link_up() const override;
  void SetThrottle(const RateLimitParams& rx, const RateLimitParams& tx) override;
  RateLimitParams rx_throttle() const override;
  RateLimitParams tx_throttle() const override;
  std::string description() const override;
  DeviceCounters counters() const override;
  // Frames received through a host buffer and copied into the guest (the FrameSink path, or
  // the direct path's fallback when the guest's buffers are short); the rest were read
  // straight into guest memory. For tests and B6.
  uint64_t rx_copied() const { return rx_copied_.load(std::memory_order_relaxed); }

 private:
  enum class TxRun { kIdle, kMore, kBlocked, kBroken };
  enum class RxVerdict { kDelivered, kDropped, kNoRoom, kBroken };
  enum class RxStep { kNext, kEmpty, kWait, kGone, kBroken, kThrottled };

  // --- transmit (net.cc) ---
  void RunTx(uint64_t generation);
  TxRun RunTxLocked();
  // Validates tx_chain_ and builds tx_iov_ (our header copy + the payload in guest memory).
  bool PrepareTxLocked();
  // Hands tx_iov_ to the backend; false when the backend is full (keep the chain).
  bool SendTxLocked();

  // --- receive (net_rx.cc) ---
  // Through a host buffer: the backend's FrameSink, and the direct path's fallback.
  bool OnFrame(std::span<const uint8_t> frame);
  // Checks, counts and copies one frame into the guest; sets rx_waiting_ on kNoRoom.
  RxVerdict ReceiveCopyLocked(std::span<const uint8_t> frame);
  RxVerdict DeliverLocked(net::Header hdr, std::span<const uint8_t> payload);
  // Pops chains until the held ones can take `needed` bytes (or one chain without MRG_RXBUF).
  RxVerdict GatherRxLocked(size_t needed, bool mergeable);
  // Writes header + payload over the first held chains and returns them to the driver.
  void WriteRxLocked(net::Header hdr, std::span<const uint8_t> payload, size_t chains);
  void ScheduleRxSignalLocked();
  // Direct receive (a backend with ReadFrame): one run reads up to kRxBudget frames.
  void RunRx();
  RxStep ReadLocked();
  // rx_iov_ = our header copy, then the held chains' room after the header (as much as the
  // expected frame needs); returns the payload bytes that room takes.
  size_t BuildRxIovLocked(bool mergeable);
  // Finds room for the part of the pending frame that spilled into rx_buffer_ and copies it.
  RxStep PlaceLocked();
  // Writes the header (num_buffers) and returns the chains the pending frame fills.
  RxStep CompleteRxLocked(bool mergeable);
  void BreakLocked(const char* why, std::function<void(const std::string&)>* mark_broken);
  // The backend stopped delivering for us (rx_waiting_): let it go on, on the loop.
  void PostRxResumeLocked();
  // --- rate limits (net.cc) ---
  // The limiters' timers fired, or their settings changed: what waited goes on.
  void OnThrottleWake(bool rx, uint64_t epoch);
  void RetryThrottledLocked(bool rx, bool tx);
  // --- quiesce (net_snapshot.cc) ---
  // Gives the held receive chains back to the ring (Queue::Unpop); the ones that cannot be
  // (a returned chain is in the way) are returned unused. True when a used entry was pushed.
  bool ReturnRxChainsLocked(Queue* rx);

  std::unique_ptr<NetBackend> backend_;
  asio::io_context* const loop_;
  const uint16_t queue_size_;
  const uint64_t features_offered_;
  net::Config config_{};

  // set_link: config_.status has LINK_UP. Frames are dropped both ways while it is down. mu_.
  bool LinkUpLocked() const { return (config_.status & net::kStatusLinkUp) != 0; }

  mutable std::mutex mu_;    // everything below; held while guest memory is written
  uint64_t generation_ = 0;  // bumped by Activate and Reset: stale work stops
  bool quiesced_ = false;    // Quiesce() until Unquiesce(): no frame taken, nothing popped
  ActiveQueues active_;
  uint64_t features_ = 0;      // negotiated
  Queue* rx_queue_ = nullptr;  // null when not live, not enabled, or broken
  Queue* tx_queue_ = nullptr;

  DescriptorChain tx_chain_;
  std::vector<iovec> tx_iov_;
  net::Header tx_header_{};  // the copy of the guest's header that is validated and sent
  size_t tx_frame_len_ = 0;
  bool tx_pending_ = false;  // tx_chain_ waits for the backend (Send returned false)

  std::deque<DescriptorChain> rx_chains_;  // popped, not yet used (front = oldest)
  std::vector<DescriptorChain> rx_spare_;  // recycled chains (their iovec storage)
  size_t rx_room_ = 0;                     // writable bytes of rx_chains_
  bool rx_waiting_ = false;  // a frame was refused for lack of buffers: resume on RX kick
  bool rx_signal_posted_ = false;
  bool rx_signal_needed_ = false;
  bool rx_direct_ = false;          // the backend reads into our buffers (set once in Start)
  bool rx_gone_ = false;            // the backend can deliver no more (F7)
  net::Header rx_header_{};         // the header of a directly read frame: our copy, checked
  std::vector<iovec> rx_iov_;       // where the next direct read goes
  std::vector<uint8_t> rx_buffer_;  // where a frame spills past the held chains (64 KiB)
  size_t rx_expect_ = 2048;         // frame length (with header) the held chains should take
  // A frame read but not yet returned (0: none): its length with the header, and how much of
  // its payload is already in the first held chains; the rest is at the start of rx_buffer_.
  size_t rx_pending_len_ = 0;
  size_t rx_pending_in_guest_ = 0;

  // Rate limits (mu_): a frame over the limit stays where it is — a TX chain back in the ring
  // (Unpop), an RX frame in the backend — until the gate's wake.
  ThrottleGate rx_throttle_;
  ThrottleGate tx_throttle_;
  // The limits as last set (SetThrottle stores them at once, the gates get them on the loop):
  // what rx_throttle() and tx_throttle() report, so a query right after a change sees it.
  RateLimitParams rx_limit_;
  RateLimitParams tx_limit_;
  std::function<void(uint64_t)> rx_wake_, tx_wake_;
  bool rx_throttled_ = false;
  bool tx_throttled_ = false;

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> throttled_{0};
  std::atomic<uint64_t> rx_bytes_{0};
  std::atomic<uint64_t> tx_bytes_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> drops_{0};
  std::atomic<uint64_t> rx_copied_{0};
};

}  // namespace kite::virtio
