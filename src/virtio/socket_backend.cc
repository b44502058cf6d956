// Socket backends: a virtio-net interface on a Unix socket, for links between VMs that need no
// privileges and never touch the host's network. QEMU's `-netdev dgram` and `-netdev stream`
// (net/dgram.c, net/stream.c) with Unix addresses, on the same wire, so kite and QEMU VMs can
// share a link:
//   dgram  — a SOCK_DGRAM socket bound to LOCAL; each frame is one datagram sent to REMOTE.
//   stream — a SOCK_STREAM connection (kite listens on PATH with server=on, else connects to
//            it); each frame is a 4-byte big-endian length, then the frame.
// Frames are plain Ethernet, without the virtio-net header (the device strips and adds it). A
// stream server takes one peer at a time; while no peer is there, frames from the guest are
// dropped and counted (tx_errors), as are datagrams no one receives. The peer is untrusted: a
// length of 0 or beyond the largest frame ends the connection (logged).
//
// Everything runs on the event loop thread; setup (socket, bind, listen, connect) runs where
// the device is made.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "virtio/net_backend.h"
#include "virtio/unix_socket.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

constexpr size_t kMaxFrame = net::kMaxFrameWithHeader - sizeof(net::Header);
constexpr size_t kMaxPendingOut = 256 * 1024;  // stream: bytes queued before Send says "full"
constexpr int kReadBatch = 64;

class SocketBackend final : public NetBackend {
 public:
  SocketBackend(asio::io_context* loop, SocketNetOptions options)
      : loop_(loop),
        options_(std::move(options)),
        listener_(*loop),
        conn_(*loop),
        buffer_(kMaxFrame + 1) {}
  ~SocketBackend() override {
    Stop();
    if (owns_path_) ::unlink(options_.path.c_str());
  }

  Result<void> Open();

  bool has_vnet_header() const override { return false; }
  uint64_t offload_features() const override { return 0; }
  Result<void> SetOffloads(uint64_t) override { return {}; }
  Result<bool> Send(std::span<const iovec> iov) override;
  void StartReceive(FrameSink on_frame, std::function<void()> on_writable) override;
  void ResumeReceive() override;
  void Stop() override;
  std::string description() const override;
  NetBackendCounters counters() const override { return counters_; }

 private:
  bool stream() const { return options_.kind != SocketNetKind::kDgram; }
  void Post(void (SocketBackend::*fn)());
  void Accept();
  void WaitReadable();
  void WaitWritable();
  void Drain();
  void DrainDatagrams();
  void DrainStream();
  bool Flush();  // stream: writes out_; false when it must wait
  void Disconnect(const char* why);

  asio::io_context* const loop_;
  const SocketNetOptions options_;
  asio::posix::stream_descriptor listener_;  // stream server: the listening socket
  asio::posix::stream_descriptor conn_;      // the socket frames go through (when connected)
  sockaddr_un remote_{};                     // dgram: where frames go
  bool owns_path_ = false;                   // kite bound the path: removed at the end
  std::shared_ptr<char> alive_ = std::make_shared<char>();
  FrameSink on_frame_;
  std::function<void()> on_writable_;
  std::vector<uint8_t> buffer_;  // dgram: one datagram
  std::vector<uint8_t> in_;      // stream: bytes read, not yet delivered
  size_t held_ = 0;              // dgram: a frame in buffer_ the device refused
  std::vector<uint8_t> out_;     // stream: bytes not yet written
  std::vector<uint8_t> frame_;   // a gathered frame
  bool paused_ = false;
  bool stopped_ = false;
  bool read_wait_ = false;
  bool write_wait_ = false;
  NetBackendCounters counters_;
};

Result<void> SocketBackend::Open() {
  int type = stream() ? SOCK_STREAM : SOCK_DGRAM;
  sockaddr_un addr = TRY(UnixAddress(options_.path));
  UniqueFd fd(::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return SysErr("socket");
  if (options_.kind == SocketNetKind::kStreamClient) {
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return SysErr("connecting to " + options_.path + " (is the other VM listening there?)");
    }
    conn_.assign(fd.release());
    return {};
  }
  TRY(ClearStaleSocket(options_.path, type));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return SysErr("binding " + options_.path);
  }
  owns_path_ = true;
  if (options_.kind == SocketNetKind::kDgram) {
    remote_ = TRY(UnixAddress(options_.remote));
    conn_.assign(fd.release());
    return {};
  }
  if (::listen(fd.get(), 1) != 0) return SysErr("listening on " + options_.path);
  listener_.assign(fd.release());
  return {};
}

