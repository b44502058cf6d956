// User-mode NAT backend for virtio-net (net_backend.h) on libslirp 4.7: the guest sees a
// 10.0.2.0/24 network with a gateway/host at 10.0.2.2, DNS at 10.0.2.3 and a DHCP server that
// hands out 10.0.2.15, and its TCP/UDP traffic leaves through ordinary host sockets, so no
// privilege is needed. Host port forwards (hostfwd) listen on the host and connect into the
// guest. No IPv6, no TFTP/boot file, no SMB.
//
// Driving slirp from asio: slirp_pollfds_fill() tells which sockets to watch and how long
// slirp may sleep; slirp_pollfds_poll() handles what is ready. kite keeps one epoll fd
// (level-triggered) with slirp's sockets in it, and asio waits on that epoll fd and on a
// steady_timer for the timeout. One "poll cycle" = poll(2) the sockets with timeout 0,
// slirp_pollfds_poll, slirp_pollfds_fill, update the epoll set, re-arm. asio's outer
// registration is edge-triggered, so when something is still ready after a cycle the next
// cycle is posted at once instead of waiting for an edge. slirp's register/unregister_poll_fd
// callbacks drop an fd from the epoll set so a reused fd number is registered afresh.
//
// Frames: Send() copies the frame and gives it to slirp_input(). Frames slirp sends to the
// guest (send_packet, which may happen inside slirp_input) are queued (bounded: beyond
// kMaxQueuedFrames they are dropped and counted; TCP recovers) and delivered from a posted
// continuation, never from inside a call into this backend. A refused frame stays at the front
// of the queue until ResumeReceive().
//
// libslirp (and glib with it) is loaded at the first user network (slirp_library.h): a VM
// without one never maps it.
//
// Threads: everything on the event loop.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/epoll.h>

#include <algorithm>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>
#include <vector>

#include "base/log.h"
#include "virtio/net_backend.h"
#include "virtio/slirp_library.h"

