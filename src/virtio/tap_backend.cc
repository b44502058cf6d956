// Tap backend for virtio-net (net_backend.h): a Linux tap interface opened through
// /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte vnet header
// (TUNSETVNETHDRSZ), so every frame in both directions starts with the virtio_net_hdr the
// guest uses and checksum/TSO offloads pass straight through. Guest → tap offloads (CSUM,
// HOST_TSO4/6) need nothing from the tap; tap → guest offloads are switched on with
// TUNSETOFFLOAD for exactly the GUEST_* features the driver accepted.
//
// queues=N (IFF_MULTI_QUEUE): the interface is opened N times, one fd per virtio-net queue
// pair; TUNSETQUEUE detaches the queues of pairs the guest does not use (SetQueueEnabled), so
// the kernel spreads flows over the others only. A detached queue is neither read nor waited
// on (its reads fail with EBADFD).
//
// An interface that exists is attached to (the caller needs to own it or have
// CAP_NET_ADMIN); a missing one is created (needs CAP_NET_ADMIN), brought up, and disappears
// when kite closes it (not persistent).
//
// The fd is non-blocking and watched by the asio loop. asio's epoll reactor is edge-triggered,
// so the reader always reads until EAGAIN before waiting again; a frame the device refuses
// (no guest buffers) stays in the read buffer and reading stops until ResumeReceive(). A read
// error other than EAGAIN (the interface was deleted: F7) stops reading for good, logged once,
// instead of spinning on EPOLLERR. Write errors drop the frame (counted by the device).
//
// Two ways to receive: StartReceive (the FrameSink: read() into this backend's 64 KiB buffer,
// then the device copies into the guest), or StartDirectReceive + ReadFrame (virtio-net's
// normal path): the device names guest buffers and readv() puts the frame straight there. A
// tap read into too small a buffer cuts the frame to the room and returns the room's size, so
// a read that fills the whole buffer counts as cut (both buffers here are larger than any
// frame). OpenTapBackendOnFd wraps a socketpair end for tests; recvmsg with MSG_TRUNC returns
// a cut frame's whole length there, which the same ">= room" test catches.
//
// Threads: everything on the event loop, except SetOffloads (an ioctl, safe from the vCPU
// thread that activates the device).
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_header.h"

namespace kite::virtio {
namespace {

constexpr size_t kReadBuffer = kNetHeaderSize + 65536 + 256;  // a whole 64 KiB GSO frame
constexpr int kReadBatch = 64;                                // frames per loop turn

unsigned TunOffloadFlags(uint64_t features) {
  auto has = [features](int bit) { return (features & FeatureBit(bit)) != 0; };
  unsigned flags = 0;
  if (has(net::kFeatureGuestCsum)) {
    flags |= TUN_F_CSUM;
    if (has(net::kFeatureGuestTso4)) flags |= TUN_F_TSO4;
    if (has(net::kFeatureGuestTso6)) flags |= TUN_F_TSO6;
  }
  return flags;
}

Result<void> BringUp(const std::string& name) {
  UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return SysErr("socket");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(sock.get(), SIOCGIFFLAGS, &ifr) < 0) return SysErr("SIOCGIFFLAGS");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (ioctl(sock.get(), SIOCSIFFLAGS, &ifr) < 0) return SysErr("SIOCSIFFLAGS");
  return {};
}

Result<void> CheckBridgeExists(const std::string& bridge) {
  if (if_nametoindex(bridge.c_str()) == 0) {
    return Err("bridge '" + bridge + "' does not exist (ip link add " + bridge + " type bridge)");
  }
  return {};
}

// Makes `tap` a port of `bridge` (what `ip link set TAP master BR` does, by ioctl).
Result<void> AttachToBridge(const std::string& tap, const std::string& bridge) {
  UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return SysErr("socket");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, bridge.c_str(), IFNAMSIZ - 1);
  ifr.ifr_ifindex = static_cast<int>(if_nametoindex(tap.c_str()));
  if (ifr.ifr_ifindex == 0) return SysErr("tap " + tap + ": no interface index");
  if (ioctl(sock.get(), SIOCBRADDIF, &ifr) < 0) {
    if (errno == EOPNOTSUPP) return Err("'" + bridge + "' is not a bridge");
    return SysErr("tap " + tap + ": joining bridge " + bridge + " (SIOCBRADDIF)");
  }
  return {};
}

