// kite-img compare: whether two images show the guest the same content (qemu-img compare's
// messages and exit codes: 0 identical, 1 different, 2 error). Ranges both images report as
// zero are skipped without reading; the rest is read in chunks and compared per 512-byte
// sector, so the mismatch offset is sector-aligned as qemu-img's.
#include <algorithm>
#include <cstring>
#include <vector>

#include "storage/img/commands.h"
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

Result<Outcome> CompareCommon(storage::DiskImage& a, storage::DiskImage& b, bool strict,
                              Progress& progress) {
  std::vector<uint8_t> buf_a(kChunk), buf_b(kChunk);
  uint64_t common = std::min(a.size(), b.size());
  for (uint64_t offset = 0; offset < common;) {
    storage::Extent ea = TRY(a.BlockStatus(offset, std::min(kChunk, common - offset)));
    storage::Extent eb = TRY(b.BlockStatus(offset, ea.length));
    uint64_t len = std::min(ea.length, eb.length);
    if (len == 0) return Err("block status returned an empty extent");
    bool present_a = ea.allocated || ea.data, present_b = eb.allocated || eb.data;
    if (strict && present_a != present_b) {
      return Outcome{true,
                     "Strict mode: Offset " + std::to_string(offset) + " block status mismatch!"};
    }
    if (!(ea.zero && eb.zero)) {
      TRY(a.Read(offset, buf_a.data(), len));
      TRY(b.Read(offset, buf_b.data(), len));
      uint64_t at = FirstDifferentSector(buf_a.data(), buf_b.data(), len);
      if (at < len) {
        return Outcome{true, "Content mismatch at offset " + std::to_string(offset + at) + "!"};
      }
    }
    offset += len;
    progress.Advance(len);
  }
  return Outcome{};
}

// The part of the larger image beyond the smaller one must read as zeros.
Result<Outcome> CheckTailZero(storage::DiskImage& larger, uint64_t from, Progress& progress) {
  std::vector<uint8_t> buf(kChunk), zeros(kChunk, 0);
  for (uint64_t offset = from; offset < larger.size();) {
    storage::Extent e = TRY(larger.BlockStatus(offset, std::min(kChunk, larger.size() - offset)));
    if (e.length == 0) return Err("block status returned an empty extent");
    if (!e.zero) {
      TRY(larger.Read(offset, buf.data(), e.length));
      uint64_t at = FirstDifferentSector(buf.data(), zeros.data(), e.length);
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
  auto outcome = CompareCommon(**a, **b, args.strict, progress);
  if (!outcome) return fail(outcome.error());
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
