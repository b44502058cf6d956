// virtio-vsock packet checks: see vsock_packet.h.
#include "virtio/vsock_packet.h"

namespace kite::virtio::vsock {

const char* TxVerdictName(TxVerdict verdict) {
  switch (verdict) {
    case TxVerdict::kOk:
      return "ok";
    case TxVerdict::kShortHeader:
      return "shorter than a header";
    case TxVerdict::kSpoofedCid:
      return "src_cid is not the guest's";
    case TxVerdict::kTooLong:
      return "len over 64 KiB";
    case TxVerdict::kBeyondChain:
      return "len beyond the buffers";
    case TxVerdict::kNotHost:
      return "dst_cid is not the host";
    case TxVerdict::kBadType:
      return "not a stream packet";
    case TxVerdict::kBadOp:
      return "unknown op";
  }
  return "?";
}

TxPacket ParseTxPacket(std::span<const iovec> readable, uint64_t guest_cid) {
  TxPacket out;
  ChainReader reader(readable);
  if (!reader.ReadObj(&out.hdr)) return out;  // kShortHeader
  const Header& h = out.hdr;
  if (h.src_cid != guest_cid) {
    out.verdict = TxVerdict::kSpoofedCid;
  } else if (h.len > kMaxPayload) {
    out.verdict = TxVerdict::kTooLong;
  } else if (h.len > reader.remaining()) {
    out.verdict = TxVerdict::kBeyondChain;
  } else if (h.dst_cid != kHostCid) {
    out.verdict = TxVerdict::kNotHost;
  } else if (h.type != kTypeStream) {
    out.verdict = TxVerdict::kBadType;
  } else if (h.op < kOpRequest || h.op > kOpCreditRequest) {
    out.verdict = TxVerdict::kBadOp;
  } else {
    out.verdict = TxVerdict::kOk;
  }
  return out;
}

Header HostHeader(uint64_t guest_cid, uint32_t host_port, uint32_t guest_port, uint16_t op) {
  Header h{};
  h.src_cid = kHostCid;
  h.dst_cid = guest_cid;
  h.src_port = host_port;
  h.dst_port = guest_port;
  h.type = kTypeStream;
  h.op = op;
  return h;
}

}  // namespace kite::virtio::vsock
