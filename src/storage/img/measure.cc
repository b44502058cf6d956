// kite-img measure (see measure.h).
#include "storage/img/measure.h"

#include <nlohmann/json.hpp>

#include "storage/img/commands.h"
#include "storage/img/create_spec.h"
#include "storage/img/image_open.h"

namespace kite::img {
namespace {

uint64_t DivRoundUp(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}
uint64_t RoundUp(uint64_t a, uint64_t b) {
  return DivRoundUp(a, b) * b;
}

}  // namespace

uint64_t Qcow2RefcountMetadataSize(uint64_t clusters, uint64_t cluster_size, int refcount_bits) {
  const uint64_t refcounts_per_block = cluster_size * 8 / static_cast<uint64_t>(refcount_bits);
  const uint64_t blocks_per_table_cluster = cluster_size / 8;
  uint64_t blocks = 0, table = 0, total = 0, previous;
  do {  // grows monotonically and converges within a few rounds
    previous = total;
    blocks = DivRoundUp(clusters + table + blocks, refcounts_per_block);
    table = DivRoundUp(blocks, blocks_per_table_cluster);
    total = clusters + blocks + table;
  } while (total != previous);
  return (blocks + table) * cluster_size;
}

uint64_t Qcow2FullyAllocatedSize(uint64_t virtual_size, uint64_t cluster_size, int refcount_bits,
                                 bool extended_l2) {
  const uint64_t aligned = RoundUp(virtual_size, cluster_size);
  const uint64_t entry = extended_l2 ? 16 : 8;  // bytes an L2 entry
  uint64_t meta = cluster_size;                 // header cluster
  const uint64_t l2_entries = RoundUp(aligned / cluster_size, cluster_size / entry);
  meta += l2_entries * entry;
  const uint64_t l1_entries = RoundUp(l2_entries * entry / cluster_size, cluster_size / 8);
  meta += l1_entries * 8;
  meta += Qcow2RefcountMetadataSize((meta + aligned) / cluster_size, cluster_size, refcount_bits);
  return meta + aligned;
}

Result<uint64_t> DataClusterBytes(storage::DiskImage& image, uint64_t cluster_size) {
  uint64_t bytes = 0, next_uncounted = 0;  // first cluster index not yet counted
  for (uint64_t offset = 0; offset < image.size();) {
    storage::Extent e = TRY(image.BlockStatus(offset, image.size() - offset));
    if (e.length == 0) return Err(image.path() + ": block status returned an empty extent");
    if (!e.zero && e.data) {
      uint64_t first = std::max(offset / cluster_size, next_uncounted);
      uint64_t end = DivRoundUp(offset + e.length, cluster_size);
      if (end > first) bytes += (end - first) * cluster_size;
      next_uncounted = std::max(next_uncounted, end);
    }
    offset += e.length;
  }
  return bytes;
}

int RunMeasure(const MeasureArgs& args, Console& console) {
  if (args.out_format == "vmdk") {  // qemu-img's answer; a stream's size is known only once made
    return Fail(console, Err("Block driver 'vmdk' does not support size measurement"));
  }
  auto spec =
      BuildCreateSpec({args.out_format, args.options, "", std::nullopt, args.size.value_or(1)});
  if (!spec) return Fail(console, spec.error());
  uint64_t size = 0, data = 0;
  bool bitmaps = false;
  const uint64_t cluster = spec->qcow2.cluster_size;
  if (args.size) {
    size = *args.size;  // a new, empty image: no data clusters yet
  } else {
    auto format = ResolveFormat(args.filename, args.in_format);
    if (!format) return Fail(console, format.error());
    ToolOpenOptions options;
    options.force_share = args.force_share;
    auto image = OpenForTool(args.filename, *format, options);
    if (!image) return Fail(console, image.error());
    size = (*image)->size();
    auto counted = DataClusterBytes(**image, cluster);
    if (!counted) return Fail(console, counted.error());
    data = *counted;
    bitmaps = *format == storage::ImageFormat::kQcow2;
  }
  uint64_t required = 0, full = 0;
  if (spec->format == storage::ImageFormat::kRaw) {
    required = full = RoundUp(size, 512);
    bitmaps = false;
  } else {
    full =
        Qcow2FullyAllocatedSize(size, cluster, spec->qcow2.refcount_bits, spec->qcow2.extended_l2);
    required = full - RoundUp(size, cluster) + data;
  }
  if (args.output == OutputFormat::kJson) {
    nlohmann::ordered_json j;
    if (bitmaps) j["bitmaps"] = 0;
    j["required"] = required;
    j["fully-allocated"] = full;
    console.out << j.dump(4) << "\n";
  } else {
    console.out << "required size: " << required << "\nfully allocated size: " << full << "\n";
    if (bitmaps) console.out << "bitmaps size: 0\n";
  }
  return 0;
}

}  // namespace kite::img
