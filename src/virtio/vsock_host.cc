// virtio-vsock, the host side: Firecracker's hybrid model on Unix stream sockets.
//   * The listener at uds_path takes host-initiated connections; each must send
//     "CONNECT <port>\n" (at most kMaxLine bytes, within kPeerTimeout), then the device sends
//     the guest a REQUEST from a fresh host port and answers "OK <host_port>\n" on its RESPONSE;
//     a RST or no answer in kPeerTimeout closes the socket.
//   * A guest REQUEST for port P connects to "<uds_path>_P"; refused or missing: RST.
//   * Bytes from the guest go straight to the host socket; what it cannot take now waits in
//     the connection's buffer (<= kBufAlloc, the credit the guest was given) and is flushed
//     when the socket is writable. A host socket is read only while the guest has credit, into
//     the guest's rx buffer directly.
//   * A host peer that resets or closes while the guest sends: send() fails with EPIPE or
//     ECONNRESET (MSG_NOSIGNAL: no SIGPIPE) and the guest gets a RST (BAD_INPUTS F8). A host
//     peer that closes its end: the guest gets SHUTDOWN (SEND) after the last byte.
// All on the event loop (the listener is bound where the device is made); vsock_device.h has
// the locking.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "base/log.h"
#include "base/unique_fd.h"
#include "virtio/unix_socket.h"
#include "virtio/vsock_device.h"

