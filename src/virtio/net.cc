// VirtioNet: the virtio network device (virtio 1.2 section 5.1): N receive/transmit queue
// pairs (pair k: receive queue 2k, transmit queue 2k + 1, each in front of its own NetBackend:
// the queues of a multiqueue tap, or one tap, libslirp or a socket for N = 1) and a control
// queue (2N with VIRTIO_NET_F_MQ negotiated, else 2). This file: features, configuration
// space, activation, reset and the transmit path; net_rx.cc: the receive path and the receive
// filter; net_ctrl_queue.cc: control requests, the pairs in use, announce.
//
// Transmit (5.1.6.2): each TX chain is one frame, a 12-byte virtio_net_hdr then the frame.
// The header is copied out of guest memory once, checked (net_header.h) and that copy is what
// the backend gets (G15); the frame itself goes to the backend as iovecs into guest memory
// (zero copy). Dropped, with used length 0 and `drops` counted: chains shorter than the header
// or than header + Ethernet header, longer than 65562 bytes (G23), headers asking for offloads
// that were not negotiated (G25), and with MAC pinning (NetOptions::mac_pinning) frames whose
// source MAC is not the configured one (G25; also `tx_spoofed`: the Ethernet header is copied
// out once, checked, and that copy sent, so the guest cannot change it in between). A backend error
// drops the frame and counts in `errors`. When the backend is full (Send returns false) the chain
// is kept and the queue waits for the backend's on_writable. One run sends at most kTxBudget
// frames, then posts the rest back to the loop (G34).
//
// Configuration space (5.1.4): the MAC (the configured one, or the driver's MAC_ADDR_SET),
// status = LINK_UP and ANNOUNCE, max_virtqueue_pairs = N, and the MTU when NetOptions::mtu
// offers VIRTIO_NET_F_MTU; read-only.
// Features: see net_header.h (NetDeviceFeatures); AcceptFeatures refuses offload sets that
// break 5.1.3.1's dependencies. Activate tells the backend which GUEST_* offloads it may use
// (tap: TUNSETOFFLOAD).
//
// Threads: ProcessQueue, the backend's callbacks and posted continuations run on the event
// loop; ReadConfig, AcceptFeatures, Activate and Reset on a vCPU thread under the transport's
// lock. `mu_` guards the activation state and is held while guest memory is read for a send
// or written for a receive, so once Reset() returns nothing more touches the old queues
// (G33). Backend calls that may call back into the device (ResumeReceive) are made without
// `mu_`. One `mu_` for the whole device: every pair is served on the one event loop, so a lock
// per pair would buy nothing. Snapshot: net_snapshot.cc (quiesce gives popped chains back; the
// state is the status, the driver's MAC, the pairs in use and the receive filter).
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

VirtioNet::VirtioNet(std::vector<std::unique_ptr<NetBackend>> backends, const NetOptions& options,
                     asio::io_context* loop)
    : loop_(loop),
      queue_size_(options.queue_size),
      features_offered_(
          NetDeviceFeatures(backends[0]->has_vnet_header(), backends[0]->offload_features()) |
          kNetCtrlFeatures | (options.mtu != 0 ? FeatureBit(net::kFeatureMtu) : 0) |
          (backends.size() > 1 ? FeatureBit(net::kFeatureMq) : 0)),
      configured_mac_(IsZeroMac(options.mac) ? GenerateMac() : options.mac),
      mac_pinning_(options.mac_pinning),
      mtu_(options.mtu),
      rx_throttle_(options.throttle_time ? options.throttle_time() : LoopThrottleTime(loop),
                   options.rx_throttle),
      tx_throttle_(options.throttle_time ? options.throttle_time() : LoopThrottleTime(loop),
                   options.tx_throttle),
      rx_limit_(options.rx_throttle),
      tx_limit_(options.tx_throttle) {
  for (size_t i = 0; i < backends.size(); ++i) {
    pairs_.push_back(std::make_unique<NetPair>(static_cast<uint16_t>(i), std::move(backends[i])));
  }
  ctrl_.mac = configured_mac_;
  ctrl_.status = net::kStatusLinkUp;
  announce_timer_ = std::make_unique<asio::steady_timer>(*loop_);
}