class TapBackend final : public NetBackend {
 public:
  TapBackend(asio::io_context* loop, int fd, std::string name, uint64_t offloads, bool is_tap)
      : loop_(loop),
        desc_(*loop),
        name_(std::move(name)),
        offloads_(offloads),
        is_tap_(is_tap),
        buffer_(kReadBuffer) {
    struct stat st {};
    is_socket_ = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    asio::error_code ec;
    desc_.assign(fd, ec);
    if (ec) ::close(fd);
  }
  ~TapBackend() override { Stop(); }

  bool is_open() const { return desc_.is_open(); }
  bool has_vnet_header() const override { return true; }
  uint64_t offload_features() const override { return offloads_; }
  Result<void> SetOffloads(uint64_t negotiated_features) override {
    if (!is_tap_) return {};
    if (ioctl(desc_.native_handle(), TUNSETOFFLOAD, TunOffloadFlags(negotiated_features)) < 0) {
      return SysErr("tap " + name_ + ": TUNSETOFFLOAD");
    }
    return {};
  }
  Result<bool> Send(std::span<const iovec> iov) override;
  void StartReceive(FrameSink on_frame, std::function<void()> on_writable) override;
  void ResumeReceive() override;
  void Stop() override;
  bool can_read_direct() const override { return true; }
  void StartDirectReceive(std::function<void()> on_readable,
                          std::function<void()> on_writable) override;
  Result<std::optional<size_t>> ReadFrame(std::span<const iovec> iov) override;
  Result<void> SetQueueEnabled(bool enabled) override;
  std::string description() const override { return "tap " + name_; }
  NetBackendCounters counters() const override { return counters_; }

 private:
  void Drain();
  void WaitReadable();
  void Post(void (TapBackend::*fn)());
  void NotifyReadable();
  // One read of a frame into `iov`: its whole length, or -1 with errno.
  ssize_t ReadOne(const iovec* iov, int count);

  asio::io_context* const loop_;
  asio::posix::stream_descriptor desc_;
  const std::string name_;
  const uint64_t offloads_;
  const bool is_tap_;       // a real tap (ioctls allowed), not a test's socketpair end
  bool is_socket_ = false;  // read with recvmsg(MSG_TRUNC) to learn a cut frame's length
  std::shared_ptr<char> alive_ = std::make_shared<char>();  // handlers check it is still there
  FrameSink on_frame_;
  std::function<void()> on_readable_;  // direct receive: the device reads with ReadFrame
  std::function<void()> on_writable_;
  std::vector<uint8_t> buffer_;
  size_t held_ = 0;  // bytes of a frame in buffer_ the device refused (0: none)
  bool paused_ = false;
  bool dead_ = false;      // a read error: no more reading
  bool detached_ = false;  // multiqueue: TUNSETQUEUE detached this queue (reads fail EBADFD)
  bool write_wait_ = false;
  bool read_wait_ = false;     // an async_wait for readability is pending
  std::vector<uint8_t> flat_;  // for chains with more than IOV_MAX pieces
  NetBackendCounters counters_;
};

Result<bool> TapBackend::Send(std::span<const iovec> iov) {
  const iovec* vec = iov.data();
  int count = static_cast<int>(iov.size());
  iovec flat;
  if (iov.size() > IOV_MAX) {
    flat_.clear();
    for (const iovec& v : iov) {
      const uint8_t* p = static_cast<const uint8_t*>(v.iov_base);
      flat_.insert(flat_.end(), p, p + v.iov_len);
    }
    flat = {flat_.data(), flat_.size()};
    vec = &flat;
    count = 1;
  }
  for (;;) {
    ssize_t n = ::writev(desc_.native_handle(), vec, count);
    if (n >= 0) {
      ++counters_.tx_frames;
      return true;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN && !write_wait_) {
      write_wait_ = true;
      desc_.async_wait(asio::posix::stream_descriptor::wait_write,
                       [this, alive = std::weak_ptr<char>(alive_)](const asio::error_code& ec) {
                         if (alive.expired()) return;
                         write_wait_ = false;
                         if (!ec && on_writable_) on_writable_();
                       });
    }
    if (errno == EAGAIN) return false;
    ++counters_.tx_errors;
    return SysErr("tap " + name_ + ": write");
  }
}

void TapBackend::StartReceive(FrameSink on_frame, std::function<void()> on_writable) {
  on_frame_ = std::move(on_frame);
  on_writable_ = std::move(on_writable);
  Post(&TapBackend::Drain);
}

void TapBackend::ResumeReceive() {
  if (!paused_) return;
  paused_ = false;
  Post(&TapBackend::Drain);
}

