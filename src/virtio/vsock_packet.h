// The virtio-vsock wire format (virtio 1.2 section 5.10) and the checks every packet from the
// driver goes through before the device acts on it. ParseTxPacket is pure (no device state):
// unit-tested on its own and a fuzz target's seam.
#pragma once

#include <cstdint>
#include <span>

#include "virtio/queue.h"

namespace kite::virtio::vsock {

inline constexpr uint64_t kHostCid = 2;  // VMADDR_CID_HOST

// 5.10.6 Device Operation.
inline constexpr uint16_t kTypeStream = 1;  // VIRTIO_VSOCK_TYPE_STREAM (SEQPACKET not offered)
enum Op : uint16_t {
  kOpInvalid = 0,
  kOpRequest = 1,
  kOpResponse = 2,
  kOpRst = 3,
  kOpShutdown = 4,
  kOpRw = 5,
  kOpCreditUpdate = 6,
  kOpCreditRequest = 7,
};
inline constexpr uint32_t kShutdownRcv = 1;   // VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE
inline constexpr uint32_t kShutdownSend = 2;  // VIRTIO_VSOCK_SHUTDOWN_F_SEND
// 5.10.6.7 Device Events.
inline constexpr uint32_t kEventTransportReset = 0;  // VIRTIO_VSOCK_EVENT_TRANSPORT_RESET

// The largest payload of one packet either way (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
inline constexpr uint32_t kMaxPayload = 64 * 1024;

// struct virtio_vsock_hdr, little-endian (kite runs on x86_64 only).
struct __attribute__((packed)) Header {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};
static_assert(sizeof(Header) == 44);

// What is wrong with a packet from the driver (BAD_INPUTS G26).
enum class TxVerdict {
  kOk,
  kShortHeader,  // fewer readable bytes than a header: dropped
  kSpoofedCid,   // src_cid is not the guest's: dropped
  kTooLong,      // len > kMaxPayload: RST
  kBeyondChain,  // len > the readable bytes after the header: RST
  kNotHost,      // dst_cid is not the host: RST
  kBadType,      // not a stream packet: RST
  kBadOp,        // unknown op (or INVALID): RST
};
const char* TxVerdictName(TxVerdict verdict);

struct TxPacket {
  Header hdr{};
  TxVerdict verdict = TxVerdict::kShortHeader;
};

// Reads the header from the start of `readable` and checks it against the guest's CID. The
// payload (hdr.len bytes) follows the header in the same byte stream.
TxPacket ParseTxPacket(std::span<const iovec> readable, uint64_t guest_cid);

// A header from the host (src) to the guest (dst).
Header HostHeader(uint64_t guest_cid, uint32_t host_port, uint32_t guest_port, uint16_t op);

}  // namespace kite::virtio::vsock
