// VirtioNet's class declaration, private to src/virtio (and its tests): net.cc holds the device
// (features, configuration space, activation, reset) and the transmit path, net_rx.cc the
// receive path, net_ctrl_queue.cc the control queue, queue pairs and announce,
// net_snapshot.cc the quiesce and the device state. Public entry point:
// CreateVirtioNet() in net.h.
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "virtio/net.h"
#include "virtio/net_ctrl.h"
#include "virtio/net_header.h"

namespace kite::virtio {

// One queue pair k: receive queue 2k, transmit queue 2k + 1, and its own backend (a queue of
// a multiqueue tap; pair 0 only for the other backends). Guarded by VirtioNet::mu_.
struct NetPair {
  NetPair(uint16_t pair_index, std::unique_ptr<NetBackend> pair_backend)
      : index(pair_index), backend(std::move(pair_backend)) {}
  uint16_t rx_index() const { return static_cast<uint16_t>(2 * index); }
  uint16_t tx_index() const { return static_cast<uint16_t>(2 * index + 1); }

  const uint16_t index;
  const std::unique_ptr<NetBackend> backend;
  // Null when not live, not enabled, beyond the pairs the driver uses, or broken.
  Queue* rx_queue = nullptr;
  Queue* tx_queue = nullptr;

  DescriptorChain tx_chain;
  std::vector<iovec> tx_iov;
  net::Header tx_header{};  // the copy of the guest's header that is validated and sent
  // With MAC pinning: our copy of the frame's Ethernet header, checked and sent (the guest
  // cannot change the source MAC between the check and the send).
  std::array<uint8_t, 14> tx_ethernet{};
  size_t tx_frame_len = 0;
  bool tx_pending = false;  // tx_chain waits for the backend (Send returned false)
  bool tx_throttled = false;

  std::deque<DescriptorChain> rx_chains;  // popped, not yet used (front = oldest)
  std::vector<DescriptorChain> rx_spare;  // recycled chains (their iovec storage)
  size_t rx_room = 0;                     // writable bytes of rx_chains
  bool rx_waiting = false;  // a frame was refused for lack of buffers: resume on RX kick
  bool rx_signal_posted = false;
  bool rx_signal_needed = false;
  bool rx_gone = false;  // the backend can deliver no more (F7)
  bool rx_throttled = false;
  net::Header rx_header{};         // the header of a directly read frame: our copy, checked
  std::vector<iovec> rx_iov;       // where the next direct read goes
  std::vector<uint8_t> rx_buffer;  // where a frame spills past the held chains (64 KiB)
  size_t rx_expect = 2048;         // frame length (with header) the held chains should take
  // A frame read but not yet returned (0: none): its length with the header, and how much of
  // its payload is already in the first held chains; the rest is at the start of rx_buffer.
  size_t rx_pending_len = 0;
  size_t rx_pending_in_guest = 0;
  bool tap_enabled = true;  // the backend queue's state as last set (SyncBackendQueues)
};

class VirtioNet final : public NetDevice, public std::enable_shared_from_this<VirtioNet> {
 public:
  VirtioNet(std::vector<std::unique_ptr<NetBackend>> backends, const NetOptions& options,
            asio::io_context* loop);
  ~VirtioNet() override;
  // Connects the backends' receive sides to this device (needs shared_from_this).
  void Start();

  uint32_t device_id() const override { return kDeviceIdNet; }
  uint64_t device_features() const override { return features_offered_; }
  std::vector<uint16_t> queue_max_sizes() const override;
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
  // Announce and the control queue's state (net_ctrl_queue.cc).
  void SetConfigNotifier(std::function<void()> notify) override;
  void Announce(const AnnounceParams& params) override;
  NetCounters net_counters() const override;
  uint16_t pairs_in_use() const override;
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

  NetBackend& backend0() const { return *pairs_[0]->backend; }
  // Posts fn(pair) to the loop if the device is still there.
  void PostPair(uint16_t pair, void (VirtioNet::*fn)(NetPair&));

  // --- transmit (net.cc) ---
  void RunTx(NetPair& p, uint64_t generation);
  void RunTxNow(NetPair& p);  // RunTx at the current generation
  TxRun RunTxLocked(NetPair& p);
  // Validates p.tx_chain and builds p.tx_iov (our header copy + the payload in guest memory).
  bool PrepareTxLocked(NetPair& p);
  // Hands p.tx_iov to the backend; false when the backend is full (keep the chain).
  bool SendTxLocked(NetPair& p);

