// ChunkPipeline: the request engine of convert, commit, rebase and compare. The disk is walked
// in chunks (at most kPipelineChunk bytes) with up to `requests` chunks in flight, as
// `qemu-img convert -m` does: each in-flight chunk has a worker thread of its own that reads,
// scans and (for convert -c) compresses it, so the reads of later chunks overlap the writes of
// earlier ones and CPU work runs on every core.
//
// Per chunk, three steps of the job run:
//   Plan    on one thread at a time, in disk order: how long the chunk is and what it holds
//           (block status); cheap. A chunk Work reads into is at most the chunk size; one
//           that needs no buffer (a hole to skip, zeros to write) may run to the end of its
//           extent, so holes cost one chunk, not one per chunk size.
//   Work    concurrently on the chunk's worker: reads, zero scans, comparisons, compression.
//   Finish  writes or verdicts. In order (the default), Finish runs for one chunk at a time in
//           disk order, so the output is laid out as the disk is and a comparison reports its
//           first mismatch; out of order (convert -W), as soon as Work is done, concurrently
//           (the images are thread-safe).
// A step's error, or Finish returning false (stop: compare found a difference), ends the walk:
// no further chunk is planned and chunks not finished yet are dropped.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "base/result.h"
#include "storage/disk_image.h"
#include "storage/img/convert_util.h"
#include "storage/img/progress.h"

namespace kite::img {

// Chunk sizes and requests in flight, measured on the B4 image: convert with qemu-img's 2 MiB
// buffers and -m 8 (512 KiB chunks measured alike); commit, rebase and compare with 4 x 512 KiB,
// whose buffers stay in the CPU caches (their work is copying out of the page cache and
// comparing: 8 x 2 MiB took ~20 % more CPU).
inline constexpr uint64_t kPipelineChunk = 2 << 20;  // qemu-img convert's buffer size
inline constexpr uint64_t kWalkChunk = 512 << 10;
inline constexpr int kMaxRequests = 16;     // qemu-img convert -m's limit
inline constexpr int kDefaultRequests = 8;  // qemu-img convert -m's default
inline constexpr int kWalkRequests = 4;     // commit, rebase, compare (they have no -m)

// One chunk and its worker's buffers (kept from chunk to chunk of the same worker).
struct Chunk {
  uint64_t offset = 0;
  uint64_t length = 0;
  int kind = 0;     // the job's own classification, set by Plan
  uint64_t at = 0;  // the job's own result of Work (compare: mismatch offset)
  std::vector<uint8_t> data;
  std::vector<uint8_t> other;                 // a second image's (or the backing's) content
  std::vector<ByteRange> ranges;              // what Finish writes
  std::vector<std::vector<uint8_t>> streams;  // convert -c: one per cluster (empty: skip)
};

// Grows a chunk's buffer to hold `n` bytes, at once to `full` (the job's largest chunk):
// buffers keep their size from chunk to chunk, and growing step by step reallocated and
// zero-filled them again and again (8 times the page faults).
inline uint8_t* Reserve(std::vector<uint8_t>& buf, uint64_t n, uint64_t full) {
  if (buf.size() < n) buf.resize(std::max(n, full));
  return buf.data();
}

class ChunkJob {
 public:
  virtual ~ChunkJob() = default;
  // Sets chunk.length and chunk.kind for the chunk at chunk.offset: 0 < length <= `rest` (the
  // rest of the walk), and <= `max_data` (the chunk size) when Work reads into the buffers.
  virtual Result<void> Plan(Chunk& chunk, uint64_t max_data, uint64_t rest) = 0;
  virtual Result<void> Work(Chunk& chunk) = 0;
  // false: stop the walk (no error).
  virtual Result<bool> Finish(Chunk& chunk) = 0;
};

struct PipelineOptions {
  uint64_t size = 0;  // bytes to walk, from offset 0
  int requests = kDefaultRequests;
  bool in_order = true;
  uint64_t chunk_size = kPipelineChunk;
};

// Block status for a walk in disk order (a job's Plan): asks the image once per extent, for
// the whole rest of the disk, and answers the chunk-sized questions from that extent. Valid
// while nothing the walk has not planned yet is written, which holds for every job here: they
// write only chunks already planned.
class StatusCursor {
 public:
  explicit StatusCursor(storage::DiskImage& image) : image_(image) {}
  // The extent at `offset`, at most `max_length` long.
  Result<storage::Extent> At(uint64_t offset, uint64_t max_length);

 private:
  storage::DiskImage& image_;
  storage::Extent cached_;  // length 0: nothing cached
};

// Walks [0, options.size) through `job`; advances `progress` by each finished chunk.
Result<void> RunPipeline(ChunkJob& job, const PipelineOptions& options, Progress& progress);

}  // namespace kite::img
