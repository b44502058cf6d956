// kite-img convert: copies the guest-visible content of an image (its whole backing chain
// flattened) into a new raw or qcow2 image, or a streamOptimized or monolithicSparse VMDK
// (vmdk_writer.h: written in disk order, so no -W or -n); several inputs are concatenated, in
// order, into one disk. Ranges the input reports as zero are not read; zero runs of at least -S
// bytes inside data are not written (holes stay holes); -S 0 writes every byte. With -B the new
// image gets a backing file and only ranges whose content differs from that backing file are
// written. With -c (qcow2; accepted and a no-op for VMDK, as qemu-img: a stream is compressed
// anyway) every cluster holding data (or, with -B, differing from the backing file) is written
// compressed; zero clusters stay holes. With -n the output exists already (format -O, at least as
// large as the input): it may hold data, so what reads as zeros is written as zeros (WriteZeroes:
// holes where the format can), unless --target-is-zero promises that it reads as zeros; an output
// with a backing file of its own gets only what differs from what it shows. The copy runs on the
// request pipeline (chunk_pipeline.h): -m chunks in flight, reads, zero scans and compression on
// their worker threads, writes in disk order unless -W. -t is the output's cache mode: unsafe by
// default (no flush at the end), as qemu-img convert.
#include <algorithm>
#include <cstring>
#include <iterator>
#include <memory>
#include <vector>

#include "storage/img/chunk_pipeline.h"
#include "storage/img/commands.h"
#include "storage/img/convert_util.h"
#include "storage/img/create_spec.h"
#include "storage/img/image_open.h"
#include "storage/img/progress.h"
#include "storage/img/vmdk_writer.h"
#include "storage/qcow2/qcow2.h"

namespace kite::img {
namespace {

enum ChunkKind { kData, kZero };

// One input of the copy and where its content starts in the output.
struct Source {
  storage::DiskImage& image;
  uint64_t start;
  StatusCursor status;  // Plan only
};

// How zeros reach the output.
struct ZeroPolicy {
  uint64_t min_sparse = 0;  // -S: zero runs at least this long inside data are not written
  bool fill = false;        // -n without --target-is-zero: the output may hold data there
};

// The copy as a pipeline job (chunk_pipeline.h): Plan asks the input's block status, Work reads
// and scans (and with -c compresses) on the chunk's own thread, Finish writes.
class Copier final : public ChunkJob {
 public:
  Copier(std::vector<Source>& in, storage::DiskImage& out, ZeroPolicy zeros,
         uint64_t compress_cluster)
      : in_(in),
        out_(out),
        min_sparse_(zeros.min_sparse),
        write_zeros_(zeros.min_sparse == 0 || out.backing() != nullptr),
        zero_fill_(zeros.fill && !write_zeros_),
        compress_cluster_(compress_cluster) {}

  // A chunk never crosses from one input into the next, but for -c's whole clusters.
  Result<void> Plan(Chunk& c, uint64_t max_data, uint64_t rest) override {
    if (compress_cluster_ != 0) return PlanClusters(c, max_data, rest);
    storage::Extent e = TRY(StatusAt(c.offset, rest));
    c.kind = e.zero ? kZero : kData;
    c.length = c.kind == kZero && !write_zeros_ ? e.length : std::min(max_data, e.length);
    return {};
  }

