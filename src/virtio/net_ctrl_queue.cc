// VirtioNet: the control queue (virtio 1.2 section 5.1.6.5), the queue pairs in use
// (VIRTIO_NET_F_MQ) and announcements (VIRTIO_NET_F_GUEST_ANNOUNCE, QMP announce-self). See
// net.cc for the device as a whole and net_ctrl.h for the commands themselves.
//
// Control requests: each chain is class, command and data (device-readable), then the ack
// byte (device-writable). The readable part (at most kMaxCtrlRequest bytes) is copied out of
// guest memory once and applied to a copy of the control state by ApplyNetCtrl (pure); only a
// request answered VIRTIO_NET_OK changes the device. A request with no writable byte cannot
// be answered: it is returned with used length 0 and counted in ctrl_errors, as is every
// VIRTIO_NET_ERR.
//
// Queue pairs: the driver uses pair 0 until VQ_PAIRS_SET (5.1.6.5.5); the pairs beyond the
// count it sets are idle (their queues are neither popped nor filled) and their tap queues are
// detached (TUNSETQUEUE IFF_DETACH_QUEUE), so the kernel hands frames only to the pairs in
// use, as QEMU does. The control queue is queue 2N with MQ negotiated, else queue 2.
//
// Announce: each round, a driver that negotiated GUEST_ANNOUNCE gets VIRTIO_NET_S_ANNOUNCE in
// the status and a configuration interrupt: it sends gratuitous ARPs (and IPv6 neighbour
// advertisements) itself and acknowledges with VIRTIO_NET_CTRL_ANNOUNCE_ACK. Without it the
// device sends a RARP from its MAC through the backend (QEMU's qemu_announce_self), so the
// switches on the way learn where the MAC is now. Rounds: one at once, then after initial,
// initial + step, ... ms, each gap at most max (QEMU's announce timer).
//
// Threads: RunCtrl, the announce rounds and the backend queue changes on the event loop;
// Announce() and SetConfigNotifier() from any thread. Everything under mu_ but the backend's
// TUNSETQUEUE and the configuration interrupt.
#include <algorithm>
#include <asio/post.hpp>
#include <cstring>

#include "base/log.h"
#include "virtio/net_device.h"

