// virtio-vsock, the virtqueue side (virtio 1.2 section 5.10): device id 19, three queues (rx,
// tx, event), configuration space = le64 guest_cid. The host side (Unix sockets) is in
// vsock_host.cc; the shared class and the limits in vsock_device.h; docs/VSOCK.md describes
// the whole device.
//
// Flow: a kick on tx pops every packet, checks it (ParseTxPacket: BAD_INPUTS G26) and acts on
// it — opens, answers, feeds or closes a connection — and returns the chain with used length 0.
// Packets the device owes the guest (RESPONSE, REQUEST, CREDIT_UPDATE, SHUTDOWN, data read
// from a host socket, RSTs) wait in a queue of connections (ready_) and a queue of RSTs for
// packets that had no connection; a kick on rx, a readable socket or new work fills rx
// buffers from them round-robin, one packet per connection per turn, so a busy connection
// never starves another. A run does at most kBudget packets per queue, then posts the rest.
//
// Credit (5.10.6.3): the device advertises buf_alloc = kBufAlloc and fwd_cnt = bytes written
// to the host; it sends a connection's data only while the guest's buf_alloc and fwd_cnt
// leave room (Conn::PeerFree), and reads a host socket only then. A guest that sends more
// than the device's free space is reset (G28).
//
// Snapshot: the device state is a version byte and the guest CID. Host connections cannot be
// saved (the peers are other processes): a restored device starts with none and, once the
// driver gives it an event buffer, sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET so the guest
// drops its sockets (Firecracker does the same).
#include <asio/post.hpp>
#include <cstring>

#include "base/log.h"
#include "virtio/virtio_spec.h"
#include "virtio/vsock_device.h"

namespace kite::virtio {
namespace vsock {
namespace {

constexpr uint32_t kDeviceIdVsock = 19;
constexpr uint16_t kQueueSize = 256;
constexpr uint16_t kEventQueueSize = 16;
constexpr int kBudget = 256;
constexpr uint8_t kStateVersion = 1;

}  // namespace

uint32_t VirtioVsock::device_id() const {
  return kDeviceIdVsock;
}

uint64_t VirtioVsock::device_features() const {
  return FeatureBit(kFeatureVersion1) | FeatureBit(kFeatureIndirectDesc) |
         FeatureBit(kFeatureEventIdx);
}

std::vector<uint16_t> VirtioVsock::queue_max_sizes() const {
  return {kQueueSize, kQueueSize, kEventQueueSize};
}

// 5.10.4: struct virtio_vsock_config { le64 guest_cid; }.
void VirtioVsock::ReadConfig(uint64_t offset, std::span<uint8_t> data) {
  uint8_t config[8];
  std::memcpy(config, &options_.guest_cid, sizeof(config));
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < sizeof(config) ? config[offset + i] : 0;
  }
}

std::string VirtioVsock::description() const {
  return "vsock: cid " + std::to_string(options_.guest_cid) + ", " + options_.uds_path;
}

Result<void> VirtioVsock::Activate(ActiveQueues queues) {
  if (queues.queues.size() != 3 || queues.memory == nullptr) {
    return Err("virtio-vsock: expected three queues and guest memory");
  }
  std::lock_guard lock(mu_);
  ++generation_;
  active_ = std::move(queues);
  for (int i = 0; i < 3; ++i) queues_[i] = active_.queues[i];
  return {};
}

void VirtioVsock::Reset() {
  std::lock_guard lock(mu_);
  ++generation_;
  CloseAllLocked();
  for (Queue*& q : queues_) q = nullptr;
  active_ = ActiveQueues{};
}

// A run holds mu_ from its first Pop to its last PushUsed: once mu_ is ours nothing is in
// flight. Host sockets keep their bytes in the kernel meanwhile; timers may still reset
// connections (that only queues RSTs).
Result<void> VirtioVsock::Quiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = true;
  return {};
}

void VirtioVsock::Unquiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = false;
}

std::vector<uint8_t> VirtioVsock::SaveDeviceState() const {
  std::vector<uint8_t> out(1 + sizeof(uint64_t));
  out[0] = kStateVersion;
  std::memcpy(out.data() + 1, &options_.guest_cid, sizeof(uint64_t));
  return out;
}

Result<void> VirtioVsock::RestoreDeviceState(std::span<const uint8_t> bytes) {
  if (bytes.size() != 1 + sizeof(uint64_t) || bytes[0] != kStateVersion) {
    return Err("virtio-vsock: device state is not version 1 (9 bytes)");
  }
  uint64_t cid;
  std::memcpy(&cid, bytes.data() + 1, sizeof(cid));
  if (cid != options_.guest_cid) {
    return Err("virtio-vsock: the snapshot's guest CID " + std::to_string(cid) +
               " is not this device's " + std::to_string(options_.guest_cid));
  }
  std::lock_guard lock(mu_);
  reset_event_pending_ = true;
  return {};
}