void TapBackend::StartDirectReceive(std::function<void()> on_readable,
                                    std::function<void()> on_writable) {
  on_readable_ = std::move(on_readable);
  on_writable_ = std::move(on_writable);
  Post(&TapBackend::NotifyReadable);
}

void TapBackend::NotifyReadable() {
  if (!dead_ && on_readable_) on_readable_();
}

ssize_t TapBackend::ReadOne(const iovec* iov, int count) {
  if (!is_socket_) return ::readv(desc_.native_handle(), iov, count);
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(count);
  return ::recvmsg(desc_.native_handle(), &msg, MSG_TRUNC);
}

Result<void> TapBackend::SetQueueEnabled(bool enabled) {
  if (!is_tap_ || detached_ == !enabled) return {};
  ifreq ifr{};
  ifr.ifr_flags = static_cast<short>(enabled ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE);
  if (ioctl(desc_.native_handle(), TUNSETQUEUE, &ifr) < 0) {
    return SysErr("tap " + name_ + ": TUNSETQUEUE " + (enabled ? "attach" : "detach"));
  }
  detached_ = !enabled;
  // Attached again: frames may wait already (the device reads until EAGAIN, then waits).
  if (enabled) Post(on_readable_ ? &TapBackend::NotifyReadable : &TapBackend::Drain);
  return {};
}

Result<std::optional<size_t>> TapBackend::ReadFrame(std::span<const iovec> iov) {
  if (dead_) return Err("tap " + name_ + ": no longer readable");
  if (detached_) return std::optional<size_t>();  // attaching posts on_readable
  if (iov.size() > IOV_MAX) return Err("tap " + name_ + ": too many receive buffers");
  for (;;) {
    ssize_t n = ReadOne(iov.data(), static_cast<int>(iov.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      WaitReadable();
      return std::optional<size_t>();
    }
    if (n <= 0) {
      dead_ = true;
      KITE_LOG(Warn, "tap %s: read failed (%s); no more frames from it", name_.c_str(),
               n < 0 ? std::strerror(errno) : "end of file");
      return Err("tap " + name_ + ": read failed");
    }
    ++counters_.rx_frames;
    return std::optional<size_t>(static_cast<size_t>(n));
  }
}

void TapBackend::Stop() {
  on_frame_ = nullptr;
  on_readable_ = nullptr;
  on_writable_ = nullptr;
  dead_ = true;
  asio::error_code ec;
  desc_.cancel(ec);
}

void TapBackend::Post(void (TapBackend::*fn)()) {
  asio::post(*loop_, [this, fn, alive = std::weak_ptr<char>(alive_)] {
    if (!alive.expired()) (this->*fn)();
  });
}

void TapBackend::WaitReadable() {
  if (read_wait_ || detached_) return;
  read_wait_ = true;
  desc_.async_wait(asio::posix::stream_descriptor::wait_read,
                   [this, alive = std::weak_ptr<char>(alive_)](const asio::error_code& ec) {
                     if (alive.expired()) return;
                     read_wait_ = false;
                     if (ec) return;
                     if (on_readable_) return NotifyReadable();
                     Drain();
                   });
}

void TapBackend::Drain() {
  if (paused_ || dead_ || detached_ || !on_frame_) return;
  for (int i = 0; i < kReadBatch; ++i) {
    if (held_ == 0) {
      iovec whole{buffer_.data(), buffer_.size()};
      ssize_t n = ReadOne(&whole, 1);
      if (n >= static_cast<ssize_t>(buffer_.size())) {
        ++counters_.rx_drops;  // filled (cut): larger than any frame a tap should give
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return WaitReadable();
      if (n <= 0) {
        dead_ = true;
        KITE_LOG(Warn, "tap %s: read failed (%s); no more frames from it", name_.c_str(),
                 n < 0 ? std::strerror(errno) : "end of file");
        return;
      }
      held_ = static_cast<size_t>(n);
      ++counters_.rx_frames;
    }
    if (!on_frame_({buffer_.data(), held_})) {
      paused_ = true;  // the frame stays in buffer_ until ResumeReceive
      return;
    }
    held_ = 0;
  }
  Post(&TapBackend::Drain);  // more may be waiting; let other work run first
}

}  // namespace

namespace {

// One queue of the tap (TUNSETIFF): the first makes the interface when it is missing, the
// others (multi_queue) attach to it. Returns the fd and the interface's name.
Result<std::pair<UniqueFd, std::string>> OpenTapQueue(const std::string& name, bool multi_queue,
                                                      bool exists) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return SysErr("tap: opening /dev/net/tun");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags =
      static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0));
  if (ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    int err = errno;
    Error error = SysErr("TUNSETIFF");
    // EBUSY: a single-queue tap that another NIC or process has open (BAD_INPUTS C11).
    // EINVAL with queues=N: the tap exists without multi_queue (or the other way round).
    std::string hint = !exists ? " (creating a tap needs CAP_NET_ADMIN; or create it first: ip "
                                 "tuntap add NAME mode tap user $USER)"
                       : err == EBUSY ? " is in use (another NIC of this VM or another process "
                                        "has it open)"
                       : err == EINVAL
                           ? (multi_queue ? " was not made multiqueue (ip tuntap add NAME mode tap "
                                            "multi_queue)"
                                          : " is multiqueue: give queues=N")
                           : " (the interface must belong to this user, or run with "
                             "CAP_NET_ADMIN)";
    return std::move(error).Context("tap '" + name + "'" + hint);
  }
  std::string actual(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  int header_size = static_cast<int>(kNetHeaderSize);
  if (ioctl(fd.get(), TUNSETVNETHDRSZ, &header_size) < 0) {
    return SysErr("tap " + actual + ": TUNSETVNETHDRSZ");
  }
  return std::make_pair(std::move(fd), std::move(actual));
}

}  // namespace

