// VirtioNet: the virtio network device (virtio 1.2 section 5.1), one receive queue (0) and
// one transmit queue (1), in front of a NetBackend (tap or libslirp). This file: features,
// configuration space, activation, reset and the transmit path; net_rx.cc: the receive path.
//
// Transmit (5.1.6.2): each TX chain is one frame, a 12-byte virtio_net_hdr then the frame.
// The header is copied out of guest memory once, checked (net_header.h) and that copy is what
// the backend gets (G15); the frame itself goes to the backend as iovecs into guest memory
// (zero copy). Dropped, with used length 0 and `drops` counted: chains shorter than the header
// or than header + Ethernet header, longer than 65562 bytes (G23), and headers asking for
// offloads that were not negotiated (G25). A backend error drops the frame and counts in
// `errors`. When the backend is full (Send returns false) the chain is kept and the queue
// waits for the backend's on_writable. One run sends at most kTxBudget frames, then posts the
// rest back to the loop (G34).
//
// Configuration space (5.1.4): the MAC, status = LINK_UP, max_virtqueue_pairs = 1, and the MTU
// when NetOptions::mtu offers VIRTIO_NET_F_MTU; read-only.
// Features: see net_header.h (NetDeviceFeatures); AcceptFeatures refuses offload sets that
// break 5.1.3.1's dependencies. Activate tells the backend which GUEST_* offloads it may use
// (tap: TUNSETOFFLOAD).
//
// Threads: ProcessQueue, the backend's callbacks and posted continuations run on the event
// loop; ReadConfig, AcceptFeatures, Activate and Reset on a vCPU thread under the transport's
// lock. `mu_` guards the activation state and is held while guest memory is read for a send
// or written for a receive, so once Reset() returns nothing more touches the old queues
// (G33). Backend calls that may call back into the device (ResumeReceive) are made without
// `mu_`. Snapshot: net_snapshot.cc (quiesce gives popped chains back; the state is the link
// status; the MAC is configuration).
#include <sys/uio.h>

#include <algorithm>
#include <asio/post.hpp>
#include <cstddef>
#include <cstring>

#include "base/log.h"
#include "virtio/net_device.h"

