// Parsing of one virtio-blk request (virtio 1.2 section 5.2.6): a pure function from a
// validated descriptor chain (its readable and writable iovecs) and the disk's limits to what
// the device must do — submit a disk request, answer at once with a status, or reject the
// chain. No I/O, no device state: the fuzzer and the unit tests call it directly.
//
// Layout (5.2.6): the header (type, reserved, sector; 16 bytes) at the start of the readable
// part, then OUT data or DISCARD/WRITE_ZEROES segments; the writable part ends with the status
// byte, preceded by IN or GET_ID data. The descriptor boundaries do not matter (2.6.4: the
// device "MUST NOT make assumptions about the particular arrangement of descriptors").
//
// The header and the discard/write-zeroes segment are copied out of guest memory once, here
// (G15); the data stays in guest memory and is handed over as iovecs (zero copy).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "storage/async_disk.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {

// What the device tells the guest it can do; filled once from the image and the options.
struct BlockLimits {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  uint32_t seg_max = 0;                   // data iovecs per request
  uint32_t max_discard_sectors = 0;       // per segment
  uint32_t max_write_zeroes_sectors = 0;  // per segment
  uint32_t max_discard_seg = 1;           // segments per DISCARD / WRITE_ZEROES request
  bool discard = false;                   // DISCARD negotiated
  bool write_zeroes = false;              // WRITE_ZEROES negotiated
  bool flush_is_noop = false;             // cache=unsafe: FLUSH answers OK at once
};

enum class BlockAction {
  kReject,    // malformed chain (G18): return it with used length 0, write nothing
  kComplete,  // write `status` and return the chain (no disk access)
  kGetId,     // fill `id_iov` with the serial, then complete with OK
  kDisk,      // submit `disk`; OK or IOERR from its result
};

struct BlockRequest {
  BlockAction action = BlockAction::kReject;
  uint32_t type = 0;                // header type, as the guest sent it
  uint8_t status = blk::kStatusOk;  // kComplete
  uint8_t* status_byte = nullptr;   // host address of the status byte (not kReject)
  uint32_t used_len_ok = 1;         // used length when the request succeeds
  storage::DiskRequest disk;        // kDisk: op, offset, iov / length
  std::vector<iovec> id_iov;        // kGetId: exactly kIdBytes of guest buffer
};

// Parses one chain. `out`'s vectors are reused (cleared first). Never touches guest memory
// except to copy the header and the segment out of the readable part.
void ParseBlockRequest(std::span<const iovec> readable, std::span<const iovec> writable,
                       const BlockLimits& limits, BlockRequest* out);

}  // namespace kite::virtio