std::string SocketBackend::description() const {
  switch (options_.kind) {
    case SocketNetKind::kDgram:
      return "dgram " + options_.path + " -> " + options_.remote;
    case SocketNetKind::kStreamServer:
      return "stream server " + options_.path + (conn_.is_open() ? " (connected)" : "");
    case SocketNetKind::kStreamClient:
      return "stream " + options_.path + (conn_.is_open() ? "" : " (disconnected)");
  }
  return "socket";
}

void SocketBackend::Post(void (SocketBackend::*fn)()) {
  asio::post(*loop_, [this, fn, alive = std::weak_ptr<char>(alive_)] {
    if (!alive.expired()) (this->*fn)();
  });
}

void SocketBackend::StartReceive(FrameSink on_frame, std::function<void()> on_writable) {
  on_frame_ = std::move(on_frame);
  on_writable_ = std::move(on_writable);
  if (listener_.is_open()) Accept();
  Post(&SocketBackend::Drain);
}

void SocketBackend::Accept() {
  listener_.async_wait(asio::posix::stream_descriptor::wait_read,
                       [this, alive = std::weak_ptr<char>(alive_)](const asio::error_code& ec) {
                         if (alive.expired() || ec || stopped_) return;
                         int fd = ::accept4(listener_.native_handle(), nullptr, nullptr,
                                            SOCK_NONBLOCK | SOCK_CLOEXEC);
                         if (fd >= 0 && conn_.is_open()) {
                           ::close(fd);  // one peer at a time
                         } else if (fd >= 0) {
                           conn_.assign(fd);
                           KITE_LOG(Info, "%s: a peer connected", options_.path.c_str());
                           Drain();
                         }
                         Accept();
                       });
}

void SocketBackend::Disconnect(const char* why) {
  KITE_LOG(Warn, "%s: %s; the link is down", description().c_str(), why);
  asio::error_code ec;
  conn_.close(ec);
  in_.clear();
  out_.clear();
  read_wait_ = write_wait_ = false;
}

Result<bool> SocketBackend::Send(std::span<const iovec> iov) {
  frame_.clear();
  for (const iovec& v : iov) {
    const uint8_t* p = static_cast<const uint8_t*>(v.iov_base);
    frame_.insert(frame_.end(), p, p + v.iov_len);
  }
  if (!conn_.is_open() || frame_.empty() || frame_.size() > kMaxFrame) {
    ++counters_.tx_errors;  // no peer (stream), or nothing a peer could take
    return true;
  }
  if (!stream()) {
    for (;;) {
      ssize_t n = ::sendto(conn_.native_handle(), frame_.data(), frame_.size(), MSG_NOSIGNAL,
                           reinterpret_cast<const sockaddr*>(&remote_), sizeof(remote_));
      if (n >= 0) {
        ++counters_.tx_frames;
        return true;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        WaitWritable();
        return false;
      }
      ++counters_.tx_errors;  // no one bound at REMOTE (yet): the frame is lost, as on a wire
      return true;
    }
  }
  if (out_.size() >= kMaxPendingOut) {
    WaitWritable();
    return false;
  }
  uint32_t len = static_cast<uint32_t>(frame_.size());
  uint8_t header[4] = {static_cast<uint8_t>(len >> 24), static_cast<uint8_t>(len >> 16),
                       static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)};
  out_.insert(out_.end(), header, header + 4);
  out_.insert(out_.end(), frame_.begin(), frame_.end());
  ++counters_.tx_frames;
  if (!Flush()) WaitWritable();
  return true;
}

bool SocketBackend::Flush() {
  size_t done = 0;
  while (done < out_.size() && conn_.is_open()) {
    ssize_t n = ::send(conn_.native_handle(), out_.data() + done, out_.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      Disconnect(std::strerror(errno));
      return true;
    }
    done += static_cast<size_t>(n);
  }
  out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(done));
  return out_.empty();
}