DeviceCounters VirtioVsock::counters() const {
  DeviceCounters c;
  c.requests = counters_.tx_packets.load() + counters_.rx_packets.load();
  c.bytes_written = counters_.tx_bytes.load();
  c.bytes_read = counters_.rx_bytes.load();
  c.drops = counters_.drops.load();
  c.errors = counters_.resets.load();
  return c;
}

void VirtioVsock::ProcessQueue(uint16_t index) {
  if (index > kEventQueue) return;
  uint64_t generation;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
  }
  Run(generation);
}

void VirtioVsock::PostRun() {
  if (run_posted_) return;
  run_posted_ = true;
  std::weak_ptr<VirtioVsock> weak = weak_from_this();
  asio::post(*loop_, [weak, generation = generation_] {
    if (auto self = weak.lock()) {
      {
        std::lock_guard lock(self->mu_);
        self->run_posted_ = false;
      }
      self->Run(generation);
    }
  });
}

void VirtioVsock::Run(uint64_t generation) {
  std::function<void(const std::string&)> mark_broken;
  {
    std::lock_guard lock(mu_);
    if (generation != generation_ || !LiveLocked()) return;
    DeliverEventLocked();
    bool more = RunTxLocked();
    more |= RunRxLocked();
    if (queues_[kTxQueue]->broken() || queues_[kRxQueue]->broken() ||
        (queues_[kEventQueue] != nullptr && queues_[kEventQueue]->broken())) {
      mark_broken = active_.mark_broken;
      CloseAllLocked();
      for (Queue*& q : queues_) q = nullptr;
    } else if (more) {
      PostRun();
    }
  }
  if (mark_broken) mark_broken("malformed available ring");
}

// 5.10.6.7: the driver keeps the event queue filled; one event per restore.
void VirtioVsock::DeliverEventLocked() {
  Queue* q = queues_[kEventQueue];
  if (!reset_event_pending_ || q == nullptr || !q->ready()) return;
  if (q->Pop(&chain_) != Queue::PopResult::kChain) return;
  ChainWriter writer(chain_);
  uint32_t id = kEventTransportReset;
  bool wrote = writer.WriteObj(id);
  q->PushUsed(chain_.head(), wrote ? sizeof(id) : 0);
  if (wrote) reset_event_pending_ = false;
  if (active_.signal_used) active_.signal_used(kEventQueue);
}

bool VirtioVsock::RunTxLocked() {
  Queue* q = queues_[kTxQueue];
  int done = 0;
  for (; done < kBudget; ++done) {
    Queue::PopResult pop = q->Pop(&chain_);
    if (pop != Queue::PopResult::kChain) break;
    counters_.tx_packets.fetch_add(1, std::memory_order_relaxed);
    TxPacket packet = ParseTxPacket(chain_.readable(), options_.guest_cid);
    ChainReader payload(chain_);
    payload.Skip(sizeof(Header));
    HandlePacket(packet, payload);
    // 5.10.6.2: the device returns tx buffers with nothing written.
    q->PushUsed(chain_.head(), 0);
  }
  if (done > 0 && active_.signal_used) active_.signal_used(kTxQueue);
  return done == kBudget;
}

void VirtioVsock::HandlePacket(const TxPacket& packet, ChainReader& payload) {
  const Header& hdr = packet.hdr;
  if (packet.verdict != TxVerdict::kOk) {
    counters_.drops.fetch_add(1, std::memory_order_relaxed);
    KITE_LOG_RATELIMITED(Warn, "virtio-vsock: packet dropped: %s (op %u, len %u)",
                         TxVerdictName(packet.verdict), hdr.op, hdr.len);
    // A spoofed or truncated header names no connection of this guest: nothing to answer.
    if (packet.verdict == TxVerdict::kShortHeader || packet.verdict == TxVerdict::kSpoofedCid) {
      return;
    }
    if (auto conn = hdr.dst_cid == kHostCid ? Find(hdr.dst_port, hdr.src_port) : nullptr) {
      return Kill(*conn, TxVerdictName(packet.verdict));
    }
    if (hdr.op != kOpRst) OrphanRst(hdr);
    return;
  }
  std::shared_ptr<Conn> conn = Find(hdr.dst_port, hdr.src_port);
  if (conn) return HandleConnPacket(*conn, hdr, payload);
  if (hdr.op == kOpRequest) return ConnectToHost(hdr);
  // 5.10.6.4: a packet for no connection gets a RST (but a RST is never answered).
  if (hdr.op != kOpRst) OrphanRst(hdr);
}