namespace kite::virtio {
namespace {

constexpr size_t kMaxCtrlRequest = 64 * 1024;  // a MAC table of ~10000 entries
constexpr uint32_t kCtrlBudget = 256;          // requests per run before yielding the loop
constexpr uint16_t kEthertypeRarp = 0x8035;

bool Has(uint64_t features, int bit) {
  return (features & FeatureBit(bit)) != 0;
}

// RFC 903: a reverse-ARP request from `mac` to everyone (what QEMU announces with).
std::array<uint8_t, 60> RarpFrame(const MacAddress& mac) {
  std::array<uint8_t, 60> f{};
  std::fill(f.begin(), f.begin() + 6, 0xff);
  std::copy(mac.begin(), mac.end(), f.begin() + 6);
  const uint8_t arp[] = {kEthertypeRarp >> 8, kEthertypeRarp & 0xff, 0, 1, 8, 0, 6, 4, 0, 3};
  std::copy(std::begin(arp), std::end(arp), f.begin() + 12);
  std::copy(mac.begin(), mac.end(), f.begin() + 22);  // sender hardware address
  std::copy(mac.begin(), mac.end(), f.begin() + 32);  // target hardware address
  return f;
}

}  // namespace

Result<void> CheckAnnounceParams(const AnnounceParams& p) {
  auto check = [](const char* name, uint32_t value, uint32_t low, uint32_t high) -> Result<void> {
    if (value < low || value > high) {
      return Err(std::string("Parameter '") + name + "' expects a value between " +
                 std::to_string(low) + " and " + std::to_string(high));
    }
    return {};
  };
  TRY(check("initial", p.initial, 1, 100000));
  TRY(check("max", p.max, 1, 100000));
  TRY(check("rounds", p.rounds, 1, 1000));
  return check("step", p.step, 1, 10000);
}

uint16_t VirtioNet::CtrlQueueIndexLocked() const {
  return Has(features_, net::kFeatureMq) ? static_cast<uint16_t>(2 * pairs_.size()) : 2;
}

void VirtioNet::AssignQueuesLocked() {
  auto ready = [this](size_t index) -> Queue* {
    Queue* q = index < active_.queues.size() ? active_.queues[index] : nullptr;
    return q != nullptr && q->ready() ? q : nullptr;
  };
  for (auto& pair : pairs_) {
    bool used = pair->index < ctrl_.pairs;
    pair->rx_queue = used ? ready(pair->rx_index()) : nullptr;
    pair->tx_queue = used ? ready(pair->tx_index()) : nullptr;
  }
  ctrl_queue_ = Has(features_, net::kFeatureCtrlVq) ? ready(CtrlQueueIndexLocked()) : nullptr;
}

void VirtioNet::RunCtrl(uint64_t generation) {
  std::function<void(const std::string&)> mark_broken;
  std::vector<uint16_t> started;  // pairs the driver just took into use
  bool more = false;
  {
    std::lock_guard lock(mu_);
    if (generation != generation_ || ctrl_queue_ == nullptr || quiesced_) return;
    uint16_t index = CtrlQueueIndexLocked();
    uint16_t pairs_before = ctrl_.pairs;
    bool pushed = false;
    for (uint32_t served = 0;; ++served) {
      if (served == kCtrlBudget) {
        more = true;
        break;
      }
      Queue::PopResult pop = ctrl_queue_->Pop(&ctrl_chain_);
      if (pop == Queue::PopResult::kEmpty) break;
      if (pop == Queue::PopResult::kBroken) {
        BreakLocked("the guest broke the control queue", &mark_broken);
        break;
      }
      ServeCtrlLocked();
      pushed = true;
    }
    if (pushed && active_.signal_used) active_.signal_used(index);
    if (ctrl_.pairs != pairs_before && !mark_broken) {
      AssignQueuesLocked();
      PostSyncBackendQueuesLocked();
      for (uint16_t k = pairs_before; k < ctrl_.pairs; ++k) started.push_back(k);
    }
  }
  if (mark_broken) mark_broken("virtio-net: malformed control ring");
  // A pair taken into use may have buffers and frames waiting already.
  for (uint16_t k : started) {
    PostPair(k, &VirtioNet::RunTxNow);
    PostPair(k, &VirtioNet::ResumeRx);
  }
  if (more) {
    std::weak_ptr<VirtioNet> weak = weak_from_this();
    asio::post(*loop_, [weak, generation] {
      if (auto self = weak.lock()) self->RunCtrl(generation);
    });
  }
}

void VirtioNet::ServeCtrlLocked() {
  const DescriptorChain& chain = ctrl_chain_;
  if (chain.writable_bytes() < 1) {  // no room for the ack: nothing can be answered
    KITE_LOG_RATELIMITED(Debug, "virtio-net: control request %u without an ack byte", chain.head());
    ctrl_errors_.fetch_add(1, std::memory_order_relaxed);
    ctrl_queue_->PushUsed(chain.head(), 0);
    return;
  }
  uint8_t ack = net::kCtrlErr;
  uint32_t readable = chain.readable_bytes();
  ctrl_request_.clear();
  if (readable <= kMaxCtrlRequest) {
    ctrl_request_.resize(readable);
    if (ChainReader(chain).Read(ctrl_request_.data(), readable)) {
      NetCtrlState next = ctrl_;
      NetCtrlLimits limits{features_, static_cast<uint16_t>(pairs_.size()),
                           mac_pinning_ ? &configured_mac_ : nullptr};
      ack = ApplyNetCtrl(ctrl_request_, limits, &next);
      if (ack == net::kCtrlOk) ctrl_ = std::move(next);
    }
  }
  if (ack != net::kCtrlOk) {
    KITE_LOG_RATELIMITED(Debug, "virtio-net: control request %u (class %d, command %d) refused",
                         chain.head(), ctrl_request_.size() > 0 ? ctrl_request_[0] : -1,
                         ctrl_request_.size() > 1 ? ctrl_request_[1] : -1);
    ctrl_errors_.fetch_add(1, std::memory_order_relaxed);
  }
  (void)ChainWriter(chain).WriteObj(ack);  // room checked above
  ctrl_queue_->PushUsed(chain.head(), 1);
}

void VirtioNet::PostSyncBackendQueuesLocked() {
  if (pairs_.size() == 1 || backend_sync_posted_) return;
  backend_sync_posted_ = true;
  std::weak_ptr<VirtioNet> weak = weak_from_this();
  asio::post(*loop_, [weak] {
    if (auto self = weak.lock()) self->SyncBackendQueues();
  });
}

void VirtioNet::SyncBackendQueues() {
  std::vector<std::pair<NetPair*, bool>> changes;
  {
    std::lock_guard lock(mu_);
    backend_sync_posted_ = false;
    for (auto& pair : pairs_) {
      bool want = pair->index < ctrl_.pairs;  // pair 0 is always in use
      if (want == pair->tap_enabled) continue;
      pair->tap_enabled = want;
      changes.emplace_back(pair.get(), want);
    }
  }
  for (auto [pair, enable] : changes) {
    Result<void> done = pair->backend->SetQueueEnabled(enable);
    if (!done) {
      KITE_LOG(Warn, "virtio-net: queue pair %u: %s", pair->index, done.error().message().c_str());
    }
  }
}

void VirtioNet::SetConfigNotifier(std::function<void()> notify) {
  std::lock_guard lock(mu_);
  notify_config_ = std::move(notify);
}

void VirtioNet::Announce(const AnnounceParams& params) {
  std::weak_ptr<VirtioNet> weak = weak_from_this();
  asio::post(*loop_, [weak, params] {
    auto self = weak.lock();
    if (!self) return;
    uint64_t epoch;
    {
      std::lock_guard lock(self->mu_);
      self->announce_ = params;
      self->announce_round_ = 0;
      epoch = ++self->announce_epoch_;
    }
    self->announce_timer_->cancel();
    self->AnnounceRound(epoch);
  });
}

void VirtioNet::AnnounceRound(uint64_t epoch) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mu_);
    if (epoch != announce_epoch_ || announce_round_ >= announce_.rounds) return;
    uint64_t delay = std::min<uint64_t>(
        announce_.initial + uint64_t{announce_round_} * announce_.step, announce_.max);
    ++announce_round_;
    announces_.fetch_add(1, std::memory_order_relaxed);
    bool guest = ctrl_queue_ != nullptr && Has(features_, net::kFeatureGuestAnnounce);
    if (guest) {
      ctrl_.status |= net::kStatusAnnounce;
      notify = notify_config_;
    } else if (LinkUpLocked()) {
      std::array<uint8_t, 60> frame = RarpFrame(ctrl_.mac);
      net::Header hdr{};
      std::vector<iovec> iov;
      if (backend0().has_vnet_header()) iov.push_back({&hdr, sizeof(hdr)});
      iov.push_back({frame.data(), frame.size()});
      Result<bool> sent = backend0().Send(iov);  // full or failed: this round's is lost
      if (!sent || !*sent) drops_.fetch_add(1, std::memory_order_relaxed);
    }
    if (announce_round_ < announce_.rounds) {
      announce_timer_->expires_after(std::chrono::milliseconds(delay));
      announce_timer_->async_wait([weak = weak_from_this(), epoch](const asio::error_code& ec) {
        auto self = weak.lock();
        if (!ec && self) self->AnnounceRound(epoch);
      });
    }
  }
  if (notify) notify();
}

NetCounters VirtioNet::net_counters() const {
  return {rx_filtered_.load(std::memory_order_relaxed), tx_spoofed_.load(std::memory_order_relaxed),
          ctrl_errors_.load(std::memory_order_relaxed), announces_.load(std::memory_order_relaxed)};
}

uint16_t VirtioNet::pairs_in_use() const {
  std::lock_guard lock(mu_);
  return ctrl_.pairs;
}

}  // namespace kite::virtio
