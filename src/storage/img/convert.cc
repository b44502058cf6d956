// kite-img convert: copies the guest-visible content of an image (its whole backing chain
// flattened) into a new raw or qcow2 image. Ranges the input reports as zero are not read;
// zero runs of at least -S bytes inside data are not written (holes stay holes); -S 0 writes
// every byte. With -B the new image gets a backing file and only ranges whose content differs
// from that backing file are written. With -c (qcow2 only) every cluster holding data (or,
// with -B, differing from the backing file) is written compressed; zero clusters stay holes.
#include <algorithm>
#include <cstring>
#include <vector>

#include "storage/img/commands.h"
#include "storage/img/convert_util.h"
#include "storage/img/create_spec.h"
#include "storage/img/image_open.h"
#include "storage/img/progress.h"

namespace kite::img {
namespace {

constexpr uint64_t kChunk = 2 << 20;

struct Copier {
  storage::DiskImage& in;
  storage::DiskImage& out;
  uint64_t min_sparse;
  uint64_t compress_cluster = 0;  // -c: the output's cluster size; 0 without -c
  std::vector<uint8_t> buf = std::vector<uint8_t>(kChunk);
  std::vector<uint8_t> under = std::vector<uint8_t>(kChunk);  // the output's backing content
  std::vector<uint8_t> zeros = std::vector<uint8_t>(kChunk, 0);

  // Writes `data` at `offset`, skipping what need not be written.
  Result<void> Put(uint64_t offset, const uint8_t* data, uint64_t len) {
    if (out.backing() != nullptr) {
      // Compare with what the new image already shows through its backing file.
      TRY(out.Read(offset, under.data(), len));
      for (const ByteRange& r : DifferingRanges(data, under.data(), len, kCompareBlock)) {
        TRY(out.Write(offset + r.offset, data + r.offset, r.length));
      }
      return {};
    }
    if (min_sparse == 0) return out.Write(offset, data, len);
    for (const ByteRange& r : NonZeroRanges(data, len, min_sparse)) {
      TRY(out.Write(offset + r.offset, data + r.offset, r.length));
    }
    return {};
  }

  Result<void> CopyExtent(uint64_t offset, uint64_t len) {
    storage::Extent e = TRY(in.BlockStatus(offset, len));
    if (e.length == 0 || e.length > len) return Err(in.path() + ": bad block status extent");
    if (e.zero) {
      if (min_sparse == 0 || out.backing() != nullptr) TRY(Put(offset, zeros.data(), e.length));
    } else {
      TRY(in.Read(offset, buf.data(), e.length));
      TRY(Put(offset, buf.data(), e.length));
    }
    return {};
  }

  // True when the input reads as zeros all over [offset, offset + len).
  Result<bool> AllZero(uint64_t offset, uint64_t len) {
    for (uint64_t at = offset; at < offset + len;) {
      storage::Extent e = TRY(in.BlockStatus(at, offset + len - at));
      if (e.length == 0) return Err(in.path() + ": block status returned an empty extent");
      if (!e.zero) return false;
      at += e.length;
    }
    return true;
  }

  // -c: one whole output cluster at `offset` (the disk's last one may be shorter).
  Result<void> PutCompressed(uint64_t offset, const uint8_t* data, uint64_t len) {
    bool skip = out.backing() != nullptr
                    ? std::memcmp(data, under.data() + offset % kChunk, len) == 0
                    : IsZero(data, len);
    if (skip) return {};
    uint64_t out_len = std::min(compress_cluster, out.size() - offset);
    std::vector<uint8_t> padded;
    if (out_len > len) {  // the output's size is rounded up to a sector
      padded.assign(data, data + len);
      padded.resize(out_len, 0);
      data = padded.data();
    }
    return storage::WriteCompressedCluster(out, offset, {data, out_len});
  }

  Result<void> RunCompressed(Progress& progress) {
    for (uint64_t offset = 0; offset < in.size();) {
      uint64_t len = std::min(kChunk, in.size() - offset);  // kChunk: whole clusters
      if (out.backing() != nullptr || !TRY(AllZero(offset, len))) {
        TRY(in.Read(offset, buf.data(), len));
        if (out.backing() != nullptr) TRY(out.Read(offset, under.data(), len));
        for (uint64_t at = 0; at < len; at += compress_cluster) {
          uint64_t n = std::min(compress_cluster, len - at);
          TRY(PutCompressed(offset + at, buf.data() + at, n));
        }
      }
      offset += len;
      progress.Advance(len);
    }
    return out.Flush();
  }

  Result<void> Run(Progress& progress) {
    if (compress_cluster != 0) return RunCompressed(progress);
    for (uint64_t offset = 0; offset < in.size();) {
      uint64_t len = std::min(kChunk, in.size() - offset);
      storage::Extent e = TRY(in.BlockStatus(offset, len));
      len = std::min(len, e.length);
      if (len == 0) return Err(in.path() + ": block status returned an empty extent");
      TRY(CopyExtent(offset, len));
      offset += len;
      progress.Advance(len);
    }
    return out.Flush();
  }
};

Result<void> Convert(const ConvertArgs& args, bool tty, std::ostream& progress_out) {
  storage::ImageFormat in_format = TRY(ResolveFormat(args.input, args.in_format));
  ToolOpenOptions in_options;
  in_options.force_share = args.force_share;
  auto in = TRY(OpenForTool(args.input, in_format, in_options));
  CreateSpec spec = TRY(BuildCreateSpec(
      {args.out_format, args.options, args.backing, args.backing_format, in->size()}));
  if (args.compress && spec.format != storage::ImageFormat::kQcow2) {
    return Err("Compression not supported for this file format");
  }
  TRY_CTX(CreateImage(args.output, spec), args.output);
  ToolOpenOptions out_options;
  out_options.read_only = false;
  auto out = TRY(OpenForTool(args.output, spec.format, out_options));
  Copier copier{*in, *out, args.min_sparse};
  if (args.compress) copier.compress_cluster = spec.qcow2.cluster_size;
  Progress progress(progress_out, args.progress && tty, in->size());
  return copier.Run(progress);
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

bool IsZero(const uint8_t* data, uint64_t len) {
  return len == 0 || (data[0] == 0 && std::memcmp(data, data + 1, len - 1) == 0);
}

int RunConvert(const ConvertArgs& args, Console& console) {
  auto done = Convert(args, console.tty, console.out);
  if (!done) return Fail(console, done.error());
  return 0;
}

}  // namespace kite::img