VirtioNet::~VirtioNet() {
  for (auto& pair : pairs_) pair->backend->Stop();
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
    rx_direct_ = backend0().can_read_direct() && backend0().has_vnet_header();
  }
  // The backends are owned by this device and stopped in its destructor, so `this` and the
  // pairs outlive every callback they make.
  for (auto& pair : pairs_) {
    NetPair* p = pair.get();
    auto on_writable = [this, p] { RunTxNow(*p); };
    if (rx_direct_) {
      {
        std::lock_guard lock(mu_);
        p->rx_buffer.resize(net::kMaxFrameWithHeader + 256);
      }
      p->backend->StartDirectReceive([this, p] { RunRx(*p); }, std::move(on_writable));
      continue;
    }
    p->backend->StartReceive(
        [this, p](std::span<const uint8_t> frame) { return OnFrame(*p, frame); },
        std::move(on_writable));
  }
}

std::vector<uint16_t> VirtioNet::queue_max_sizes() const {
  // The pairs' queues, then the control queue (5.1.2).
  std::vector<uint16_t> sizes(2 * pairs_.size(), queue_size_);
  sizes.push_back(kCtrlQueueSize);
  return sizes;
}

void VirtioNet::ReadConfig(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  net::Config config{};
  {
    std::lock_guard lock(mu_);  // MAC and status change at run time (control queue, SetLink)
    std::memcpy(config.mac, ctrl_.mac.data(), ctrl_.mac.size());
    config.status = ctrl_.status;
  }
  config.max_virtqueue_pairs = static_cast<uint16_t>(pairs_.size());
  config.mtu = mtu_;
  // Without VIRTIO_NET_F_MTU the field does not exist: the space ends before it.
  size_t size =
      (features_offered_ >> net::kFeatureMtu) & 1 ? sizeof(config) : offsetof(net::Config, mtu);
  if (offset >= size) return;
  size_t n = std::min<size_t>(data.size(), size - offset);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&config) + offset, n);
}

Result<void> VirtioNet::AcceptFeatures(uint64_t features) {
  if (!NetFeaturesConsistent(features)) {
    return Err("virtio-net: features without the ones they depend on (5.1.3.1)");
  }
  return {};
}

Result<void> VirtioNet::Activate(ActiveQueues queues) {
  if (queues.queues.size() != 2 * pairs_.size() + 1) {
    return Err("virtio-net: expected " + std::to_string(2 * pairs_.size() + 1) + " queues");
  }
  for (auto& pair : pairs_) {
    TRY_CTX(pair->backend->SetOffloads(queues.features), "virtio-net: setting backend offloads");
  }
  std::lock_guard lock(mu_);
  ++generation_;
  active_ = std::move(queues);
  features_ = active_.features;
  // Pairs in use: 1 until VQ_PAIRS_SET (5.1.6.5.5), or what a restored state says.
  if ((features_ & FeatureBit(net::kFeatureMq)) == 0) ctrl_.pairs = 1;
  AssignQueuesLocked();
  PostSyncBackendQueuesLocked();
  return {};
}

void VirtioNet::Reset() {
  std::lock_guard lock(mu_);
  ++generation_;
  ctrl_queue_ = nullptr;
  active_ = ActiveQueues{};
  features_ = 0;
  // 5.1.6.5: the receive filter, the MAC and the pairs in use go back to their defaults.
  ctrl_.filter = RxFilter{};
  ctrl_.mac = configured_mac_;
  ctrl_.pairs = 1;
  ctrl_.status &= net::kStatusLinkUp;
  for (auto& pair : pairs_) {
    NetPair& p = *pair;
    p.rx_queue = p.tx_queue = nullptr;
    p.tx_pending = false;
    p.tx_iov.clear();
    while (!p.rx_chains.empty()) {
      p.rx_spare.push_back(std::move(p.rx_chains.front()));
      p.rx_chains.pop_front();
    }
    p.rx_room = 0;
    p.rx_signal_needed = false;
    if (p.rx_pending_len != 0) {  // a frame waiting for buffers: the guest will never get it
      p.rx_pending_len = 0;
      drops_.fetch_add(1, std::memory_order_relaxed);
    }
    // The backend (or our host buffer) held a frame for us: go on reading (frames are dropped
    // while not live), so the host side keeps draining.
    if (p.rx_waiting && !quiesced_) PostRxResumeLocked(p);
  }
  PostSyncBackendQueuesLocked();
}

void VirtioNet::PostPair(uint16_t pair, void (VirtioNet::*fn)(NetPair&)) {
  std::weak_ptr<VirtioNet> weak = weak_from_this();
  asio::post(*loop_, [weak, pair, fn] {
    if (auto self = weak.lock()) (self.get()->*fn)(*self->pairs_[pair]);
  });
}

void VirtioNet::PostRxResumeLocked(NetPair& p) {
  p.rx_waiting = false;
  PostPair(p.index, &VirtioNet::ResumeRx);
}