  Result<void> Work(Chunk& c) override {
    c.ranges.clear();
    if (c.kind == kZero && (compress_cluster_ != 0 || !write_zeros_)) return {};  // no buffer
    Reserve(c.data, c.length + compress_cluster_, kPipelineChunk + compress_cluster_);
    if (c.kind == kZero) {
      std::fill_n(c.data.begin(), c.length, 0);
    } else {
      TRY(ReadInputs(c.offset, c.data.data(), c.length));
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
    uint64_t zeros_from = 0;  // zero_fill_: the chunk's bytes before this are written
    for (size_t i = 0; i < c.ranges.size(); ++i) {
      const ByteRange& r = c.ranges[i];
      if (zero_fill_ && r.offset > zeros_from) {
        TRY(out_.WriteZeroes(c.offset + zeros_from, r.offset - zeros_from, true));
      }
      zeros_from = r.offset + r.length;
      if (compress_cluster_ == 0) {
        TRY(out_.Write(c.offset + r.offset, c.data.data() + r.offset, r.length));
      } else {
        std::span<const uint8_t> cluster(c.data.data() + r.offset, r.length);
        TRY(storage::WriteCompressedCluster(out_, c.offset + r.offset, cluster, c.streams[i]));
      }
    }
    if (zero_fill_ && c.length > zeros_from) {
      TRY(out_.WriteZeroes(c.offset + zeros_from, c.length - zeros_from, true));
    }
    return true;
  }

 private:
  // -c: whole clusters (c.offset is on a cluster boundary; max_data is a whole number of
  // clusters). Whole clusters reading as zeros (no backing) are one chunk.
  Result<void> PlanClusters(Chunk& c, uint64_t max_data, uint64_t rest) {
    if (out_.backing() == nullptr) {
      storage::Extent e = TRY(StatusAt(c.offset, rest));
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

  Source& SourceAt(uint64_t offset) {
    auto after = std::upper_bound(in_.begin(), in_.end(), offset,
                                  [](uint64_t at, const Source& s) { return at < s.start; });
    return *std::prev(after);  // in_[0] starts at 0; empty inputs are never found here
  }

  // The input's extent at `offset`, clipped at the end of that input.
  Result<storage::Extent> StatusAt(uint64_t offset, uint64_t rest) {
    Source& s = SourceAt(offset);
    uint64_t in_rest = std::min(rest, s.start + s.image.size() - offset);
    return s.status.At(offset - s.start, in_rest);
  }

  Result<void> ReadInputs(uint64_t offset, uint8_t* data, uint64_t len) {
    while (len > 0) {
      Source& s = SourceAt(offset);
      uint64_t n = std::min(len, s.start + s.image.size() - offset);
      TRY(s.image.Read(offset - s.start, data, n));
      offset += n, data += n, len -= n;
    }
    return {};
  }

  std::vector<Source>& in_;  // sorted by start; each at least one byte long
  storage::DiskImage& out_;
  uint64_t min_sparse_;
  bool write_zeros_;           // zero ranges are read as data: -S 0, or compared with the backing
  bool zero_fill_;             // the gaps between written ranges become WriteZeroes
  uint64_t compress_cluster_;  // -c: the output's cluster size; 0 without -c
};

// A VMDK is written in disk order and made whole (vmdk_writer.h): no -W, no -n.
Result<void> CheckVmdkArgs(const ConvertArgs& args) {
  if (args.out_of_order) {
    return Err("-W is not supported with -O vmdk: kite-img writes a VMDK in disk order");
  }
  if (args.skip_create) {
    return Err("-n is not supported with -O vmdk: kite-img writes only new VMDK images");
  }
  return {};
}

Result<void> Convert(const ConvertArgs& args, bool tty, std::ostream& progress_out) {
  storage::CacheMode cache = TRY(storage::ParseCacheMode(args.cache));
  ToolOpenOptions in_options;
  in_options.force_share = args.force_share;
  std::vector<std::unique_ptr<storage::DiskImage>> inputs;
  std::vector<Source> sources;
  uint64_t size = 0;
  for (size_t i = 0; i < args.inputs.size(); ++i) {
    const std::string& path = args.inputs[i];
    // --image-opts: each input's own driver; else -f (or probing) for all
    const std::optional<std::string>& format =
        i < args.input_formats.size() ? args.input_formats[i] : args.in_format;
    storage::ImageFormat in_format = TRY(ResolveFormat(path, format));
    inputs.push_back(TRY(OpenForTool(path, in_format, in_options)));
    if (inputs.back()->size() == 0) continue;  // adds nothing to the disk
    sources.push_back({*inputs.back(), size, StatusCursor(*inputs.back())});
    size += inputs.back()->size();
  }
  CreateSpec spec = TRY(
      BuildCreateSpec({args.out_format, args.options, args.backing, args.backing_format, size}));
  bool qcow2_compress = args.compress && spec.format == storage::ImageFormat::kQcow2;
  if (args.compress && !qcow2_compress && spec.format != storage::ImageFormat::kVmdk) {
    return Err("Compression not supported for this file format");
  }
  bool sync = cache != storage::CacheMode::kUnsafe;
  std::unique_ptr<storage::DiskImage> out;
  VmdkWriter* vmdk = nullptr;  // -O vmdk: `out`, finished after the copy
  if (spec.format == storage::ImageFormat::kVmdk) {
    TRY(CheckVmdkArgs(args));
    auto writer = TRY(VmdkWriter::Create(args.output, size, spec.vmdk));
    vmdk = writer.get();
    out = std::move(writer);
  } else {
    if (!args.skip_create) TRY_CTX(CreateImage(args.output, spec, sync), args.output);
    ToolOpenOptions out_options;
    out_options.read_only = false;
    out_options.cache = cache;
    out = TRY(OpenForTool(args.output, spec.format, out_options));
  }
  if (out->size() < size) return Err("output file is smaller than input file");
  ZeroPolicy zeros{args.min_sparse, args.skip_create && !args.target_is_zero};
  Copier copier(sources, *out, zeros, qcow2_compress ? spec.qcow2.cluster_size : 0);
  PipelineOptions pipeline;
  pipeline.size = size;
  pipeline.requests = args.requests;
  pipeline.in_order = !args.out_of_order;
  // -c: one cluster a chunk (at least 64 KiB), so that a chunk whose worker was preempted holds
  // back the in-order stores of the others only briefly (2 MiB took ~45 ms to compress).
  if (qcow2_compress) pipeline.chunk_size = std::max<uint64_t>(spec.qcow2.cluster_size, 64 << 10);
  Progress progress(progress_out, args.progress && tty, size);
  TRY(RunPipeline(copier, pipeline, progress));
  if (vmdk != nullptr) return vmdk->Finish(sync);
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
