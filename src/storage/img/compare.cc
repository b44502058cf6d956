// kite-img compare: whether two images show the guest the same content (qemu-img compare's
// messages and exit codes: 0 identical, 1 different, 2 error). Ranges both images report as
// zero are skipped without reading; the rest is read in chunks and compared per 512-byte
// sector, so the mismatch offset is sector-aligned as qemu-img's.
#include <algorithm>
#include <cstring>
#include <vector>

#include "storage/img/chunk_pipeline.h"
#include "storage/img/commands.h"
#include "storage/img/convert_util.h"
#include "storage/img/image_open.h"
#include "storage/img/progress.h"

namespace kite::img {
namespace {

constexpr uint64_t kChunk = 2 << 20;
constexpr int kExitDifferent = 1;
constexpr int kExitError = 2;

struct Outcome {
  bool differ = false;
  std::string message;
};

uint64_t FirstDifferentSector(const uint8_t* a, const uint8_t* b, uint64_t len) {
  for (uint64_t at = 0; at < len; at += 512) {
    uint64_t n = std::min<uint64_t>(512, len - at);
    if (std::memcmp(a + at, b + at, n) != 0) return at;
  }
  return len;
}

uint64_t FirstNonZeroSector(const uint8_t* data, uint64_t len) {
  for (uint64_t at = 0; at < len; at += kSector) {
    if (!IsZero(data + at, std::min(kSector, len - at))) return at;
  }
  return len;
}

// kOnlyA/kOnlyB: the other image reads as zeros there (block status), so only one is read.
enum CompareKind { kBothZero, kBoth, kOnlyA, kOnlyB, kStrictMismatch };

// The common part of both images as a pipeline job (chunk_pipeline.h): both reads and the
// comparison on the chunks' threads; Finish, in disk order, stops at the first difference.
class CompareCommon final : public ChunkJob {
 public:
  CompareCommon(storage::DiskImage& a, storage::DiskImage& b, bool strict)
      : a_(a), b_(b), strict_(strict) {}

  Result<void> Plan(Chunk& c, uint64_t max_data, uint64_t rest) override {
    storage::Extent ea = TRY(status_a_.At(c.offset, rest));
    storage::Extent eb = TRY(status_b_.At(c.offset, ea.length));
    c.length = std::min(ea.length, eb.length);
    bool present_a = ea.allocated || ea.data, present_b = eb.allocated || eb.data;
    if (strict_ && present_a != present_b) {
      c.kind = kStrictMismatch;
    } else {
      c.kind = ea.zero ? (eb.zero ? kBothZero : kOnlyB) : (eb.zero ? kOnlyA : kBoth);
    }
    if (c.kind != kBothZero) c.length = std::min(c.length, max_data);
    return {};
  }

  Result<void> Work(Chunk& c) override {
    c.at = c.length;
    if (c.kind == kBothZero || c.kind == kStrictMismatch) return {};
    Reserve(c.data, c.length, kWalkChunk);
    if (c.kind != kBoth) {
      TRY((c.kind == kOnlyA ? a_ : b_).Read(c.offset, c.data.data(), c.length));
      c.at = FirstNonZeroSector(c.data.data(), c.length);
      return {};
    }
    Reserve(c.other, c.length, kWalkChunk);
    TRY(a_.Read(c.offset, c.data.data(), c.length));
    TRY(b_.Read(c.offset, c.other.data(), c.length));
    c.at = FirstDifferentSector(c.data.data(), c.other.data(), c.length);
    return {};
  }

  Result<bool> Finish(Chunk& c) override {
    if (c.kind == kStrictMismatch) {
      outcome_ = {true,
                  "Strict mode: Offset " + std::to_string(c.offset) + " block status mismatch!"};
      return false;
    }
    if (c.at < c.length) {
      outcome_ = {true, "Content mismatch at offset " + std::to_string(c.offset + c.at) + "!"};
      return false;
    }
    return true;
  }

  const Outcome& outcome() const { return outcome_; }

 private:
  storage::DiskImage& a_;
  storage::DiskImage& b_;
  StatusCursor status_a_{a_}, status_b_{b_};  // Plan only
  bool strict_;
  Outcome outcome_;  // written by Finish, one chunk at a time
};

// The part of the larger image beyond the smaller one must read as zeros.
Result<Outcome> CheckTailZero(storage::DiskImage& larger, uint64_t from, Progress& progress) {
  std::vector<uint8_t> buf(kChunk);
  for (uint64_t offset = from; offset < larger.size();) {
    storage::Extent e = TRY(larger.BlockStatus(offset, std::min(kChunk, larger.size() - offset)));
    if (e.length == 0) return Err("block status returned an empty extent");
    if (!e.zero) {
      TRY(larger.Read(offset, buf.data(), e.length));
      uint64_t at = FirstNonZeroSector(buf.data(), e.length);
      if (at < e.length) {
        return Outcome{true, "Content mismatch at offset " + std::to_string(offset + at) + "!"};
      }
    }
    offset += e.length;
    progress.Advance(e.length);
  }
  return Outcome{};
}

}  // namespace

int RunCompare(const CompareArgs& args, Console& console) {
  auto fail = [&](const Error& e) {
    console.err << "kite-img: " << e.message() << "\n";
    return kExitError;
  };
  auto f1 = ResolveFormat(args.filename1, args.format1);
  if (!f1) return fail(f1.error());
  auto f2 = ResolveFormat(args.filename2, args.format2);
  if (!f2) return fail(f2.error());
  ToolOpenOptions options;
  options.force_share = args.force_share;
  auto a = OpenForTool(args.filename1, *f1, options);
  if (!a) return fail(a.error());
  auto b = OpenForTool(args.filename2, *f2, options);
  if (!b) return fail(b.error());
  uint64_t size_a = (*a)->size(), size_b = (*b)->size();
  if (size_a != size_b && args.strict) {
    if (!args.quiet) console.out << "Strict mode: Image size mismatch!\n";
    return kExitDifferent;
  }
  Progress progress(console.out, args.progress && console.tty, std::max(size_a, size_b));
  CompareCommon job(**a, **b, args.strict);
  PipelineOptions walk{
      .size = std::min(size_a, size_b), .requests = kWalkRequests, .chunk_size = kWalkChunk};
  auto walked = RunPipeline(job, walk, progress);
  if (!walked) return fail(walked.error());
  Result<Outcome> outcome = job.outcome();
  if (!outcome->differ && size_a != size_b) {
    if (!args.quiet) console.out << "Warning: Image size mismatch!\n";
    storage::DiskImage& larger = size_a > size_b ? **a : **b;
    outcome = CheckTailZero(larger, std::min(size_a, size_b), progress);
    if (!outcome) return fail(outcome.error());
  }
  if (outcome->differ) {
    if (!args.quiet) console.out << outcome->message << "\n";
    return kExitDifferent;
  }
  if (!args.quiet) console.out << "Images are identical.\n";
  return 0;
}

}  // namespace kite::img