namespace kite::virtio {
namespace {

constexpr size_t kMaxQueuedFrames = 1024;
constexpr uint32_t kMaxSleepMs = 1000;
constexpr uint32_t kBusySleepMs = 5;  // after kMaxBusyCycles cycles that found work
constexpr int kMaxBusyCycles = 16;
constexpr const char* kNetwork = "10.0.2.0";
constexpr const char* kNetmask = "255.255.255.0";
constexpr const char* kHost = "10.0.2.2";
constexpr const char* kDhcpStart = "10.0.2.15";
constexpr const char* kDns = "10.0.2.3";

in_addr Ipv4(const std::string& text, const char* fallback) {
  in_addr addr{};
  inet_pton(AF_INET, text.empty() ? fallback : text.c_str(), &addr);  // checked when parsed
  return addr;
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

short ToPollEvents(int slirp_events) {
  short events = 0;
  if (slirp_events & SLIRP_POLL_IN) events |= POLLIN;
  if (slirp_events & SLIRP_POLL_OUT) events |= POLLOUT;
  if (slirp_events & SLIRP_POLL_PRI) events |= POLLPRI;
  return events;
}

int FromPollEvents(short revents) {
  int events = 0;
  if (revents & POLLIN) events |= SLIRP_POLL_IN;
  if (revents & POLLOUT) events |= SLIRP_POLL_OUT;
  if (revents & POLLPRI) events |= SLIRP_POLL_PRI;
  if (revents & POLLERR) events |= SLIRP_POLL_ERR;
  if (revents & POLLHUP) events |= SLIRP_POLL_HUP;
  return events;
}

class UserBackend;

struct SlirpTimer {
  explicit SlirpTimer(asio::io_context* loop) : timer(*loop) {}
  asio::steady_timer timer;
  SlirpTimerCb cb = nullptr;
  void* cb_opaque = nullptr;
};

class UserBackend final : public NetBackend {
 public:
  UserBackend(const SlirpLibrary* lib, asio::io_context* loop, std::string description)
      : lib_(lib),
        loop_(loop),
        epoll_(*loop),
        sleep_timer_(*loop),
        description_(std::move(description)) {}
  ~UserBackend() override;

  Result<void> Init(const UserNetOptions& options);

  bool has_vnet_header() const override { return false; }
  uint64_t offload_features() const override { return 0; }
  Result<void> SetOffloads(uint64_t) override { return {}; }
  Result<bool> Send(std::span<const iovec> iov) override;
  void StartReceive(FrameSink on_frame, std::function<void()> on_writable) override;
  void ResumeReceive() override;
  void Stop() override;
  std::string description() const override { return description_; }
  NetBackendCounters counters() const override { return counters_; }

 private:
  static const SlirpCb kCallbacks;
  static UserBackend* Self(void* opaque) { return static_cast<UserBackend*>(opaque); }

  void SchedulePoll();
  void PollCycle();
  void UpdateEpoll();
  void ForgetFd(int fd);
  bool AnyReady();
  void ScheduleDeliver();
  void Deliver();
  ssize_t OnSlirpPacket(const void* buf, size_t len);
  void* NewTimer(SlirpTimerCb cb, void* cb_opaque);
  void ModTimer(void* timer, int64_t expire_ms);

  const SlirpLibrary* const lib_;
  asio::io_context* const loop_;
  asio::posix::stream_descriptor epoll_;  // owns the epoll fd
  asio::steady_timer sleep_timer_;
  const std::string description_;
  Slirp* slirp_ = nullptr;
  std::shared_ptr<char> alive_ = std::make_shared<char>();
  std::map<SlirpTimer*, std::shared_ptr<SlirpTimer>> timers_;
  std::vector<pollfd> pollfds_;                 // from the last slirp_pollfds_fill
  std::unordered_map<int, uint32_t> in_epoll_;  // fd → registered epoll events
  bool poll_posted_ = false;
  bool epoll_waiting_ = false;
  bool filled_ = false;
  int busy_cycles_ = 0;
  bool stopped_ = false;

  FrameSink on_frame_;
  std::deque<std::vector<uint8_t>> rx_frames_;
  bool deliver_posted_ = false;
  bool paused_ = false;
  std::vector<uint8_t> tx_buffer_;
  NetBackendCounters counters_;
};

const SlirpCb UserBackend::kCallbacks = {
    .send_packet = [](const void* buf, size_t len, void* opaque) -> ssize_t {
      return Self(opaque)->OnSlirpPacket(buf, len);
    },
    .guest_error =
        [](const char* msg, void*) {
          KITE_LOG_RATELIMITED(Debug, "virtio-net user backend: guest error: %s", msg);
        },
    .clock_get_ns = [](void*) -> int64_t { return NowNs(); },
    .timer_new = [](SlirpTimerCb cb, void* cb_opaque, void* opaque) -> void* {
      return Self(opaque)->NewTimer(cb, cb_opaque);
    },
    .timer_free =
        [](void* timer, void* opaque) {
          Self(opaque)->timers_.erase(static_cast<SlirpTimer*>(timer));
        },
    .timer_mod = [](void* timer, int64_t expire_ms,
                    void* opaque) { Self(opaque)->ModTimer(timer, expire_ms); },
    .register_poll_fd = [](int fd, void* opaque) { Self(opaque)->ForgetFd(fd); },
    .unregister_poll_fd = [](int fd, void* opaque) { Self(opaque)->ForgetFd(fd); },
    .notify = [](void* opaque) { Self(opaque)->SchedulePoll(); },
    .init_completed = nullptr,
    .timer_new_opaque = nullptr,
};

Result<void> UserBackend::Init(const UserNetOptions& options) {
  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return SysErr("epoll_create1");
  asio::error_code ec;
  epoll_.assign(epoll_fd, ec);
  if (ec) {
    ::close(epoll_fd);
    return Err("cannot watch the epoll fd: " + ec.message());
  }
  SlirpConfig cfg{};
  cfg.version = 4;
  cfg.restricted = 0;
  cfg.in_enabled = true;
  cfg.vnetwork = Ipv4(kNetwork, kNetwork);
  cfg.vnetmask = Ipv4(kNetmask, kNetmask);
  cfg.vhost = Ipv4(kHost, kHost);
  cfg.in6_enabled = false;
  cfg.vhostname = "kite";
  cfg.vdhcp_start = Ipv4(kDhcpStart, kDhcpStart);
  cfg.vnameserver = Ipv4(kDns, kDns);
  slirp_ = lib_->slirp_new(&cfg, &kCallbacks, this);
  if (slirp_ == nullptr) {
    return Err(std::string("slirp_new failed (libslirp ") + lib_->slirp_version_string() +
               "; kite needs 4.7 or later)");
  }
  for (const HostForward& fwd : options.forwards) {
    if (lib_->slirp_add_hostfwd(slirp_, fwd.udp, Ipv4(fwd.host_addr, "127.0.0.1"), fwd.host_port,
                                Ipv4(fwd.guest_addr, kDhcpStart), fwd.guest_port) < 0) {
      return Err("host forward " + std::string(fwd.udp ? "udp" : "tcp") + " port " +
                 std::to_string(fwd.host_port) + ": cannot listen (port in use?)");
    }
  }
  SchedulePoll();
  return {};
}

UserBackend::~UserBackend() {
  Stop();
  if (slirp_ != nullptr) lib_->slirp_cleanup(slirp_);
  timers_.clear();
}

Result<bool> UserBackend::Send(std::span<const iovec> iov) {
  if (stopped_) return Err("user backend stopped");
  tx_buffer_.clear();
  for (const iovec& v : iov) {
    const uint8_t* p = static_cast<const uint8_t*>(v.iov_base);
    tx_buffer_.insert(tx_buffer_.end(), p, p + v.iov_len);
  }
  ++counters_.tx_frames;
  lib_->slirp_input(slirp_, tx_buffer_.data(), static_cast<int>(tx_buffer_.size()));
  SchedulePoll();  // slirp may have opened a socket
  return true;
}

void UserBackend::StartReceive(FrameSink on_frame, std::function<void()>) {
  on_frame_ = std::move(on_frame);
  ScheduleDeliver();
}

void UserBackend::ResumeReceive() {
  paused_ = false;
  ScheduleDeliver();
}

void UserBackend::Stop() {
  stopped_ = true;
  on_frame_ = nullptr;
  asio::error_code ec;
  sleep_timer_.cancel();
  epoll_.cancel(ec);
  for (auto& [raw, timer] : timers_) timer->timer.cancel();
}

ssize_t UserBackend::OnSlirpPacket(const void* buf, size_t len) {
  if (stopped_ || rx_frames_.size() >= kMaxQueuedFrames) {
    ++counters_.rx_drops;
    return static_cast<ssize_t>(len);
  }
  const uint8_t* p = static_cast<const uint8_t*>(buf);
  rx_frames_.emplace_back(p, p + len);
  ++counters_.rx_frames;
  ScheduleDeliver();
  return static_cast<ssize_t>(len);
}

void UserBackend::ScheduleDeliver() {
  if (deliver_posted_ || paused_ || stopped_) return;
  deliver_posted_ = true;
  asio::post(*loop_, [this, alive = std::weak_ptr<char>(alive_)] {
    if (alive.expired()) return;
    deliver_posted_ = false;
    Deliver();
  });
}

void UserBackend::Deliver() {
  while (!paused_ && !stopped_ && on_frame_ && !rx_frames_.empty()) {
    if (!on_frame_(rx_frames_.front())) {
      paused_ = true;
      return;
    }
    rx_frames_.pop_front();
  }
}

void* UserBackend::NewTimer(SlirpTimerCb cb, void* cb_opaque) {
  auto timer = std::make_shared<SlirpTimer>(loop_);
  timer->cb = cb;
  timer->cb_opaque = cb_opaque;
  SlirpTimer* raw = timer.get();
  timers_.emplace(raw, std::move(timer));
  return raw;
}

void UserBackend::ModTimer(void* handle, int64_t expire_ms) {
  auto it = timers_.find(static_cast<SlirpTimer*>(handle));
  if (it == timers_.end() || stopped_) return;
  int64_t delay_ms = std::max<int64_t>(0, expire_ms - NowNs() / 1000000);
  it->second->timer.expires_after(std::chrono::milliseconds(delay_ms));
  it->second->timer.async_wait([this, weak = std::weak_ptr<SlirpTimer>(it->second),
                                alive = std::weak_ptr<char>(alive_)](const asio::error_code& ec) {
    auto timer = weak.lock();
    if (ec || !timer || alive.expired()) return;
    timer->cb(timer->cb_opaque);
    SchedulePoll();
  });
}

void UserBackend::SchedulePoll() {
  if (poll_posted_ || stopped_) return;
  poll_posted_ = true;
  asio::post(*loop_, [this, alive = std::weak_ptr<char>(alive_)] {
    if (alive.expired()) return;
    poll_posted_ = false;
    PollCycle();
  });
}

void UserBackend::PollCycle() {
  if (stopped_) return;
  if (filled_) {
    int ready = pollfds_.empty() ? 0 : ::poll(pollfds_.data(), pollfds_.size(), 0);
    lib_->slirp_pollfds_poll(
        slirp_, ready < 0,
        [](int idx, void* opaque) -> int {
          auto& fds = Self(opaque)->pollfds_;
          if (idx < 0 || static_cast<size_t>(idx) >= fds.size()) return 0;
          return FromPollEvents(fds[idx].revents);
        },
        this);
  }
  pollfds_.clear();
  uint32_t timeout_ms = kMaxSleepMs;
  lib_->slirp_pollfds_fill(
      slirp_, &timeout_ms,
      [](int fd, int events, void* opaque) -> int {
        auto& fds = Self(opaque)->pollfds_;
        fds.push_back({fd, ToPollEvents(events), 0});
        return static_cast<int>(fds.size() - 1);
      },
      this);
  filled_ = true;
  UpdateEpoll();
  // The outer (asio) registration is edge-triggered: what is still ready now would never wake
  // us, so go round again at once — a few times; a socket that stays ready (an error slirp
  // does not act on) then waits for the timer rather than spinning.
  if (AnyReady() && ++busy_cycles_ <= kMaxBusyCycles) {
    SchedulePoll();
    return;
  }
  if (busy_cycles_ > kMaxBusyCycles) timeout_ms = std::min(timeout_ms, kBusySleepMs);
  busy_cycles_ = 0;
  sleep_timer_.expires_after(std::chrono::milliseconds(timeout_ms));
  sleep_timer_.async_wait([this, alive = std::weak_ptr<char>(alive_)](const asio::error_code& ec) {
    if (!ec && !alive.expired()) SchedulePoll();
  });
  if (!epoll_waiting_) {
    epoll_waiting_ = true;
    epoll_.async_wait(asio::posix::stream_descriptor::wait_read,
                      [this, alive = std::weak_ptr<char>(alive_)](const asio::error_code& ec) {
                        if (alive.expired()) return;
                        epoll_waiting_ = false;
                        if (!ec) SchedulePoll();
                      });
  }
}

void UserBackend::UpdateEpoll() {
  std::unordered_map<int, uint32_t> want;
  for (const pollfd& p : pollfds_) {
    uint32_t events = 0;
    if (p.events & POLLIN) events |= EPOLLIN;
    if (p.events & POLLOUT) events |= EPOLLOUT;
    if (p.events & POLLPRI) events |= EPOLLPRI;
    want[p.fd] |= events;
  }
  int epfd = epoll_.native_handle();
  for (auto it = in_epoll_.begin(); it != in_epoll_.end();) {
    if (want.count(it->first) == 0) {
      epoll_ctl(epfd, EPOLL_CTL_DEL, it->first, nullptr);  // may be closed already: ignored
      it = in_epoll_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [fd, events] : want) {
    auto it = in_epoll_.find(fd);
    if (it != in_epoll_.end() && it->second == events) continue;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    int op = it == in_epoll_.end() ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(epfd, op, fd, &ev) < 0) {
      // Our view was stale (fd closed and reused, or closed and auto-removed): try the other.
      if (epoll_ctl(epfd, op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) < 0) {
        KITE_LOG_RATELIMITED(Debug, "user backend: epoll_ctl fd %d: %s", fd, strerror(errno));
        in_epoll_.erase(fd);
        continue;
      }
    }
    in_epoll_[fd] = events;
  }
}

void UserBackend::ForgetFd(int fd) {
  epoll_ctl(epoll_.native_handle(), EPOLL_CTL_DEL, fd, nullptr);
  in_epoll_.erase(fd);
}

bool UserBackend::AnyReady() {
  epoll_event events[8];
  return epoll_wait(epoll_.native_handle(), events, 8, 0) > 0;
}

std::string Describe(const UserNetOptions& options) {
  std::string text = "user (slirp) 10.0.2.15/24";
  for (const HostForward& fwd : options.forwards) {
    text += std::string(", ") + (fwd.udp ? "udp " : "tcp ") +
            (fwd.host_addr.empty() ? "127.0.0.1" : fwd.host_addr) + ":" +
            std::to_string(fwd.host_port) + "->" +
            (fwd.guest_addr.empty() ? kDhcpStart : fwd.guest_addr) + ":" +
            std::to_string(fwd.guest_port);
  }
  return text;
}

}  // namespace

Result<std::unique_ptr<NetBackend>> OpenUserBackend(const UserNetOptions& options,
                                                    asio::io_context* loop) {
  if (loop == nullptr) return Err("user network: no event loop");
  const SlirpLibrary* lib = TRY_CTX(LoadSlirpLibrary(), "user network");
  auto backend = std::make_unique<UserBackend>(lib, loop, Describe(options));
  TRY_CTX(backend->Init(options), "user network");
  return std::unique_ptr<NetBackend>(std::move(backend));
}

}  // namespace kite::virtio
