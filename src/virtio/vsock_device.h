// The virtio-vsock device's insides, shared by vsock.cc (the virtqueues: packets from the
// guest, packets to the guest, the event queue, snapshot state) and vsock_host.cc (the host's
// Unix sockets: the listener, the CONNECT handshake, connections to "<uds_path>_<port>", and
// moving bytes between the sockets and the connection buffers).
//
// Threads: everything but the VirtioDevice calls made on vCPU threads runs on the event loop;
// one mutex (mu_) covers the whole device, held by every loop handler while it runs and by
// Activate/Reset/Quiesce, so when Reset returns no guest memory is touched any more (G33) and
// the sockets are closed. Handlers hold the connection they serve (shared_ptr) and check
// `closed` and the activation generation.
#pragma once

#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "virtio/vsock.h"
#include "virtio/vsock_packet.h"

namespace kite::virtio::vsock {

inline constexpr uint16_t kRxQueue = 0;
inline constexpr uint16_t kTxQueue = 1;
inline constexpr uint16_t kEventQueue = 2;
// Firecracker's limits: connections (established and pending together), how long a request
// or a shutdown may wait for the guest, and bytes per connection buffered toward the host
// (what the device advertises as buf_alloc: a guest that sends more is reset, G28).
inline constexpr size_t kMaxConnections = 1023;
inline constexpr auto kPeerTimeout = std::chrono::seconds(2);
inline constexpr uint32_t kBufAlloc = 64 * 1024;
inline constexpr uint32_t kCreditUpdateAfter = kBufAlloc / 4;  // bytes forwarded, untold
inline constexpr size_t kMaxOrphanRsts = 1024;        // RSTs for packets with no connection
inline constexpr uint32_t kFirstHostPort = 1u << 30;  // host-initiated connections' ports

// Control packets a connection owes the guest (Conn::ctl bits).
inline constexpr uint32_t kCtlRequest = 1;
inline constexpr uint32_t kCtlResponse = 2;
inline constexpr uint32_t kCtlCreditUpdate = 4;
inline constexpr uint32_t kCtlShutdown = 8;

struct Conn {
  Conn(asio::io_context& loop, int fd) : sock(loop, fd), timer(loop) {}
  enum class State { kConnecting, kEstablished, kClosing };
  uint64_t key() const { return uint64_t{host_port} << 32 | guest_port; }
  // Bytes the guest can take now: its buf_alloc less what is sent and not yet forwarded.
  uint32_t PeerFree() const {
    uint32_t in_flight = rx_cnt - peer_fwd_cnt;
    return in_flight >= peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
  }

  State state = State::kEstablished;
  uint32_t host_port = 0;
  uint32_t guest_port = 0;
  asio::posix::stream_descriptor sock;
  asio::steady_timer timer;  // kConnecting / kClosing: the guest's time to answer
  bool closed = false;
  uint32_t ctl = 0;         // kCtl* packets owed to the guest
  bool queued = false;      // in VirtioVsock::ready_
  bool readable = false;    // the host socket has bytes (or EOF) not taken yet
  bool read_wait = false;   // an async wait for readable is armed
  bool write_wait = false;  // ... for writable
  // Guest -> host.
  std::vector<uint8_t> out;         // from the guest, not yet written to the host (<= kBufAlloc)
  uint32_t fwd_cnt = 0;             // bytes from the guest written to the host
  uint32_t fwd_cnt_told = 0;        // fwd_cnt as last sent to the guest
  bool close_when_flushed = false;  // the guest shut down both ways: close once `out` is out
  // Host -> guest.
  uint32_t rx_cnt = 0;  // payload bytes sent to the guest
  uint32_t peer_buf_alloc = 0;
  uint32_t peer_fwd_cnt = 0;
  uint32_t peer_shutdown = 0;  // kShutdown* flags from the guest
};

// A host connection on the listener before its "CONNECT <port>\n" line.
struct PendingHost {
  PendingHost(asio::io_context& loop, int fd) : sock(loop, fd), timer(loop) {}
  asio::posix::stream_descriptor sock;
  asio::steady_timer timer;
  std::string line;
  bool closed = false;
};

struct Counters {
  std::atomic<uint64_t> tx_packets{0}, rx_packets{0}, tx_bytes{0}, rx_bytes{0};
  std::atomic<uint64_t> drops{0}, resets{0};
};

class VirtioVsock final : public VirtioDevice, public std::enable_shared_from_this<VirtioVsock> {
 public:
  VirtioVsock(const VsockOptions& options, asio::io_context* loop)
      : options_(options), loop_(loop), listener_(*loop), accept_retry_(*loop) {}
  ~VirtioVsock() override;

