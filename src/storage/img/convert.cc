// kite-img convert: copies the guest-visible content of an image (its whole backing chain
// flattened) into a new raw or qcow2 image. Ranges the input reports as zero are not read;
// zero runs of at least -S bytes inside data are not written (holes stay holes); -S 0 writes
// every byte. With -B the new image gets a backing file and only ranges whose content differs
// from that backing file are written. With -c (qcow2 only) every cluster holding data (or,
// with -B, differing from the backing file) is written compressed; zero clusters stay holes.
// The copy runs on the request pipeline (chunk_pipeline.h): -m chunks in flight, reads, zero
// scans and compression on their worker threads, writes in disk order unless -W. -t is the
// output's cache mode: unsafe by default (no flush at the end), as qemu-img convert.
#include <algorithm>
#include <cstring>
#include <vector>

#include "storage/img/chunk_pipeline.h"
#include "storage/img/commands.h"
#include "storage/img/convert_util.h"
#include "storage/img/create_spec.h"
#include "storage/img/image_open.h"
#include "storage/img/progress.h"
#include "storage/qcow2/qcow2.h"

namespace kite::img {
namespace {

enum ChunkKind { kData, kZero };

// The copy as a pipeline job (chunk_pipeline.h): Plan asks the input's block status, Work reads
// and scans (and with -c compresses) on the chunk's own thread, Finish writes.
class Copier final : public ChunkJob {
 public:
  Copier(storage::DiskImage& in, storage::DiskImage& out, uint64_t min_sparse,
         uint64_t compress_cluster)
      : in_(in), out_(out), min_sparse_(min_sparse), compress_cluster_(compress_cluster) {}

  Result<void> Plan(Chunk& c, uint64_t max_data, uint64_t rest) override {
    if (compress_cluster_ != 0) return PlanClusters(c, max_data, rest);
    storage::Extent e = TRY(status_.At(c.offset, rest));
    bool write_zeros = min_sparse_ == 0 || out_.backing() != nullptr;
    c.kind = e.zero ? kZero : kData;
    c.length = c.kind == kZero && !write_zeros ? e.length : std::min(max_data, e.length);
    return {};
  }

  Result<void> Work(Chunk& c) override {
    c.ranges.clear();
    bool write_zeros = min_sparse_ == 0 || out_.backing() != nullptr;
    if (c.kind == kZero && (compress_cluster_ != 0 || !write_zeros)) return {};  // no buffer
    Reserve(c.data, c.length + compress_cluster_, kPipelineChunk + compress_cluster_);
    if (c.kind == kZero) {
      std::fill_n(c.data.begin(), c.length, 0);
    } else {
      TRY(in_.Read(c.offset, c.data.data(), c.length));
    }
    if (out_.backing() != nullptr) {  // compare with what the output shows through its backing
      Reserve(c.other, c.length, kPipelineChunk);
      TRY(out_.Read(c.offset, c.other.data(), c.length));
    }
    if (compress_cluster_ != 0) return Compress(c);
    if (out_.backing() != nullptr) {
      c.ranges = DifferingRanges(c.data.data(), c.other.data(), c.length, kCompareBlock);
    } else if (min_sparse_ == 0) {
      c.ranges = {{0, c.length}};
    } else {
      c.ranges = NonZeroRanges(c.data.data(), c.length, min_sparse_);
    }
    return {};
  }

  Result<bool> Finish(Chunk& c) override {
    for (size_t i = 0; i < c.ranges.size(); ++i) {
      const ByteRange& r = c.ranges[i];
      if (compress_cluster_ == 0) {
        TRY(out_.Write(c.offset + r.offset, c.data.data() + r.offset, r.length));
      } else {
        std::span<const uint8_t> cluster(c.data.data() + r.offset, r.length);
        TRY(storage::WriteCompressedCluster(out_, c.offset + r.offset, cluster, c.streams[i]));
      }
    }
    return true;
  }

 private:
  // -c: whole clusters (c.offset is on a cluster boundary; max_data is a whole number of
  // clusters). Whole clusters reading as zeros (no backing) are one chunk.
  Result<void> PlanClusters(Chunk& c, uint64_t max_data, uint64_t rest) {
    if (out_.backing() == nullptr) {
      storage::Extent e = TRY(status_.At(c.offset, rest));
      uint64_t whole = e.length == rest ? rest : e.length / compress_cluster_ * compress_cluster_;
      if (e.zero && whole > 0) {
        c.kind = kZero;
        c.length = whole;
        return {};
      }
    }
    c.kind = kData;
    c.length = max_data;
    return {};
  }