namespace kite::virtio {
namespace {

constexpr uint32_t kTxBudget = 256;  // frames per run before yielding the loop

bool IsZeroMac(const MacAddress& mac) {
  return std::all_of(mac.begin(), mac.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

VirtioNet::VirtioNet(std::unique_ptr<NetBackend> backend, const NetOptions& options,
                     asio::io_context* loop)
    : backend_(std::move(backend)),
      loop_(loop),
      queue_size_(options.queue_size),
      features_offered_(
          NetDeviceFeatures(backend_->has_vnet_header(), backend_->offload_features()) |
          (options.mtu != 0 ? uint64_t{1} << net::kFeatureMtu : 0)),
      rx_throttle_(options.throttle_time ? options.throttle_time() : LoopThrottleTime(loop),
                   options.rx_throttle),
      tx_throttle_(options.throttle_time ? options.throttle_time() : LoopThrottleTime(loop),
                   options.tx_throttle),
      rx_limit_(options.rx_throttle),
      tx_limit_(options.tx_throttle) {
  MacAddress mac = IsZeroMac(options.mac) ? GenerateMac() : options.mac;
  std::memcpy(config_.mac, mac.data(), mac.size());
  config_.status = net::kStatusLinkUp;
  config_.max_virtqueue_pairs = 1;
  config_.mtu = options.mtu;
}

VirtioNet::~VirtioNet() {
  backend_->Stop();
}

void VirtioNet::Start() {
  std::weak_ptr<VirtioNet> weak = weak_from_this();
  {
    std::lock_guard lock(mu_);
    rx_wake_ = [weak](uint64_t epoch) {
      if (auto self = weak.lock()) self->OnThrottleWake(true, epoch);
    };
    tx_wake_ = [weak](uint64_t epoch) {
      if (auto self = weak.lock()) self->OnThrottleWake(false, epoch);
    };
  }
  // The backend is owned by this device and stopped in its destructor, so `this` outlives
  // every callback it makes.
  auto on_writable = [this] {
    uint64_t generation;
    {
      std::lock_guard lock(mu_);
      generation = generation_;
    }
    RunTx(generation);
  };
  if (backend_->can_read_direct() && backend_->has_vnet_header()) {
    {
      std::lock_guard lock(mu_);
      rx_direct_ = true;
      rx_buffer_.resize(net::kMaxFrameWithHeader + 256);
    }
    backend_->StartDirectReceive([this] { RunRx(); }, std::move(on_writable));
    return;
  }
  backend_->StartReceive([this](std::span<const uint8_t> frame) { return OnFrame(frame); },
                         std::move(on_writable));
}

void VirtioNet::ReadConfig(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  std::lock_guard lock(mu_);  // the status changes at run time (SetLink)
  // Without VIRTIO_NET_F_MTU the field does not exist: the space ends before it.
  size_t size =
      (features_offered_ >> net::kFeatureMtu) & 1 ? sizeof(config_) : offsetof(net::Config, mtu);
  if (offset >= size) return;
  size_t n = std::min<size_t>(data.size(), size - offset);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&config_) + offset, n);
}

Result<void> VirtioNet::AcceptFeatures(uint64_t features) {
  if (!NetFeaturesConsistent(features)) {
    return Err("virtio-net: offload features without the checksum feature they need");
  }
  return {};
}

Result<void> VirtioNet::Activate(ActiveQueues queues) {
  if (queues.queues.size() != 2) return Err("virtio-net: expected two queues");
  TRY_CTX(backend_->SetOffloads(queues.features), "virtio-net: setting backend offloads");
  std::lock_guard lock(mu_);
  ++generation_;
  active_ = std::move(queues);
  features_ = active_.features;
  Queue* rx = active_.queues[kRxQueue];
  Queue* tx = active_.queues[kTxQueue];
  rx_queue_ = rx != nullptr && rx->ready() ? rx : nullptr;
  tx_queue_ = tx != nullptr && tx->ready() ? tx : nullptr;
  return {};
}

void VirtioNet::Reset() {
  std::lock_guard lock(mu_);
  ++generation_;
  rx_queue_ = tx_queue_ = nullptr;
  active_ = ActiveQueues{};
  features_ = 0;
  tx_pending_ = false;
  tx_iov_.clear();
  while (!rx_chains_.empty()) {
    rx_spare_.push_back(std::move(rx_chains_.front()));
    rx_chains_.pop_front();
  }
  rx_room_ = 0;
  rx_signal_needed_ = false;
  if (rx_pending_len_ != 0) {  // a frame waiting for buffers: the guest will never get it
    rx_pending_len_ = 0;
    drops_.fetch_add(1, std::memory_order_relaxed);
  }
  // The backend (or our host buffer) held a frame for us: go on reading (frames are dropped
  // while not live), so the host side keeps draining.
  if (rx_waiting_ && !quiesced_) PostRxResumeLocked();
}

void VirtioNet::PostRxResumeLocked() {
  rx_waiting_ = false;
  std::weak_ptr<VirtioNet> weak = weak_from_this();
  bool direct = rx_direct_;
  asio::post(*loop_, [weak, direct] {
    auto self = weak.lock();
    if (!self) return;
    if (direct) return self->RunRx();
    self->backend_->ResumeReceive();
  });
}

void VirtioNet::ProcessQueue(uint16_t index) {
  uint64_t generation;
  bool resume = false;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
    if (index == kRxQueue && rx_queue_ != nullptr && rx_waiting_) {
      rx_waiting_ = false;
      resume = true;
    }
  }
  if (index == kTxQueue) RunTx(generation);
  if (!resume) return;
  if (rx_direct_) return RunRx();  // rx_direct_ is set once in Start, before any kick
  backend_->ResumeReceive();       // without mu_: the backend may deliver at once
}

std::string VirtioNet::description() const {
  MacAddress mac;
  std::memcpy(mac.data(), config_.mac, mac.size());
  return "net " + FormatMac(mac) + ": " + backend_->description();
}

DeviceCounters VirtioNet::counters() const {
  DeviceCounters c;
  c.requests = requests_.load(std::memory_order_relaxed);
  c.bytes_read = rx_bytes_.load(std::memory_order_relaxed);
  c.bytes_written = tx_bytes_.load(std::memory_order_relaxed);
  c.errors = errors_.load(std::memory_order_relaxed);
  c.drops = drops_.load(std::memory_order_relaxed);
  c.throttled = throttled_.load(std::memory_order_relaxed);
  return c;
}

void VirtioNet::BreakLocked(const char* why, std::function<void(const std::string&)>* mark_broken) {
  KITE_LOG_RATELIMITED(Warn, "virtio-net: %s; device needs reset", why);
  *mark_broken = active_.mark_broken;
  rx_queue_ = tx_queue_ = nullptr;
}

// --- Transmit ---

void VirtioNet::RunTx(uint64_t generation) {
  TxRun result;
  std::function<void(const std::string&)> mark_broken;
  {
    std::lock_guard lock(mu_);
    if (generation != generation_ || tx_queue_ == nullptr || quiesced_) return;
    result = RunTxLocked();
    if (result == TxRun::kBroken) BreakLocked("the guest broke the transmit queue", &mark_broken);
  }
  if (mark_broken) mark_broken("virtio-net: malformed transmit ring");
  if (result == TxRun::kMore) {
    std::weak_ptr<VirtioNet> weak = weak_from_this();
    asio::post(*loop_, [weak, generation] {
      if (auto self = weak.lock()) self->RunTx(generation);
    });
  }
}

VirtioNet::TxRun VirtioNet::RunTxLocked() {
  bool pushed = false;
  TxRun result = TxRun::kIdle;
  for (uint32_t sent = 0;; ++sent) {
    if (!tx_pending_) {
      if (sent >= kTxBudget) {
        result = TxRun::kMore;
        break;
      }
      Queue::PopResult pop = tx_queue_->Pop(&tx_chain_);
      if (pop == Queue::PopResult::kEmpty) break;
      if (pop == Queue::PopResult::kBroken) {
        result = TxRun::kBroken;
        break;
      }
      if (!PrepareTxLocked()) {
        requests_.fetch_add(1, std::memory_order_relaxed);
        drops_.fetch_add(1, std::memory_order_relaxed);
        tx_queue_->PushUsed(tx_chain_.head(), 0);
        pushed = true;
        continue;
      }
      // Over the rate limit: the chain goes back to the ring (the last one popped: Unpop
      // cannot fail) until the limiter's wake.
      if (!tx_throttle_.Admit(tx_frame_len_, tx_wake_) && tx_queue_->Unpop(1)) {
        tx_throttled_ = true;
        throttled_.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      requests_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!SendTxLocked()) {
      tx_pending_ = true;
      result = TxRun::kBlocked;
      break;
    }
    tx_pending_ = false;
    tx_queue_->PushUsed(tx_chain_.head(), 0);
    pushed = true;
  }
  if (pushed && active_.signal_used) active_.signal_used(kTxQueue);
  return result;
}

bool VirtioNet::PrepareTxLocked() {
  uint32_t total = tx_chain_.readable_bytes();
  if (total < kNetHeaderSize + kEthernetHeaderSize || total > net::kMaxFrameWithHeader) {
    KITE_LOG_RATELIMITED(Debug, "virtio-net: TX chain %u of %u bytes dropped (G23)",
                         tx_chain_.head(), total);
    return false;
  }
  ChainReader reader(tx_chain_);
  if (!reader.ReadObj(&tx_header_)) return false;  // cannot fail after the size check
  tx_frame_len_ = total - kNetHeaderSize;
  TxHeaderVerdict verdict = CheckTxHeader(&tx_header_, features_, tx_frame_len_);
  if (verdict != TxHeaderVerdict::kOk) {
    KITE_LOG_RATELIMITED(Debug, "virtio-net: TX frame dropped: %s (G25)",
                         TxHeaderVerdictName(verdict));
    return false;
  }
  tx_iov_.clear();
  if (backend_->has_vnet_header()) {
    tx_header_.num_buffers = 0;
    tx_iov_.push_back({&tx_header_, kNetHeaderSize});
  }
  return reader.Take(tx_frame_len_, &tx_iov_);
}

void VirtioNet::SetLink(bool up) {
  std::lock_guard lock(mu_);
  config_.status = up ? net::kStatusLinkUp : 0;
}

bool VirtioNet::link_up() const {
  std::lock_guard lock(mu_);
  return LinkUpLocked();
}

bool VirtioNet::SendTxLocked() {
  if (!LinkUpLocked()) {  // set_link down: the frame goes nowhere, the chain back to the guest
    drops_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  Result<bool> sent = backend_->Send(tx_iov_);
  if (!sent) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    KITE_LOG_RATELIMITED(Warn, "virtio-net: backend send failed: %s",
                         sent.error().message().c_str());
    return true;  // dropped: the chain goes back to the guest
  }
  if (*sent) tx_bytes_.fetch_add(tx_frame_len_, std::memory_order_relaxed);
  return *sent;
}

void VirtioNet::SetThrottle(const RateLimitParams& rx, const RateLimitParams& tx) {
  {
    std::lock_guard lock(mu_);
    rx_limit_ = rx;
    tx_limit_ = tx;
  }
  std::weak_ptr<VirtioNet> weak = weak_from_this();
  asio::post(*loop_, [weak, rx, tx] {
    auto self = weak.lock();
    if (!self) return;
    std::lock_guard lock(self->mu_);
    self->rx_throttle_.Set(rx);
    self->tx_throttle_.Set(tx);
    self->RetryThrottledLocked(true, true);
  });
}

RateLimitParams VirtioNet::rx_throttle() const {
  std::lock_guard lock(mu_);
  return rx_limit_;
}

RateLimitParams VirtioNet::tx_throttle() const {
  std::lock_guard lock(mu_);
  return tx_limit_;
}

void VirtioNet::OnThrottleWake(bool rx, uint64_t epoch) {
  std::lock_guard lock(mu_);
  if (!(rx ? rx_throttle_ : tx_throttle_).Woken(epoch)) return;
  RetryThrottledLocked(rx, !rx);
}

void VirtioNet::RetryThrottledLocked(bool rx, bool tx) {
  if (rx && rx_throttled_) {
    rx_throttled_ = false;
    // Quiesced: Unquiesce() resumes the backend (rx_waiting_).
    if (quiesced_) {
      rx_waiting_ = true;
    } else {
      PostRxResumeLocked();
    }
  }
  // Quiesced: the flag stays, Unquiesce() runs the queue.
  if (tx && tx_throttled_ && !quiesced_) {
    tx_throttled_ = false;
    std::weak_ptr<VirtioNet> weak = weak_from_this();
    asio::post(*loop_, [weak, generation = generation_] {
      if (auto self = weak.lock()) self->RunTx(generation);
    });
  }
}

Result<std::shared_ptr<NetDevice>> CreateVirtioNet(std::unique_ptr<NetBackend> backend,
                                                   const NetOptions& options,
                                                   asio::io_context* loop) {
  if (backend == nullptr || loop == nullptr) return Err("virtio-net: no backend or event loop");
  uint16_t size = options.queue_size;
  if (size == 0 || size > kMaxQueueSize || (size & (size - 1)) != 0) {
    return Err("virtio-net: queue size must be a power of two up to 32768");
  }
  auto device = std::make_shared<VirtioNet>(std::move(backend), options, loop);
  device->Start();
  return std::shared_ptr<NetDevice>(std::move(device));
}

}  // namespace kite::virtio