void VirtioVsock::HandleConnPacket(Conn& conn, const Header& hdr, ChainReader& payload) {
  conn.peer_buf_alloc = hdr.buf_alloc;
  conn.peer_fwd_cnt = hdr.fwd_cnt;
  switch (hdr.op) {
    case kOpRequest:  // a second request on a live connection
      return Kill(conn, "REQUEST on an open connection");
    case kOpRst:
      return Close(conn);
    case kOpResponse:
      if (conn.state != Conn::State::kConnecting) return Kill(conn, "unexpected RESPONSE");
      {
        std::string ok = "OK " + std::to_string(conn.host_port) + "\n";
        ssize_t n =
            ::send(conn.sock.native_handle(), ok.data(), ok.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n != static_cast<ssize_t>(ok.size())) return Kill(conn, "the host peer went away");
      }
      conn.state = Conn::State::kEstablished;
      conn.timer.cancel();
      break;
    case kOpRw:
      return HandleRw(conn, hdr, payload);
    case kOpShutdown:
      conn.peer_shutdown |= hdr.flags & (kShutdownRcv | kShutdownSend);
      if (conn.peer_shutdown == (kShutdownRcv | kShutdownSend)) {
        conn.close_when_flushed = true;  // 5.10.6.5: answered with RST once flushed
        ArmTimer(Find(conn.host_port, conn.guest_port));
      }
      AfterForward(conn);
      return;
    case kOpCreditRequest:
      conn.ctl |= kCtlCreditUpdate;
      break;
    case kOpCreditUpdate:
      break;
  }
  if (conn.state != Conn::State::kConnecting && !conn.closed) {
    WatchRead(Find(conn.host_port, conn.guest_port));
    Schedule(conn);
  }
}

void VirtioVsock::HandleRw(Conn& conn, const Header& hdr, ChainReader& payload) {
  if (conn.state == Conn::State::kConnecting) return Kill(conn, "data before RESPONSE");
  // G28: the guest may send only what the last buf_alloc/fwd_cnt it saw left free.
  if (conn.out.size() + hdr.len > kBufAlloc) {
    return Kill(conn, "the guest ignored its credit");
  }
  std::vector<iovec> data;
  if (!payload.Take(hdr.len, &data)) return Kill(conn, "short payload");
  counters_.tx_bytes.fetch_add(hdr.len, std::memory_order_relaxed);
  WriteToHost(conn, data);
}

void VirtioVsock::OrphanRst(const Header& to) {
  counters_.resets.fetch_add(1, std::memory_order_relaxed);
  if (orphan_rsts_.size() >= kMaxOrphanRsts) {
    counters_.drops.fetch_add(1, std::memory_order_relaxed);
    return;  // the guest's connect or send times out instead
  }
  Header rst = HostHeader(options_.guest_cid, to.dst_port, to.src_port, kOpRst);
  rst.src_cid = to.dst_cid;
  orphan_rsts_.push_back(rst);
  PostRun();
}

void VirtioVsock::Schedule(Conn& conn) {
  if (conn.queued || conn.closed) return;
  bool data = conn.readable && conn.state == Conn::State::kEstablished && conn.PeerFree() > 0 &&
              !(conn.peer_shutdown & kShutdownRcv);
  if (conn.ctl == 0 && !data) return;
  conn.queued = true;
  ready_.push_back(Find(conn.host_port, conn.guest_port));
  PostRun();
}

Header VirtioVsock::ConnHeader(Conn& conn, uint16_t op) {
  Header h = HostHeader(options_.guest_cid, conn.host_port, conn.guest_port, op);
  h.buf_alloc = kBufAlloc;
  h.fwd_cnt = conn.fwd_cnt;
  conn.fwd_cnt_told = conn.fwd_cnt;
  return h;
}

bool VirtioVsock::RunRxLocked() {
  Queue* q = queues_[kRxQueue];
  int done = 0;
  for (;;) {
    while (!ready_.empty() && ready_.front()->closed) ready_.pop_front();
    if (done == kBudget || (orphan_rsts_.empty() && ready_.empty())) break;
    Queue::PopResult pop = q->Pop(&chain_);
    if (pop != Queue::PopResult::kChain) break;  // no buffer: the driver's next kick
    ChainWriter writer(chain_);
    uint32_t used = 0;
    if (!orphan_rsts_.empty()) {
      // A buffer too small for a header loses the packet (counted below): the guest's bug.
      if (writer.WriteObj(orphan_rsts_.front())) used = sizeof(Header);
      orphan_rsts_.pop_front();
    } else {
      std::shared_ptr<Conn> conn = std::move(ready_.front());
      ready_.pop_front();
      conn->queued = false;
      if (!SendConnPacket(*conn, chain_, &used)) {
        // Nothing to send after all (the socket had nothing): the buffer goes back.
        if (q->Unpop(1)) continue;
      }
      Schedule(*conn);
    }
    if (used == 0) counters_.drops.fetch_add(1, std::memory_order_relaxed);
    counters_.rx_packets.fetch_add(1, std::memory_order_relaxed);
    q->PushUsed(chain_.head(), used);
    ++done;
  }
  if (done > 0 && active_.signal_used) active_.signal_used(kRxQueue);
  return done == kBudget;
}

}  // namespace vsock

Result<std::shared_ptr<VirtioDevice>> CreateVirtioVsock(const VsockOptions& options,
                                                        asio::io_context* loop) {
  if (loop == nullptr) return Err("virtio-vsock: no event loop");
  TRY(CheckGuestCid(options.guest_cid));
  auto device = std::make_shared<vsock::VirtioVsock>(options, loop);
  TRY_CTX(device->Listen(), "vsock " + options.uds_path);
  device->Accept();
  return std::shared_ptr<VirtioDevice>(std::move(device));
}

}  // namespace kite::virtio