  // -c: every whole output cluster holding data (with -B: differing from the backing) becomes
  // a range of its own with its compressed stream. The disk's last cluster is padded with zeros
  // up to the output's size (rounded up to a sector).
  Result<void> Compress(Chunk& c) {
    c.streams.clear();
    for (uint64_t at = 0; at < c.length; at += compress_cluster_) {
      uint64_t n = std::min(compress_cluster_, c.length - at);
      const uint8_t* data = c.data.data() + at;
      bool skip = out_.backing() != nullptr ? std::memcmp(data, c.other.data() + at, n) == 0
                                            : IsZero(data, n);
      if (skip) continue;
      uint64_t out_len = std::min(compress_cluster_, out_.size() - (c.offset + at));
      if (out_len > n) std::fill_n(c.data.begin() + at + n, out_len - n, 0);
      std::span<const uint8_t> cluster(data, out_len);
      c.ranges.push_back({at, out_len});
      c.streams.push_back(TRY(storage::CompressClusterFor(out_, cluster)));
    }
    return {};
  }

  storage::DiskImage& in_;
  storage::DiskImage& out_;
  StatusCursor status_{in_};  // Plan only
  uint64_t min_sparse_;
  uint64_t compress_cluster_;  // -c: the output's cluster size; 0 without -c
};

Result<void> Convert(const ConvertArgs& args, bool tty, std::ostream& progress_out) {
  storage::ImageFormat in_format = TRY(ResolveFormat(args.input, args.in_format));
  storage::CacheMode cache = TRY(storage::ParseCacheMode(args.cache));
  ToolOpenOptions in_options;
  in_options.force_share = args.force_share;
  auto in = TRY(OpenForTool(args.input, in_format, in_options));
  CreateSpec spec = TRY(BuildCreateSpec(
      {args.out_format, args.options, args.backing, args.backing_format, in->size()}));
  if (args.compress && spec.format != storage::ImageFormat::kQcow2) {
    return Err("Compression not supported for this file format");
  }
  TRY_CTX(CreateImage(args.output, spec, cache != storage::CacheMode::kUnsafe), args.output);
  ToolOpenOptions out_options;
  out_options.read_only = false;
  out_options.cache = cache;
  auto out = TRY(OpenForTool(args.output, spec.format, out_options));
  Copier copier(*in, *out, args.min_sparse, args.compress ? spec.qcow2.cluster_size : 0);
  PipelineOptions pipeline;
  pipeline.size = in->size();
  pipeline.requests = args.requests;
  pipeline.in_order = !args.out_of_order;
  // -c: one cluster a chunk (at least 64 KiB), so that a chunk whose worker was preempted holds
  // back the in-order stores of the others only briefly (2 MiB took ~45 ms to compress).
  if (args.compress) pipeline.chunk_size = std::max<uint64_t>(spec.qcow2.cluster_size, 64 << 10);
  Progress progress(progress_out, args.progress && tty, in->size());
  TRY(RunPipeline(copier, pipeline, progress));
  return out->Flush();  // a no-op with -t unsafe, convert's default (as qemu-img)
}

}  // namespace

std::vector<ByteRange> NonZeroRanges(const uint8_t* data, uint64_t len, uint64_t min_zero_run) {
  constexpr uint64_t kNone = UINT64_MAX;
  std::vector<ByteRange> out;
  uint64_t data_start = kNone;  // start of the pending range to write
  auto sector_zero = [&](uint64_t at) { return IsZero(data + at, std::min(kSector, len - at)); };
  for (uint64_t s = 0; s < len;) {
    if (!sector_zero(s)) {
      if (data_start == kNone) data_start = s;
      s += std::min(kSector, len - s);
      continue;
    }
    uint64_t e = s;
    while (e < len && sector_zero(e)) e += std::min(kSector, len - e);
    if (e - s >= min_zero_run) {
      if (data_start != kNone) out.push_back({data_start, s - data_start});
      data_start = kNone;
    } else if (data_start == kNone) {
      data_start = s;
    }
    s = e;
  }
  if (data_start != kNone) out.push_back({data_start, len - data_start});
  return out;
}

std::vector<ByteRange> DifferingRanges(const uint8_t* a, const uint8_t* b, uint64_t len,
                                       uint64_t block) {
  std::vector<ByteRange> out;
  for (uint64_t at = 0; at < len; at += block) {
    uint64_t n = std::min(block, len - at);
    if (std::memcmp(a + at, b + at, n) == 0) continue;
    if (!out.empty() && out.back().offset + out.back().length == at) {
      out.back().length += n;
    } else {
      out.push_back({at, n});
    }
  }
  return out;
}

Result<bool> ReadsAsZeros(storage::DiskImage& image, uint64_t offset, uint64_t len) {
  for (uint64_t at = offset; at < offset + len;) {
    storage::Extent e = TRY(image.BlockStatus(at, offset + len - at));
    if (e.length == 0) return Err(image.path() + ": block status returned an empty extent");
    if (!e.zero) return false;
    at += e.length;
  }
  return true;
}

bool IsZero(const uint8_t* data, uint64_t len) {
  return len == 0 || (data[0] == 0 && std::memcmp(data, data + 1, len - 1) == 0);
}

int RunConvert(const ConvertArgs& args, Console& console) {
  auto done = Convert(args, console.tty, console.out);
  if (!done) return Fail(console, done.error());
  return 0;
}

}  // namespace kite::img
