// NetBackend: where a virtio-net device's frames go and come from.
//
//   tap   — a Linux tap interface (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR): an existing interface
//           opened by name, or created by kite when it has CAP_NET_ADMIN. Frames carry the
//           12-byte virtio-net header, so checksum and TSO offloads pass straight through.
//   user  — user-mode NAT on libslirp: no privileges, a 10.0.2.0/24 network with the host at
//           10.0.2.2, DHCP and DNS, and host port forwarding (hostfwd=tcp::2222-:22).
//   dgram, stream — a link to another VM over a Unix socket (socket_backend.cc).
//
// Everything runs on the event loop thread.
#pragma once

#include <sys/uio.h>

#include <asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kite::virtio {

struct NetBackendCounters {
  uint64_t tx_frames = 0;
  uint64_t rx_frames = 0;
  uint64_t tx_errors = 0;
  uint64_t rx_drops = 0;
};

class NetBackend {
 public:
  virtual ~NetBackend() = default;

  // Whether frames in both directions start with a virtio_net_hdr (virtio_spec.h net::Header,
  // 12 bytes). Without one the device strips the header on TX and prepends a zero one on RX.
  virtual bool has_vnet_header() const = 0;
  // Offloads the backend can take from the guest (virtio-net feature bits, net::kFeature*).
  virtual uint64_t offload_features() const = 0;
  // Tells the backend which offloads the driver negotiated (tap: TUNSETOFFLOAD).
  virtual Result<void> SetOffloads(uint64_t negotiated_features) = 0;

  // Sends one frame gathered from `iov`. false: the backend cannot take it now (full); the
  // device keeps the frame and retries when `on_writable` fires. Errors drop the frame.
  virtual Result<bool> Send(std::span<const iovec> iov) = 0;

  // Starts delivering received frames: `on_frame` is called on the loop with one whole frame
  // (with the vnet header when has_vnet_header()). It returns false when the guest has no
  // room: the backend then holds the frame and stops reading until ResumeReceive().
  using FrameSink = std::function<bool(std::span<const uint8_t> frame)>;
  virtual void StartReceive(FrameSink on_frame, std::function<void()> on_writable) = 0;
  virtual void ResumeReceive() = 0;
  virtual void Stop() = 0;

  // --- Direct receive (optional; the tap has it) ---
  // A backend that can read one frame at a time into buffers the caller names returns true;
  // the device then calls StartDirectReceive instead of StartReceive and reads every frame
  // itself with ReadFrame, straight into guest memory (no host buffer, no second copy).
  virtual bool can_read_direct() const { return false; }
  // `on_readable` is called on the loop when frames may be waiting (also once at the start).
  // The caller then calls ReadFrame until it returns nullopt; it may stop earlier and call
  // ReadFrame again later without waiting (the backend only waits after nullopt).
  virtual void StartDirectReceive(std::function<void()> on_readable,
                                  std::function<void()> on_writable) {
    (void)on_readable;
    (void)on_writable;
  }
  // Reads the next frame (vnet header included when has_vnet_header()) into `iov`
  // (at most IOV_MAX pieces) and returns its length. A frame longer than the iovecs is cut:
  // the tap then returns the iovecs' total and says nothing more (a socketpair end returns the
  // whole length), so callers offer more room than the largest frame (net::kMaxFrameWithHeader)
  // and drop a read that fills all of it. nullopt: no frame waiting (the backend now waits and
  // calls on_readable). An error: the backend cannot deliver any more (the interface is gone,
  // F7).
  virtual Result<std::optional<size_t>> ReadFrame(std::span<const iovec> iov) {
    (void)iov;
    return Err("this network backend has no direct receive");
  }

  // Multiqueue: whether the kernel hands this queue frames (tap: TUNSETQUEUE attach/detach).
  // A detached queue reads nothing and is not waited on. On the loop.
  virtual Result<void> SetQueueEnabled(bool enabled) {
    (void)enabled;
    return {};
  }

  virtual std::string description() const = 0;  // "tap kite0", "user (slirp) 10.0.2.15/24"
  virtual NetBackendCounters counters() const = 0;
};

struct TapOptions {
  std::string name;  // interface name; created when missing and permitted
  // A bridge to attach the tap to (SIOCBRADDIF). The tap must be new: kite makes it (the
  // kernel names it when `name` is empty), and it leaves the bridge when kite closes it.
  std::string bridge;
  // Queues (IFF_MULTI_QUEUE when more than one): one backend each, for virtio-net's pairs.
  uint32_t queues = 1;
};
Result<std::unique_ptr<NetBackend>> OpenTapBackend(const TapOptions& options,
                                                   asio::io_context* loop);
Result<std::vector<std::unique_ptr<NetBackend>>> OpenTapQueues(const TapOptions& options,
                                                               asio::io_context* loop);
// A tap backend over an fd that is already open (ownership passes to it) and carries one frame
// per read/write with a 12-byte vnet header: for tests, one end of a non-blocking
// SOCK_SEQPACKET socketpair. No ioctl is made on it (SetOffloads does nothing); `offloads` is
// what offload_features() reports.
Result<std::unique_ptr<NetBackend>> OpenTapBackendOnFd(int fd, const std::string& name,
                                                       uint64_t offloads, asio::io_context* loop);

// A link on a Unix socket (socket_backend.cc), QEMU's -netdev dgram / stream.
enum class SocketNetKind { kDgram, kStreamServer, kStreamClient };
struct SocketNetOptions {
  SocketNetKind kind = SocketNetKind::kDgram;
  std::string path;    // dgram: the local socket (bound); stream: the listening socket
  std::string remote;  // dgram: where frames are sent
};
Result<std::unique_ptr<NetBackend>> OpenSocketBackend(const SocketNetOptions& options,
                                                      asio::io_context* loop);

struct HostForward {
  bool udp = false;
  std::string host_addr;  // empty: 127.0.0.1
  uint16_t host_port = 0;
  std::string guest_addr;  // empty: the DHCP address (10.0.2.15)
  uint16_t guest_port = 0;
};
// "tcp::2222-:22", "udp:127.0.0.1:5555-10.0.2.15:5555" (QEMU's hostfwd syntax).
Result<HostForward> ParseHostForward(const std::string& text);

struct UserNetOptions {
  std::vector<HostForward> forwards;
};
Result<std::unique_ptr<NetBackend>> OpenUserBackend(const UserNetOptions& options,
                                                    asio::io_context* loop);

}  // namespace kite::virtio
