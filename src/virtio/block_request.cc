// ParseBlockRequest: one virtio-blk chain → a disk request, an immediate status, or a
// rejection (virtio 1.2 section 5.2.6; BAD_INPUTS G15-G21). See block_request.h.
//
// Which answer for which fault, and why:
//   * No 16-byte header in the readable part, or no writable byte for the status (header in a
//     write-only descriptor, status in a read-only one or of length 0, header-only chain):
//     there is nowhere to put a status, so the chain is rejected (used length 0), G18.
//   * Unknown type, a type whose feature was not negotiated, DISCARD with the UNMAP flag
//     (5.2.6.2: the device MUST answer UNSUPP), flags we do not know, more segments than
//     max_discard_seg: UNSUPP (G20) — the request is well formed, we just do not do it.
//   * Anything the device does but not as asked: data not a multiple of 512 (G17), a range
//     past the capacity or sector 2^64-1 (G16), a write/discard/write-zeroes on a read-only
//     disk (G19, checked before anything is submitted, so no byte is written), more than
//     seg_max data segments, a segment longer than max_*_sectors (as QEMU), a GET_ID buffer
//     smaller than 20 bytes (G21): IOERR.
#include "virtio/block_request.h"

#include "virtio/queue.h"

namespace kite::virtio {
namespace {

using storage::DiskOp;

constexpr uint32_t kSectorShift = 9;

// True when [sector, sector + sectors) lies within the disk (overflow-safe).
bool InRange(uint64_t sector, uint64_t sectors, uint64_t capacity) {
  return sector <= capacity && sectors <= capacity - sector;
}

// The last writable byte: where the status goes. Null when there is none.
uint8_t* StatusByte(std::span<const iovec> writable) {
  for (size_t i = writable.size(); i-- > 0;) {
    if (writable[i].iov_len != 0) {
      return static_cast<uint8_t*>(writable[i].iov_base) + writable[i].iov_len - 1;
    }
  }
  return nullptr;
}

void Answer(BlockRequest* out, uint8_t status) {
  out->action = BlockAction::kComplete;
  out->status = status;
}

// IN: the writable part before the status byte receives the data.
void ParseRead(uint64_t sector, std::span<const iovec> writable, size_t data_len,
               const BlockLimits& limits, BlockRequest* out) {
  if (data_len % blk::kSectorSize != 0) return Answer(out, blk::kStatusIoErr);
  if (!InRange(sector, data_len >> kSectorShift, limits.capacity_sectors)) {
    return Answer(out, blk::kStatusIoErr);
  }
  if (data_len == 0) return Answer(out, blk::kStatusOk);
  ChainWriter writer(writable);
  if (!writer.Take(data_len, &out->disk.iov) || out->disk.iov.size() > limits.seg_max) {
    out->disk.iov.clear();
    return Answer(out, blk::kStatusIoErr);
  }
  out->action = BlockAction::kDisk;
  out->disk.op = DiskOp::kRead;
  out->disk.offset = sector << kSectorShift;
  out->used_len_ok = static_cast<uint32_t>(data_len) + 1;
}

// OUT: the readable part after the header holds the data.
void ParseWrite(uint64_t sector, ChainReader& reader, const BlockLimits& limits,
                BlockRequest* out) {
  size_t data_len = reader.remaining();
  if (limits.read_only) return Answer(out, blk::kStatusIoErr);
  if (data_len % blk::kSectorSize != 0) return Answer(out, blk::kStatusIoErr);
  if (!InRange(sector, data_len >> kSectorShift, limits.capacity_sectors)) {
    return Answer(out, blk::kStatusIoErr);
  }
  if (data_len == 0) return Answer(out, blk::kStatusOk);
  if (!reader.Take(data_len, &out->disk.iov) || out->disk.iov.size() > limits.seg_max) {
    out->disk.iov.clear();
    return Answer(out, blk::kStatusIoErr);
  }
  out->action = BlockAction::kDisk;
  out->disk.op = DiskOp::kWrite;
  out->disk.offset = sector << kSectorShift;
}

// DISCARD and WRITE_ZEROES: one or more 16-byte segments after the header (5.2.6).
void ParseDiscardWriteZeroes(uint32_t type, ChainReader& reader, const BlockLimits& limits,
                             BlockRequest* out) {
  bool discard = type == blk::kTypeDiscard;
  if (!(discard ? limits.discard : limits.write_zeroes)) return Answer(out, blk::kStatusUnsupp);
  if (limits.read_only) return Answer(out, blk::kStatusIoErr);
  size_t bytes = reader.remaining();
  constexpr size_t kSegBytes = sizeof(blk::DiscardWriteZeroes);
  if (bytes == 0 || bytes % kSegBytes != 0) return Answer(out, blk::kStatusIoErr);
  if (bytes / kSegBytes > limits.max_discard_seg) return Answer(out, blk::kStatusUnsupp);
  blk::DiscardWriteZeroes seg;
  if (!reader.ReadObj(&seg)) return Answer(out, blk::kStatusIoErr);
  uint32_t known_flags = discard ? 0 : blk::kWriteZeroesFlagUnmap;
  if ((seg.flags & ~known_flags) != 0) return Answer(out, blk::kStatusUnsupp);
  uint32_t max = discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors;
  if (seg.num_sectors > max) return Answer(out, blk::kStatusIoErr);
  if (!InRange(seg.sector, seg.num_sectors, limits.capacity_sectors)) {
    return Answer(out, blk::kStatusIoErr);
  }
  if (seg.num_sectors == 0) return Answer(out, blk::kStatusOk);
  out->action = BlockAction::kDisk;
  out->disk.op = discard ? DiskOp::kDiscard : DiskOp::kWriteZeroes;
  out->disk.offset = seg.sector << kSectorShift;
  out->disk.length = uint64_t{seg.num_sectors} << kSectorShift;
  out->disk.may_unmap = (seg.flags & blk::kWriteZeroesFlagUnmap) != 0;
}

void ParseGetId(std::span<const iovec> writable, size_t data_len, BlockRequest* out) {
  if (data_len < blk::kIdBytes) return Answer(out, blk::kStatusIoErr);  // G21
  ChainWriter writer(writable);
  if (!writer.Take(blk::kIdBytes, &out->id_iov)) return Answer(out, blk::kStatusIoErr);
  out->action = BlockAction::kGetId;
  out->used_len_ok = blk::kIdBytes + 1;
}

}  // namespace

void ParseBlockRequest(std::span<const iovec> readable, std::span<const iovec> writable,
                       const BlockLimits& limits, BlockRequest* out) {
  out->action = BlockAction::kReject;
  out->type = 0;
  out->status = blk::kStatusOk;
  out->status_byte = nullptr;
  out->used_len_ok = 1;
  out->disk.op = DiskOp::kRead;
  out->disk.offset = 0;
  out->disk.iov.clear();
  out->disk.length = 0;
  out->disk.may_unmap = false;
  out->id_iov.clear();

  ChainReader reader(readable);
  blk::RequestHeader header;
  if (!reader.ReadObj(&header)) return;  // G18: no header where the device may read it
  uint8_t* status = StatusByte(writable);
  if (status == nullptr) return;  // G18: nowhere to put the status
  out->type = header.type;
  out->status_byte = status;
  size_t data_in = ChainWriter(writable).remaining() - 1;

  switch (header.type) {
    case blk::kTypeIn:
      return ParseRead(header.sector, writable, data_in, limits, out);
    case blk::kTypeOut:
      return ParseWrite(header.sector, reader, limits, out);
    case blk::kTypeFlush:
      // Durability is the image's business (it was opened with the same cache mode); with
      // cache=unsafe the device does not even ask (5.2.6.1 allows no-op flushes only when
      // writes are already durable; unsafe is the user's explicit choice to lie).
      if (limits.flush_is_noop) return Answer(out, blk::kStatusOk);
      out->action = BlockAction::kDisk;
      out->disk.op = DiskOp::kFlush;
      return;
    case blk::kTypeGetId:
      return ParseGetId(writable, data_in, out);
    case blk::kTypeDiscard:
    case blk::kTypeWriteZeroes:
      return ParseDiscardWriteZeroes(header.type, reader, limits, out);
    default:
      return Answer(out, blk::kStatusUnsupp);  // G20 (GET_LIFETIME, SECURE_ERASE, ...)
  }
}

}  // namespace kite::virtio