void VirtioNet::ResumeRx(NetPair& p) {
  if (rx_direct_) return RunRx(p);  // rx_direct_ is set once in Start, before any kick
  p.backend->ResumeReceive();       // without mu_: the backend may deliver at once
}

void VirtioNet::ProcessQueue(uint16_t index) {
  uint64_t generation;
  bool ctrl = false;
  NetPair* tx = nullptr;
  NetPair* resume = nullptr;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
    if (ctrl_queue_ != nullptr && index == CtrlQueueIndexLocked()) {
      ctrl = true;
    } else if (index / 2 < pairs_.size()) {
      NetPair& p = *pairs_[index / 2];
      if (index % 2 == 1) tx = &p;
      if (index % 2 == 0 && p.rx_queue != nullptr && p.rx_waiting) {
        p.rx_waiting = false;
        resume = &p;
      }
    }
  }
  if (ctrl) return RunCtrl(generation);
  if (tx != nullptr) RunTx(*tx, generation);
  if (resume != nullptr) ResumeRx(*resume);
}

std::string VirtioNet::description() const {
  MacAddress mac;
  {
    std::lock_guard lock(mu_);
    mac = ctrl_.mac;
  }
  std::string queues = pairs_.size() > 1 ? ", " + std::to_string(pairs_.size()) + " queues" : "";
  return "net " + FormatMac(mac) + ": " + backend0().description() + queues;
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
  for (auto& pair : pairs_) pair->rx_queue = pair->tx_queue = nullptr;
  ctrl_queue_ = nullptr;
}

// --- Transmit ---

void VirtioNet::RunTxNow(NetPair& p) {
  uint64_t generation;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
  }
  RunTx(p, generation);
}

void VirtioNet::RunTx(NetPair& p, uint64_t generation) {
  TxRun result;
  std::function<void(const std::string&)> mark_broken;
  {
    std::lock_guard lock(mu_);
    if (generation != generation_ || p.tx_queue == nullptr || quiesced_) return;
    result = RunTxLocked(p);
    if (result == TxRun::kBroken) BreakLocked("the guest broke a transmit queue", &mark_broken);
  }
  if (mark_broken) mark_broken("virtio-net: malformed transmit ring");
  if (result == TxRun::kMore) {
    std::weak_ptr<VirtioNet> weak = weak_from_this();
    asio::post(*loop_, [weak, pair = p.index, generation] {
      if (auto self = weak.lock()) self->RunTx(*self->pairs_[pair], generation);
    });
  }
}