  // --- receive (net_rx.cc) ---
  // Through a host buffer: the backend's FrameSink, and the direct path's fallback.
  bool OnFrame(NetPair& p, std::span<const uint8_t> frame);
  // Checks, counts and copies one frame into the guest; sets rx_waiting on kNoRoom.
  RxVerdict ReceiveCopyLocked(NetPair& p, std::span<const uint8_t> frame);
  RxVerdict DeliverLocked(NetPair& p, net::Header hdr, std::span<const uint8_t> payload);
  // Pops chains until the held ones can take `needed` bytes (or one chain without MRG_RXBUF).
  RxVerdict GatherRxLocked(NetPair& p, size_t needed, bool mergeable);
  // Writes header + payload over the first held chains and returns them to the driver.
  void WriteRxLocked(NetPair& p, net::Header hdr, std::span<const uint8_t> payload, size_t chains);
  void ScheduleRxSignalLocked(NetPair& p);
  // Direct receive (a backend with ReadFrame): one run reads up to kRxBudget frames.
  void RunRx(NetPair& p);
  RxStep ReadLocked(NetPair& p);
  // p.rx_iov = our header copy, then the held chains' room after the header (as much as the
  // expected frame needs); returns the payload bytes that room takes.
  size_t BuildRxIovLocked(NetPair& p, bool mergeable);
  // Finds room for the part of the pending frame that spilled into rx_buffer and copies it.
  RxStep PlaceLocked(NetPair& p);
  // Writes the header (num_buffers) and returns the chains the pending frame fills.
  RxStep CompleteRxLocked(NetPair& p, bool mergeable);
  // Whether the driver's receive filter (control queue) takes a frame whose destination MAC
  // starts `dest` (fewer than six bytes: as many as the frame has).
  bool FilterAcceptsLocked(std::span<const uint8_t> dest);
  void BreakLocked(const char* why, std::function<void(const std::string&)>* mark_broken);
  // The backend stopped delivering for us (rx_waiting): let it go on, on the loop.
  void PostRxResumeLocked(NetPair& p);
  void ResumeRx(NetPair& p);
  // --- rate limits (net.cc) ---
  // The limiters' timers fired, or their settings changed: what waited goes on.
  void OnThrottleWake(bool rx, uint64_t epoch);
  void RetryThrottledLocked(bool rx, bool tx);
  // --- control queue, queue pairs, announce (net_ctrl_queue.cc) ---
  uint16_t CtrlQueueIndexLocked() const;
  // Points each pair at its queues: the pairs the driver uses, enabled and not broken.
  void AssignQueuesLocked();
  void RunCtrl(uint64_t generation);
  // Answers the control request in ctrl_chain_ and returns it to the driver.
  void ServeCtrlLocked();
  // Attaches the backend queues of the pairs in use and detaches the others (tap:
  // TUNSETQUEUE), on the loop.
  void SyncBackendQueues();
  void PostSyncBackendQueuesLocked();
  void AnnounceRound(uint64_t epoch);
  // --- quiesce (net_snapshot.cc) ---
  // Gives the held receive chains back to the ring (Queue::Unpop); the ones that cannot be
  // (a returned chain is in the way) are returned unused. True when a used entry was pushed.
  bool ReturnRxChainsLocked(NetPair& p, Queue* rx);

  // Pairs are made in the constructor and never change (pointers stay valid).
  std::vector<std::unique_ptr<NetPair>> pairs_;
  asio::io_context* const loop_;
  const uint16_t queue_size_;
  const uint64_t features_offered_;
  const MacAddress configured_mac_;
  const bool mac_pinning_;
  const uint16_t mtu_;
  bool rx_direct_ = false;  // the backends read into our buffers (set once in Start)

  // set_link: ctrl_.status has LINK_UP. Frames are dropped both ways while it is down. mu_.
  bool LinkUpLocked() const { return (ctrl_.status & net::kStatusLinkUp) != 0; }

  mutable std::mutex mu_;    // everything below; held while guest memory is written
  uint64_t generation_ = 0;  // bumped by Activate and Reset: stale work stops
  bool quiesced_ = false;    // Quiesce() until Unquiesce(): no frame taken, nothing popped
  ActiveQueues active_;
  uint64_t features_ = 0;  // negotiated
  // MAC, receive filter, pairs in use and status (LINK_UP, ANNOUNCE): the control queue's.
  NetCtrlState ctrl_;
  Queue* ctrl_queue_ = nullptr;
  DescriptorChain ctrl_chain_;
  std::vector<uint8_t> ctrl_request_;
  std::function<void()> notify_config_;
  bool backend_sync_posted_ = false;

  // announce-self: rounds left, the next round's delay (ms), a new call restarts (epoch).
  AnnounceParams announce_{};
  uint32_t announce_round_ = 0;
  uint64_t announce_epoch_ = 0;
  std::unique_ptr<asio::steady_timer> announce_timer_;  // the loop's

  // Rate limits (mu_), for the device as a whole: a frame over the limit stays where it is — a
  // TX chain back in the ring (Unpop), an RX frame in the backend — until the gate's wake.
  ThrottleGate rx_throttle_;
  ThrottleGate tx_throttle_;
  // The limits as last set (SetThrottle stores them at once, the gates get them on the loop):
  // what rx_throttle() and tx_throttle() report, so a query right after a change sees it.
  RateLimitParams rx_limit_;
  RateLimitParams tx_limit_;
  std::function<void(uint64_t)> rx_wake_, tx_wake_;

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> throttled_{0};
  std::atomic<uint64_t> rx_bytes_{0};
  std::atomic<uint64_t> tx_bytes_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> drops_{0};
  std::atomic<uint64_t> rx_copied_{0};
  std::atomic<uint64_t> rx_filtered_{0};
  std::atomic<uint64_t> tx_spoofed_{0};
  std::atomic<uint64_t> ctrl_errors_{0};
  std::atomic<uint64_t> announces_{0};
};

}  // namespace kite::virtio