  uint32_t device_id() const override;
  uint64_t device_features() const override;
  std::vector<uint16_t> queue_max_sizes() const override;
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override;
  Result<void> Activate(ActiveQueues queues) override;
  void ProcessQueue(uint16_t index) override;
  void Reset() override;
  Result<void> Quiesce() override;
  void Unquiesce() override;
  std::vector<uint8_t> SaveDeviceState() const override;
  Result<void> RestoreDeviceState(std::span<const uint8_t> bytes) override;
  std::string name() const override { return "virtio-vsock"; }
  std::string description() const override;
  DeviceCounters counters() const override;

  // vsock_host.cc
  Result<void> Listen();
  void Accept();

 private:
  bool LiveLocked() const {
    return !quiesced_ && queues_[0] != nullptr && queues_[0]->ready() && queues_[1]->ready();
  }
  // vsock.cc: the queues.
  void Run(uint64_t generation);
  bool RunTxLocked();  // true: budget spent, more to do
  bool RunRxLocked();
  void DeliverEventLocked();
  void HandlePacket(const TxPacket& packet, ChainReader& payload);
  void HandleConnPacket(Conn& conn, const Header& hdr, ChainReader& payload);
  void HandleRw(Conn& conn, const Header& hdr, ChainReader& payload);
  bool SendConnPacket(Conn& conn, const DescriptorChain& chain, uint32_t* used);
  void Schedule(Conn& conn);  // conn owes the guest a packet: into ready_
  void PostRun();
  void OrphanRst(const Header& to_reply);
  Header ConnHeader(Conn& conn, uint16_t op);
  // A packet of `conn` as the guest would send it (what OrphanRst answers).
  Header GuestSide(const Conn& conn) const {
    Header h = HostHeader(kHostCid, conn.guest_port, conn.host_port, kOpRst);
    h.src_cid = options_.guest_cid;  // from the guest's port to the host's
    return h;
  }

  // vsock_host.cc: the host's sockets.
  void ReadConnectLine(std::shared_ptr<PendingHost> pending);
  void OnConnectLine(PendingHost& pending);
  void ClosePending(PendingHost& pending);
  void ConnectToHost(const Header& hdr);
  std::shared_ptr<Conn> AddConn(int fd, uint32_t host_port, uint32_t guest_port);
  void WatchRead(const std::shared_ptr<Conn>& conn);
  void WatchWrite(const std::shared_ptr<Conn>& conn);
  void ArmTimer(const std::shared_ptr<Conn>& conn);
  void WriteToHost(Conn& conn, std::span<const iovec> data);
  bool FlushToHost(Conn& conn);  // false: the host end failed and conn is gone
  void AfterForward(Conn& conn);
  void Close(Conn& conn);                  // host socket closed, forgotten, no packet
  void Kill(Conn& conn, const char* why);  // Close, then RST to the guest
  std::shared_ptr<Conn> Find(uint32_t host_port, uint32_t guest_port);
  uint32_t NextHostPort();
  size_t ConnectionCount() const { return conns_.size() + pending_.size(); }
  void CloseAllLocked();

  const VsockOptions options_;
  asio::io_context* const loop_;
  asio::posix::stream_descriptor listener_;
  asio::steady_timer accept_retry_;  // accept failed for want of descriptors
  bool owns_path_ = false;
  std::mutex mu_;
  uint64_t generation_ = 0;
  bool quiesced_ = false;
  bool run_posted_ = false;
  bool reset_event_pending_ = false;  // restored: tell the guest its connections are gone
  ActiveQueues active_;
  Queue* queues_[3] = {nullptr, nullptr, nullptr};  // while live and not broken
  DescriptorChain chain_;
  std::map<uint64_t, std::shared_ptr<Conn>> conns_;
  std::vector<std::shared_ptr<PendingHost>> pending_;
  std::deque<std::shared_ptr<Conn>> ready_;  // connections owing the guest a packet
  std::deque<Header> orphan_rsts_;
  uint32_t next_host_port_ = kFirstHostPort;
  Counters counters_;
};

}  // namespace kite::virtio::vsock
