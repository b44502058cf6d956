// libFuzzer target for the qcow2 metadata paths beyond the header (src/storage/qcow2): a
// fuzzed image is opened read-write as the VMM opens a disk — which loads the L1 and refcount
// tables, repairs a dirty image's refcounts and resolves a backing file — then driven with a
// short program of guest I/O that reads and writes through the L1/L2 tables, allocates and
// frees clusters (refcounts), writes compressed clusters, discards, zeroes and grows it; after
// a clean close the path-based operations read and rewrite its snapshot table (list, apply,
// create, delete), kite-img prints it (info and snapshot -l, as JSON and text) and checks it
// with repair.
//
// Input: the image, then the program at its end (FuzzedDataProvider takes integers from the
// end), so any qcow2 file is a valid seed. The image lives in a private temporary directory
// that is also the backing root, holding the only files a backing name may reach: base.raw
// and base.qcow2 (a qcow2 over base.raw); it is removed when the fuzzer ends, however it
// ends. An image with an external data file (incompatible bit 2) gets data.raw there, as a
// disk with data_file= does: its data I/O, allocation at guest offsets, zeroing of a raw data
// file and resizing run against it. Nothing may crash, hang or allocate without bound
// (BAD_INPUTS I2-I31); every refusal is an Error.
#include <fuzzer/FuzzedDataProvider.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/log.h"
#include "fuzz_private_dir.h"
#include "storage/disk_image.h"
#include "storage/img/cli.h"
#include "storage/img/commands.h"
#include "storage/qcow2/qcow2.h"

namespace {

using namespace kite::storage;

constexpr size_t kMaxImage = 1 << 20;
constexpr uint64_t kBaseSize = 1 << 20;
constexpr uint64_t kMaxIo = 256 * 1024;  // bytes per read or write
constexpr uint64_t kWindow = 64 << 20;   // offsets fall in the first and last 64 MiB

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "qcow2_image_fuzzer: %s\n", what.c_str());
  std::abort();
}

struct Dir {
  std::string root;
  std::string top;
  std::string data;  // the external data file the disk names (data_file=), emptied per input
};

// A private directory (on tmpfs when there is one) with the backing files.
const Dir& TheDir() {
  static Dir* dir = [] {
    std::string tmpl = kite::fuzz::MakePrivateDir("kite-qcow2-fuzz");
    if (tmpl.empty()) Fail("mkdtemp failed");
    auto* d = new Dir{tmpl, tmpl + "/top.qcow2", tmpl + "/data.raw"};
    std::vector<char> pattern(kBaseSize);
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>(i * 13 + 7);
    std::ofstream(d->root + "/base.raw", std::ios::binary).write(pattern.data(), kBaseSize);
    Qcow2CreateOptions opts{.size = kBaseSize,
                            .cluster_size = 4096,
                            .backing_file = "base.raw",
                            .backing_format = "raw"};
    if (!CreateQcow2(d->root + "/base.qcow2", opts)) Fail("creating base.qcow2");
    return d;
  }();
  return *dir;
}

bool WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

struct Op {
  uint8_t kind;
  bool from_end;
  uint32_t offset;
  uint32_t length;
  uint8_t fill;
};

// An offset within the disk: from its start or back from its end, inside kWindow.
uint64_t Place(const Op& op, uint64_t size, uint64_t length) {
  if (size == 0) return 0;
  uint64_t window = std::min(size, kWindow);
  uint64_t delta = op.offset % window;
  uint64_t at = op.from_end ? size - 1 - delta : delta;
  if (op.kind == 6) at &= ~uint64_t{0xffff};  // cluster-aligned for 64 KiB
  return std::min(at, size - std::min(size, length));
}