void SocketBackend::WaitWritable() {
  if (write_wait_ || !conn_.is_open()) return;
  write_wait_ = true;
  conn_.async_wait(asio::posix::stream_descriptor::wait_write,
                   [this, alive = std::weak_ptr<char>(alive_)](const asio::error_code& ec) {
                     if (alive.expired()) return;
                     write_wait_ = false;
                     if (ec || stopped_) return;
                     if (stream() && !Flush()) return WaitWritable();
                     if (on_writable_) on_writable_();
                   });
}

void SocketBackend::WaitReadable() {
  if (read_wait_ || !conn_.is_open()) return;
  read_wait_ = true;
  conn_.async_wait(asio::posix::stream_descriptor::wait_read,
                   [this, alive = std::weak_ptr<char>(alive_)](const asio::error_code& ec) {
                     if (alive.expired()) return;
                     read_wait_ = false;
                     if (!ec) Drain();
                   });
}

void SocketBackend::ResumeReceive() {
  if (!paused_) return;
  paused_ = false;
  Post(&SocketBackend::Drain);
}

void SocketBackend::Drain() {
  if (paused_ || stopped_ || !on_frame_ || !conn_.is_open()) return;
  if (stream()) {
    DrainStream();
  } else {
    DrainDatagrams();
  }
}

void SocketBackend::DrainDatagrams() {
  for (int i = 0; i < kReadBatch; ++i) {
    if (held_ == 0) {
      ssize_t n = ::recv(conn_.native_handle(), buffer_.data(), buffer_.size(), MSG_TRUNC);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return WaitReadable();
      if (n < 0) {
        KITE_LOG(Warn, "%s: receive failed: %s", description().c_str(), std::strerror(errno));
        return WaitReadable();
      }
      if (n == 0 || static_cast<size_t>(n) > kMaxFrame) {
        ++counters_.rx_drops;  // empty, or larger than any frame
        continue;
      }
      held_ = static_cast<size_t>(n);
      ++counters_.rx_frames;
    }
    if (!on_frame_({buffer_.data(), held_})) {
      paused_ = true;
      return;
    }
    held_ = 0;
  }
  Post(&SocketBackend::Drain);
}

void SocketBackend::DrainStream() {
  for (int i = 0; i < kReadBatch; ++i) {
    // Deliver every whole frame already read; the bytes delivered are dropped once, below.
    size_t at = 0;
    bool stop = false;
    while (in_.size() - at >= 4) {
      const uint8_t* p = in_.data() + at;
      uint32_t len = uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
      if (len == 0 || len > kMaxFrame) {
        Disconnect(("the peer sent a frame length of " + std::to_string(len)).c_str());
        return;
      }
      if (in_.size() - at < 4 + len) break;
      if (!on_frame_({p + 4, len})) {
        paused_ = true;
        stop = true;
        break;
      }
      ++counters_.rx_frames;
      at += 4 + len;
    }
    in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(at));
    if (stop) return;
    size_t old = in_.size();
    in_.resize(old + 65536);
    ssize_t n = ::recv(conn_.native_handle(), in_.data() + old, 65536, 0);
    in_.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return WaitReadable();
    if (n <= 0) {
      Disconnect(n == 0 ? "the peer closed the connection" : std::strerror(errno));
      return;
    }
  }
  Post(&SocketBackend::Drain);
}

void SocketBackend::Stop() {
  stopped_ = true;
  on_frame_ = nullptr;
  on_writable_ = nullptr;
  asio::error_code ec;
  listener_.cancel(ec);
  conn_.cancel(ec);
}

}  // namespace

Result<std::unique_ptr<NetBackend>> OpenSocketBackend(const SocketNetOptions& options,
                                                      asio::io_context* loop) {
  if (loop == nullptr) return Err("socket network: no event loop");
  if (options.kind == SocketNetKind::kDgram && options.remote.empty()) {
    return Err("dgram " + options.path + ": no remote= socket to send to");
  }
  auto backend = std::make_unique<SocketBackend>(loop, options);
  TRY(backend->Open());
  return std::unique_ptr<NetBackend>(std::move(backend));
}

}  // namespace kite::virtio