namespace kite::virtio::vsock {
namespace {

constexpr size_t kMaxLine = 32;  // "CONNECT 4294967295\n" is 19

// "CONNECT <port>\n" -> port.
std::optional<uint32_t> ParseConnectLine(const std::string& line) {
  constexpr std::string_view kPrefix = "CONNECT ";
  if (line.size() < kPrefix.size() + 2 || line.compare(0, kPrefix.size(), kPrefix) != 0 ||
      line.back() != '\n') {
    return std::nullopt;
  }
  std::string_view digits(line.data() + kPrefix.size(), line.size() - kPrefix.size() - 1);
  if (digits.empty() || digits.size() > 10) return std::nullopt;
  uint64_t port = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<uint64_t>(c - '0');
  }
  if (port > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(port);
}

}  // namespace

VirtioVsock::~VirtioVsock() {
  {
    std::lock_guard lock(mu_);
    CloseAllLocked();
  }
  asio::error_code ec;
  accept_retry_.cancel();
  listener_.close(ec);
  if (owns_path_) ::unlink(options_.uds_path.c_str());
}

Result<void> VirtioVsock::Listen() {
  sockaddr_un addr = TRY(UnixAddress(options_.uds_path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return SysErr("socket");
  TRY(ClearStaleSocket(options_.uds_path, SOCK_STREAM));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return SysErr("binding " + options_.uds_path);
  }
  owns_path_ = true;
  if (::listen(fd.get(), 128) != 0) return SysErr("listening on " + options_.uds_path);
  listener_.assign(fd.release());
  return {};
}

void VirtioVsock::Accept() {
  std::weak_ptr<VirtioVsock> weak = weak_from_this();
  listener_.async_wait(
      asio::posix::stream_descriptor::wait_read, [weak](const asio::error_code& ec) {
        auto self = weak.lock();
        if (!self || ec) return;
        std::lock_guard lock(self->mu_);
        for (;;) {
          int fd = ::accept4(self->listener_.native_handle(), nullptr, nullptr,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            // Out of descriptors: the listener stays readable, so waiting on it again would
            // spin. Try again in a while; the peers wait in the backlog.
            KITE_LOG_RATELIMITED(Warn, "vsock: accept: %s", std::strerror(errno));
            self->accept_retry_.expires_after(std::chrono::milliseconds(100));
            self->accept_retry_.async_wait([weak](const asio::error_code& e) {
              if (auto device = weak.lock(); device && !e) device->Accept();
            });
            return;
          }
          if (fd < 0) break;
          // Not activated, or at the cap (G27): the peer sees EOF at once.
          if (self->queues_[kRxQueue] == nullptr || self->ConnectionCount() >= kMaxConnections) {
            ::close(fd);
            self->counters_.resets.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          auto pending = std::make_shared<PendingHost>(*self->loop_, fd);
          self->pending_.push_back(pending);
          pending->timer.expires_after(kPeerTimeout);
          pending->timer.async_wait([weak, pending](const asio::error_code& e) {
            auto device = weak.lock();
            if (!device || e) return;
            std::lock_guard timer_lock(device->mu_);
            if (pending->closed) return;
            KITE_LOG_RATELIMITED(Info, "vsock: no CONNECT line in time");
            device->ClosePending(*pending);
          });
          self->ReadConnectLine(pending);
        }
        self->Accept();
      });
}

void VirtioVsock::ClosePending(PendingHost& pending) {
  pending.closed = true;
  asio::error_code ec;
  pending.timer.cancel();
  pending.sock.close(ec);
  std::erase_if(pending_, [&](const auto& p) { return p.get() == &pending; });
}

void VirtioVsock::ReadConnectLine(std::shared_ptr<PendingHost> pending) {
  std::weak_ptr<VirtioVsock> weak = weak_from_this();
  pending->sock.async_wait(
      asio::posix::stream_descriptor::wait_read, [weak, pending](const asio::error_code& ec) {
        auto self = weak.lock();
        if (!self || ec) return;
        std::lock_guard lock(self->mu_);
        if (pending->closed) return;
        // Peek, then take the line only: bytes after it are the first data for the guest.
        char buf[kMaxLine];
        size_t room = kMaxLine - pending->line.size();
        ssize_t n = ::recv(pending->sock.native_handle(), buf, room, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return self->ReadConnectLine(pending);
        if (n <= 0) return self->ClosePending(*pending);
        auto* newline = static_cast<char*>(std::memchr(buf, '\n', static_cast<size_t>(n)));
        size_t take = newline ? static_cast<size_t>(newline - buf) + 1 : static_cast<size_t>(n);
        if (::recv(pending->sock.native_handle(), buf, take, MSG_DONTWAIT) !=
            static_cast<ssize_t>(take)) {
          return self->ClosePending(*pending);
        }
        pending->line.append(buf, take);
        if (newline) return self->OnConnectLine(*pending);
        if (pending->line.size() >= kMaxLine) {
          KITE_LOG_RATELIMITED(Info, "vsock: a host peer sent no CONNECT line");
          return self->ClosePending(*pending);
        }
        self->ReadConnectLine(pending);
      });
}

void VirtioVsock::OnConnectLine(PendingHost& pending) {
  std::optional<uint32_t> port = ParseConnectLine(pending.line);
  if (!port || queues_[kRxQueue] == nullptr) {
    if (!port) KITE_LOG_RATELIMITED(Info, "vsock: a host peer sent a bad CONNECT line");
    return ClosePending(pending);
  }
  pending.timer.cancel();
  int fd = pending.sock.release();
  ClosePending(pending);
  std::shared_ptr<Conn> conn = AddConn(fd, NextHostPort(), *port);
  conn->state = Conn::State::kConnecting;
  conn->ctl |= kCtlRequest;
  ArmTimer(conn);
  Schedule(*conn);
}

void VirtioVsock::ConnectToHost(const Header& hdr) {
  if (ConnectionCount() >= kMaxConnections) {
    KITE_LOG_RATELIMITED(Warn, "vsock: %zu connections open: a guest request is reset",
                         kMaxConnections);
    return OrphanRst(hdr);
  }
  std::string path = options_.uds_path + "_" + std::to_string(hdr.dst_port);
  Result<sockaddr_un> addr = UnixAddress(path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!addr || !fd ||
      ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    KITE_LOG_RATELIMITED(Debug, "vsock: guest port %u -> %s: %s", hdr.src_port, path.c_str(),
                         std::strerror(errno));
    return OrphanRst(hdr);
  }
  std::shared_ptr<Conn> conn = AddConn(fd.release(), hdr.dst_port, hdr.src_port);
  conn->peer_buf_alloc = hdr.buf_alloc;
  conn->peer_fwd_cnt = hdr.fwd_cnt;
  conn->ctl |= kCtlResponse;
  Schedule(*conn);
  WatchRead(conn);
}

std::shared_ptr<Conn> VirtioVsock::AddConn(int fd, uint32_t host_port, uint32_t guest_port) {
  auto conn = std::make_shared<Conn>(*loop_, fd);
  conn->host_port = host_port;
  conn->guest_port = guest_port;
  conns_[conn->key()] = conn;
  return conn;
}

uint32_t VirtioVsock::NextHostPort() {
  for (;;) {
    uint32_t port = next_host_port_;
    next_host_port_ = port == UINT32_MAX ? kFirstHostPort : port + 1;
    bool used = std::any_of(conns_.begin(), conns_.end(),
                            [&](const auto& c) { return c.second->host_port == port; });
    if (!used) return port;  // at most kMaxConnections ports are in use
  }
}

std::shared_ptr<Conn> VirtioVsock::Find(uint32_t host_port, uint32_t guest_port) {
  auto it = conns_.find(uint64_t{host_port} << 32 | guest_port);
  return it == conns_.end() ? nullptr : it->second;
}

void VirtioVsock::WatchRead(const std::shared_ptr<Conn>& conn) {
  if (!conn || conn->closed || conn->read_wait || conn->readable ||
      conn->state == Conn::State::kConnecting || (conn->peer_shutdown & kShutdownRcv) ||
      conn->PeerFree() == 0) {
    return;
  }
  conn->read_wait = true;
  std::weak_ptr<VirtioVsock> weak = weak_from_this();
  conn->sock.async_wait(asio::posix::stream_descriptor::wait_read,
                        [weak, conn](const asio::error_code& ec) {
                          auto self = weak.lock();
                          if (!self) return;
                          std::lock_guard lock(self->mu_);
                          conn->read_wait = false;
                          if (ec || conn->closed) return;
                          conn->readable = true;
                          self->Schedule(*conn);
                        });
}

void VirtioVsock::WatchWrite(const std::shared_ptr<Conn>& conn) {
  if (!conn || conn->closed || conn->write_wait) return;
  conn->write_wait = true;
  std::weak_ptr<VirtioVsock> weak = weak_from_this();
  conn->sock.async_wait(asio::posix::stream_descriptor::wait_write,
                        [weak, conn](const asio::error_code& ec) {
                          auto self = weak.lock();
                          if (!self) return;
                          std::lock_guard lock(self->mu_);
                          conn->write_wait = false;
                          if (ec || conn->closed) return;
                          self->FlushToHost(*conn);
                        });
}

void VirtioVsock::ArmTimer(const std::shared_ptr<Conn>& conn) {
  if (!conn || conn->closed) return;
  conn->timer.expires_after(kPeerTimeout);
  std::weak_ptr<VirtioVsock> weak = weak_from_this();
  conn->timer.async_wait([weak, conn](const asio::error_code& ec) {
    auto self = weak.lock();
    if (!self || ec) return;
    std::lock_guard lock(self->mu_);
    if (conn->closed) return;
    if (conn->state == Conn::State::kConnecting || conn->close_when_flushed) {
      self->Kill(*conn, "the guest did not answer in time");
    }
  });
}

void VirtioVsock::WriteToHost(Conn& conn, std::span<const iovec> data) {
  if (conn.peer_shutdown & kShutdownSend) return Kill(conn, "data after SHUTDOWN");
  size_t total = 0;
  for (const iovec& v : data) total += v.iov_len;
  size_t written = 0;
  if (conn.out.empty() && total > 0) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(data.data());
    msg.msg_iovlen = data.size();
    ssize_t n = ::sendmsg(conn.sock.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return Kill(conn, "the host peer is gone (send failed)");
    }
    written = n > 0 ? static_cast<size_t>(n) : 0;
  }
  size_t skip = written;
  for (const iovec& v : data) {
    const auto* p = static_cast<const uint8_t*>(v.iov_base);
    size_t from = std::min(skip, v.iov_len);
    skip -= from;
    conn.out.insert(conn.out.end(), p + from, p + v.iov_len);
  }
  conn.fwd_cnt += static_cast<uint32_t>(written);
  if (!conn.out.empty()) WatchWrite(Find(conn.host_port, conn.guest_port));
  AfterForward(conn);
}

bool VirtioVsock::FlushToHost(Conn& conn) {
  size_t done = 0;
  while (done < conn.out.size()) {
    ssize_t n = ::send(conn.sock.native_handle(), conn.out.data() + done, conn.out.size() - done,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      Kill(conn, "the host peer is gone (send failed)");
      return false;
    }
    done += static_cast<size_t>(n);
  }
  conn.out.erase(conn.out.begin(), conn.out.begin() + static_cast<std::ptrdiff_t>(done));
  conn.fwd_cnt += static_cast<uint32_t>(done);
  if (!conn.out.empty()) WatchWrite(Find(conn.host_port, conn.guest_port));
  AfterForward(conn);
  return true;
}

// After bytes went to the host: finish a shutdown the guest asked for, tell it its credit.
void VirtioVsock::AfterForward(Conn& conn) {
  if (conn.closed) return;
  if (conn.out.empty() && conn.close_when_flushed) {
    // 5.10.6.5: both directions shut down: the connection ends with a RST from the device.
    Header guest_side = GuestSide(conn);
    Close(conn);
    return OrphanRst(guest_side);
  }
  if (conn.out.empty() && (conn.peer_shutdown & kShutdownSend)) {
    ::shutdown(conn.sock.native_handle(), SHUT_WR);
  }
  if (conn.fwd_cnt - conn.fwd_cnt_told >= kCreditUpdateAfter) {
    conn.ctl |= kCtlCreditUpdate;
    Schedule(conn);
  }
}

bool VirtioVsock::SendConnPacket(Conn& conn, const DescriptorChain& chain, uint32_t* used) {
  ChainWriter writer(chain);
  if (conn.ctl != 0) {
    uint16_t op = (conn.ctl & kCtlRequest)    ? kOpRequest
                  : (conn.ctl & kCtlResponse) ? kOpResponse
                                              : kOpCreditUpdate;
    Header h = ConnHeader(conn, op);
    conn.ctl &= ~(op == kOpRequest ? kCtlRequest : op == kOpResponse ? kCtlResponse : 0u);
    conn.ctl &= ~kCtlCreditUpdate;  // every packet carries fwd_cnt
    *used = writer.WriteObj(h) ? sizeof(Header) : 0;
    return true;
  }
  if (!conn.readable || conn.state != Conn::State::kEstablished || conn.PeerFree() == 0 ||
      (conn.peer_shutdown & kShutdownRcv)) {
    return false;
  }
  if (!writer.Skip(sizeof(Header)) || writer.remaining() == 0) {
    *used = 0;  // a buffer too small for any data: the guest's mistake
    return true;
  }
  size_t want = std::min<size_t>({conn.PeerFree(), kMaxPayload, writer.remaining()});
  std::vector<iovec> iov;
  writer.Take(want, &iov);
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  ssize_t n = ::recvmsg(conn.sock.native_handle(), &msg, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    conn.readable = false;
    WatchRead(Find(conn.host_port, conn.guest_port));
    return false;
  }
  ChainWriter head(chain);
  Header h;
  if (n > 0) {
    h = ConnHeader(conn, kOpRw);
    h.len = static_cast<uint32_t>(n);
    conn.rx_cnt += h.len;
    counters_.rx_bytes.fetch_add(h.len, std::memory_order_relaxed);
    if (static_cast<size_t>(n) < want) {  // drained: read again once the socket says so
      conn.readable = false;
      WatchRead(Find(conn.host_port, conn.guest_port));
    }
  } else if (n == 0) {
    // The host peer closed its end: it sends no more (SHUTDOWN with SEND).
    h = ConnHeader(conn, kOpShutdown);
    h.flags = kShutdownSend;
    conn.readable = false;
    conn.peer_shutdown |= kShutdownRcv;  // nothing more to read for the guest
  } else {
    h = ConnHeader(conn, kOpRst);
    counters_.resets.fetch_add(1, std::memory_order_relaxed);
    Close(conn);
  }
  head.WriteObj(h);
  *used = static_cast<uint32_t>(sizeof(Header) + std::max<ssize_t>(n, 0));
  return true;
}

void VirtioVsock::Close(Conn& conn) {
  if (conn.closed) return;
  conn.closed = true;
  asio::error_code ec;
  conn.timer.cancel();
  conn.sock.close(ec);
  conns_.erase(conn.key());
}

void VirtioVsock::Kill(Conn& conn, const char* why) {
  KITE_LOG_RATELIMITED(Info, "vsock: guest port %u <-> host port %u reset: %s", conn.guest_port,
                       conn.host_port, why);
  Header guest_side = GuestSide(conn);
  Close(conn);
  OrphanRst(guest_side);
}

void VirtioVsock::CloseAllLocked() {
  while (!conns_.empty()) Close(*conns_.begin()->second);
  while (!pending_.empty()) ClosePending(*pending_.front());
  ready_.clear();
  orphan_rsts_.clear();
}

}  // namespace kite::virtio::vsock