void Run(DiskImage& image, const std::vector<Op>& ops) {
  std::vector<uint8_t> buf;
  for (const Op& op : ops) {
    uint64_t size = image.size();
    uint64_t len = std::min<uint64_t>(op.length % (kMaxIo + 1), size);
    uint64_t at = Place(op, size, len);
    buf.assign(std::max<uint64_t>(len, 1), op.fill);  // never a null buffer, even for 0 bytes
    switch (op.kind) {
      case 0:
        (void)image.Read(at, buf.data(), len);
        break;
      case 1:
        (void)image.Write(at, buf.data(), len);
        break;
      case 2:
        (void)image.Discard(at, len);
        break;
      case 3:
        (void)image.WriteZeroes(at, len, op.fill & 1);
        break;
      case 4: {
        uint64_t want = std::max<uint64_t>(len, 1);
        auto extent = image.BlockStatus(at, want);
        // At the end of the disk the extent is empty (qcow2 answers that offset, not an error).
        bool empty_ok = at == size;
        if (extent &&
            (extent->offset != at || (extent->length == 0 && !empty_ok) || extent->length > want)) {
          Fail("BlockStatus(" + std::to_string(at) + ", " + std::to_string(want) +
               ") on a disk of " + std::to_string(size) + " bytes: extent at " +
               std::to_string(extent->offset) + ", " + std::to_string(extent->length) + " bytes");
        }
        break;
      }
      case 5:
        (void)image.Flush();
        break;
      case 6: {  // one cluster of a 64 KiB-cluster image, or a short one: refused or written
        buf.assign(std::min<uint64_t>(64 * 1024, size - std::min(size, at)), op.fill);
        (void)WriteCompressedCluster(image, at, buf);
        break;
      }
      case 7: {
        std::vector<uint8_t> small(std::clamp<uint64_t>(len, 1, 4096), 0);
        auto got =
            image.TryReadNow(at, std::vector<iovec>{{small.data(), std::min<uint64_t>(len, 4096)}});
        (void)got;
        break;
      }
      default:
        (void)GrowOpenImage(image, size + (op.offset % (4 << 20)));
        break;
    }
  }
}

// The snapshot table through the path-based operations (each opens and closes the file).
void Snapshots(const std::string& path, uint8_t how) {
  auto list = ListSnapshots(path);
  if (!list) return;
  if (!list->empty()) {
    const SnapshotInfo& first = list->front();
    if (how & 1) (void)ApplySnapshot(path, first.id);
    if (how & 2) (void)DeleteSnapshot(path, list->back().name);
  }
  if (how & 4) (void)CreateSnapshot(path, "fuzz");
  (void)InspectQcow2(path);
  // kite-img info and snapshot -l print names and backing file names from the image.
  std::ostringstream out, err;
  kite::img::Console console{out, err};
  auto output = (how & 16) ? kite::img::OutputFormat::kJson : kite::img::OutputFormat::kHuman;
  (void)kite::img::RunInfo({.format = "qcow2",
                            .output = output,
                            .backing_chain = (how & 32) != 0,
                            .force_share = true,
                            .filename = path},
                           console);
  (void)kite::img::RunSnapshot({.format = "qcow2", .output = output, .filename = path}, console);
  (void)CheckQcow2(path, (how & 8) ? RepairMode::kAll : RepairMode::kNone);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kite::SetLogLevel(kite::LogLevel::Off);
  (void)TheDir();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxImage) return 0;
  const Dir& dir = TheDir();
  FuzzedDataProvider in(data, size);
  std::vector<Op> ops(in.ConsumeIntegralInRange<size_t>(0, 12));
  for (Op& op : ops) {
    op.kind = in.ConsumeIntegralInRange<uint8_t>(0, 8);
    op.from_end = in.ConsumeBool();
    op.offset = in.ConsumeIntegral<uint32_t>();
    op.length = in.ConsumeIntegral<uint32_t>();
    op.fill = in.ConsumeIntegral<uint8_t>();
  }
  uint8_t snapshot_ops = in.ConsumeIntegral<uint8_t>();
  if (!WriteFile(dir.top, in.ConsumeRemainingBytes<uint8_t>())) Fail("writing the image");

  if (!WriteFile(dir.data, {})) Fail("emptying the data file");
  OpenOptions options{.read_only = false,
                      .cache = CacheMode::kUnsafe,
                      .max_backing_depth = 4,
                      .backing_root = dir.root,
                      .data_file = dir.data,
                      .lock = false};
  {
    auto image = OpenImage(dir.top, ImageFormat::kQcow2, options);
    if (image) Run(**image, ops);
  }
  Snapshots(dir.top, snapshot_ops);
  return 0;
}