VirtioNet::TxRun VirtioNet::RunTxLocked(NetPair& p) {
  bool pushed = false;
  TxRun result = TxRun::kIdle;
  for (uint32_t sent = 0;; ++sent) {
    if (!p.tx_pending) {
      if (sent >= kTxBudget) {
        result = TxRun::kMore;
        break;
      }
      Queue::PopResult pop = p.tx_queue->Pop(&p.tx_chain);
      if (pop == Queue::PopResult::kEmpty) break;
      if (pop == Queue::PopResult::kBroken) {
        result = TxRun::kBroken;
        break;
      }
      if (!PrepareTxLocked(p)) {
        requests_.fetch_add(1, std::memory_order_relaxed);
        drops_.fetch_add(1, std::memory_order_relaxed);
        p.tx_queue->PushUsed(p.tx_chain.head(), 0);
        pushed = true;
        continue;
      }
      // Over the rate limit: the chain goes back to the ring (the last one popped: Unpop
      // cannot fail) until the limiter's wake.
      if (!tx_throttle_.Admit(p.tx_frame_len, tx_wake_) && p.tx_queue->Unpop(1)) {
        p.tx_throttled = true;
        throttled_.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      requests_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!SendTxLocked(p)) {
      p.tx_pending = true;
      result = TxRun::kBlocked;
      break;
    }
    p.tx_pending = false;
    p.tx_queue->PushUsed(p.tx_chain.head(), 0);
    pushed = true;
  }
  if (pushed && active_.signal_used) active_.signal_used(p.tx_index());
  return result;
}

bool VirtioNet::PrepareTxLocked(NetPair& p) {
  uint32_t total = p.tx_chain.readable_bytes();
  if (total < kNetHeaderSize + kEthernetHeaderSize || total > net::kMaxFrameWithHeader) {
    KITE_LOG_RATELIMITED(Debug, "virtio-net: TX chain %u of %u bytes dropped (G23)",
                         p.tx_chain.head(), total);
    return false;
  }
  ChainReader reader(p.tx_chain);
  if (!reader.ReadObj(&p.tx_header)) return false;  // cannot fail after the size check
  p.tx_frame_len = total - kNetHeaderSize;
  TxHeaderVerdict verdict = CheckTxHeader(&p.tx_header, features_, p.tx_frame_len);
  if (verdict != TxHeaderVerdict::kOk) {
    KITE_LOG_RATELIMITED(Debug, "virtio-net: TX frame dropped: %s (G25)",
                         TxHeaderVerdictName(verdict));
    return false;
  }
  p.tx_iov.clear();
  if (p.backend->has_vnet_header()) {
    p.tx_header.num_buffers = 0;
    p.tx_iov.push_back({&p.tx_header, kNetHeaderSize});
  }
  if (!mac_pinning_) return reader.Take(p.tx_frame_len, &p.tx_iov);
  // G25: the Ethernet header is read once into our copy; that copy is checked and sent.
  if (!reader.Read(p.tx_ethernet.data(), p.tx_ethernet.size())) return false;
  if (SourceMacSpoofed(configured_mac_, p.tx_ethernet)) {
    KITE_LOG_RATELIMITED(Debug, "virtio-net: TX frame with a spoofed source MAC dropped (G25)");
    tx_spoofed_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  p.tx_iov.push_back({p.tx_ethernet.data(), p.tx_ethernet.size()});
  return reader.Take(p.tx_frame_len - p.tx_ethernet.size(), &p.tx_iov);
}

void VirtioNet::SetLink(bool up) {
  std::lock_guard lock(mu_);
  ctrl_.status =
      static_cast<uint16_t>((ctrl_.status & ~net::kStatusLinkUp) | (up ? net::kStatusLinkUp : 0));
}

bool VirtioNet::link_up() const {
  std::lock_guard lock(mu_);
  return LinkUpLocked();
}

bool VirtioNet::SendTxLocked(NetPair& p) {
  if (!LinkUpLocked()) {  // set_link down: the frame goes nowhere, the chain back to the guest
    drops_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  Result<bool> sent = p.backend->Send(p.tx_iov);
  if (!sent) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    KITE_LOG_RATELIMITED(Warn, "virtio-net: backend send failed: %s",
                         sent.error().message().c_str());
    return true;  // dropped: the chain goes back to the guest
  }
  if (*sent) tx_bytes_.fetch_add(p.tx_frame_len, std::memory_order_relaxed);
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
  for (auto& pair : pairs_) {
    NetPair& p = *pair;
    if (rx && p.rx_throttled) {
      p.rx_throttled = false;
      // Quiesced: Unquiesce() resumes the backend (p.rx_waiting).
      if (quiesced_) {
        p.rx_waiting = true;
      } else {
        PostRxResumeLocked(p);
      }
    }
    // Quiesced: the flag stays, Unquiesce() runs the queue.
    if (tx && p.tx_throttled && !quiesced_) {
      p.tx_throttled = false;
      std::weak_ptr<VirtioNet> weak = weak_from_this();
      asio::post(*loop_, [weak, pair = p.index, generation = generation_] {
        if (auto self = weak.lock()) self->RunTx(*self->pairs_[pair], generation);
      });
    }
  }
}

Result<std::shared_ptr<NetDevice>> CreateVirtioNet(std::unique_ptr<NetBackend> backend,
                                                   const NetOptions& options,
                                                   asio::io_context* loop) {
  std::vector<std::unique_ptr<NetBackend>> backends;
  backends.push_back(std::move(backend));
  return CreateVirtioNet(std::move(backends), options, loop);
}

Result<std::shared_ptr<NetDevice>> CreateVirtioNet(
    std::vector<std::unique_ptr<NetBackend>> backends, const NetOptions& options,
    asio::io_context* loop) {
  if (loop == nullptr || backends.empty() ||
      std::any_of(backends.begin(), backends.end(), [](const auto& b) { return b == nullptr; })) {
    return Err("virtio-net: no backend or event loop");
  }
  if (backends.size() > kMaxNetQueuePairs) {
    return Err("virtio-net: at most " + std::to_string(kMaxNetQueuePairs) + " queue pairs");
  }
  uint16_t size = options.queue_size;
  if (size == 0 || size > kMaxQueueSize || (size & (size - 1)) != 0) {
    return Err("virtio-net: queue size must be a power of two up to 32768");
  }
  auto device = std::make_shared<VirtioNet>(std::move(backends), options, loop);
  device->Start();
  return std::shared_ptr<NetDevice>(std::move(device));
}

}  // namespace kite::virtio
