// libFuzzer target for the checks every virtio-vsock packet from the driver goes through
// (src/virtio/vsock_packet.cc, BAD_INPUTS G26): a guest CID, then a tx chain's readable bytes
// split into up to 16 descriptors, through ParseTxPacket; for an accepted packet its payload
// is taken as the device takes it (ChainReader Skip, then Take of hdr.len bytes). The device's
// connection state machine (vsock.cc, vsock_host.cc) needs Unix sockets and an event loop and
// is not driven here. Checks beyond the sanitizers:
//   - the verdict is the first failed check in the documented order, and every check is
//     right: a packet whose src_cid is not the guest's is dropped (never answered with an RST
//     that would go to another CID) whatever else is wrong with it; an accepted packet comes
//     from the guest, goes to the host, is a stream packet with a known op, and its len is
//     within kMaxPayload and within the bytes after the header;
//   - the header is the chain's first 44 bytes, and neither it nor the verdict depend on how
//     the bytes are split into descriptors;
//   - an accepted packet's payload is exactly the hdr.len bytes after the header;
//   - a reply header the device builds (HostHeader), seen from the guest's side as the device
//     itself checks packets, passes the checks (the device never speaks a packet it refuses).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "fuzz_iovecs.h"
#include "virtio/queue.h"
#include "virtio/vsock_cid.h"
#include "virtio/vsock_packet.h"

namespace {

using namespace kite::virtio::vsock;

// The verdict the header's checks give, in the order vsock_packet.h lists them.
TxVerdict Expected(const Header& h, size_t payload_bytes, uint64_t guest_cid) {
  if (h.src_cid != guest_cid) return TxVerdict::kSpoofedCid;
  if (h.len > kMaxPayload) return TxVerdict::kTooLong;
  if (h.len > payload_bytes) return TxVerdict::kBeyondChain;
  if (h.dst_cid != kHostCid) return TxVerdict::kNotHost;
  if (h.type != kTypeStream) return TxVerdict::kBadType;
  if (h.op < kOpRequest || h.op > kOpCreditRequest) return TxVerdict::kBadOp;
  return TxVerdict::kOk;
}

bool SameHeader(const Header& a, const Header& b) {
  return std::memcmp(&a, &b, sizeof(Header)) == 0;
}

// hdr.len bytes after the header, taken as the device takes them, equal the stream's.
void CheckPayload(const kite::fuzz::FuzzIovecs& chain, const Header& hdr) {
  kite::virtio::ChainReader reader(chain.iov);
  if (!reader.Skip(sizeof(Header))) std::abort();
  std::vector<iovec> data;
  if (!reader.Take(hdr.len, &data)) std::abort();
  size_t at = sizeof(Header);
  for (const iovec& v : data) {
    if (v.iov_len > hdr.len || at + v.iov_len > sizeof(Header) + hdr.len) std::abort();
    if (v.iov_len != 0 && std::memcmp(v.iov_base, chain.flat.data() + at, v.iov_len) != 0) {
      std::abort();
    }
    at += v.iov_len;
  }
  if (at != sizeof(Header) + hdr.len) std::abort();
  if (reader.remaining() != chain.flat.size() - at) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const uint64_t guest_cid = in.ConsumeIntegralInRange<uint64_t>(3, 0xfffffffe);
  if (!kite::virtio::CheckGuestCid(guest_cid)) std::abort();
  const kite::fuzz::FuzzIovecs chain = kite::fuzz::ConsumeIovecs(in, 16, 128);

  const TxPacket packet = ParseTxPacket(chain.iov, guest_cid);
  if (std::strcmp(TxVerdictName(packet.verdict), "?") == 0) std::abort();
  if (chain.flat.size() < sizeof(Header)) {
    if (packet.verdict != TxVerdict::kShortHeader) std::abort();
    return 0;
  }
  Header expected_hdr;
  std::memcpy(&expected_hdr, chain.flat.data(), sizeof(Header));
  if (!SameHeader(packet.hdr, expected_hdr)) std::abort();
  const size_t payload_bytes = chain.flat.size() - sizeof(Header);
  if (packet.verdict != Expected(packet.hdr, payload_bytes, guest_cid)) std::abort();

  // The same bytes in one descriptor.
  const iovec whole{const_cast<uint8_t*>(chain.flat.data()), chain.flat.size()};
  const TxPacket again = ParseTxPacket({&whole, 1}, guest_cid);
  if (again.verdict != packet.verdict || !SameHeader(again.hdr, packet.hdr)) std::abort();

  if (packet.verdict == TxVerdict::kOk) {
    const Header& h = packet.hdr;
    if (h.src_cid != guest_cid || h.dst_cid != kHostCid || h.type != kTypeStream) std::abort();
    if (h.len > kMaxPayload || h.len > payload_bytes) std::abort();
    CheckPayload(chain, h);
  }

  // The device's answer to this packet (as OrphanRst or a connection builds it), turned round
  // to the guest's side: a well-formed packet.
  for (uint16_t op = kOpRequest; op <= kOpCreditRequest; ++op) {
    Header reply = HostHeader(guest_cid, packet.hdr.dst_port, packet.hdr.src_port, op);
    if (reply.src_cid != kHostCid || reply.dst_cid != guest_cid || reply.len != 0) std::abort();
    std::swap(reply.src_cid, reply.dst_cid);
    const iovec one{&reply, sizeof(reply)};
    if (ParseTxPacket({&one, 1}, guest_cid).verdict != TxVerdict::kOk) std::abort();
  }
  return 0;
}