Result<std::unique_ptr<NetBackend>> OpenTapBackend(const TapOptions& options,
                                                   asio::io_context* loop) {
  if (options.queues != 1) return Err("tap: one queue here (OpenTapQueues for more)");
  return std::move(TRY(OpenTapQueues(options, loop))[0]);
}

Result<std::vector<std::unique_ptr<NetBackend>>> OpenTapQueues(const TapOptions& options,
                                                               asio::io_context* loop) {
  if (loop == nullptr) return Err("tap: no event loop");
  if (options.name.size() >= IFNAMSIZ) return Err("tap '" + options.name + "': name too long");
  if (options.queues < 1 || options.queues > kMaxNetQueuePairs) {
    return Err("tap: queues=" + std::to_string(options.queues) + " is out of range (1 to " +
               std::to_string(kMaxNetQueuePairs) + ")");
  }
  bool exists = !options.name.empty() && if_nametoindex(options.name.c_str()) != 0;
  if (!options.bridge.empty()) {
    TRY(CheckBridgeExists(options.bridge));
    if (exists) {
      return Err("tap '" + options.name + "' exists already: with bridge= kite makes a tap of " +
                 "its own (leave the name out, or give a new one)");
    }
  }
  bool multi_queue = options.queues > 1;
  auto [fd, name] = TRY(OpenTapQueue(options.name, multi_queue, exists));
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(fd));
  while (fds.size() < options.queues) {
    fds.push_back(std::move(TRY(OpenTapQueue(name, multi_queue, true)).first));
  }
  // Probe the offloads the tap can hand us, then start with none until the driver says.
  uint64_t offloads = 0;
  if (ioctl(fds[0].get(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0) {
    offloads = kNetOffloadFeatures;
  }
  if (ioctl(fds[0].get(), TUNSETOFFLOAD, 0) < 0) return SysErr("tap " + name + ": TUNSETOFFLOAD");
  if (!options.bridge.empty()) TRY(AttachToBridge(name, options.bridge));
  if (!exists) {
    Result<void> up = BringUp(name);
    if (!up)
      KITE_LOG(Warn, "tap %s: could not bring it up: %s", name.c_str(),
               up.error().message().c_str());
  }
  std::vector<std::unique_ptr<NetBackend>> queues;
  for (UniqueFd& queue_fd : fds) {
    auto backend = std::make_unique<TapBackend>(loop, queue_fd.release(), name, offloads, true);
    if (!backend->is_open()) return Err("tap " + name + ": cannot watch its fd");
    queues.push_back(std::move(backend));
  }
  return queues;
}

Result<std::unique_ptr<NetBackend>> OpenTapBackendOnFd(int fd, const std::string& name,
                                                       uint64_t offloads, asio::io_context* loop) {
  UniqueFd owned(fd);
  if (loop == nullptr || !owned) return Err("tap " + name + ": no fd or event loop");
  int flags = fcntl(owned.get(), F_GETFL);
  if (flags < 0 || fcntl(owned.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    return SysErr("tap " + name + ": making the fd non-blocking");
  }
  auto backend = std::make_unique<TapBackend>(loop, owned.release(), name, offloads, false);
  if (!backend->is_open()) return Err("tap " + name + ": cannot watch its fd");
  return std::unique_ptr<NetBackend>(std::move(backend));
}

}  // namespace kite::virtio
