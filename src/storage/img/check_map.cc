// kite-img check and map: consistency check reports (qcow2, and QED without repair) and the
// allocation map of an image and its backing chain, in qemu-img's human and JSON layouts.
#include <cinttypes>
#include <nlohmann/json.hpp>

#include "storage/img/commands.h"
#include "storage/img/image_open.h"
#include "storage/img/map_format.h"
#include "storage/qcow2/qcow2.h"
#include "storage/qed/qed_check.h"

namespace kite::img {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kExitCheckUnsupported = 63;

std::string CheckText(const storage::CheckReport& r) {
  std::string t;
  char line[512];
  if (r.corruptions_fixed || r.leaks_fixed) {
    std::snprintf(line, sizeof(line),
                  "The following inconsistencies were found and repaired:\n\n"
                  "    %" PRIu64 " leaked clusters\n    %" PRIu64
                  " corruptions\n\n"
                  "Double checking the fixed image now...\n",
                  r.leaks_fixed, r.corruptions_fixed);
    t += line;
  }
  if (r.corruptions == 0 && r.leaks == 0 && r.check_errors == 0) {
    t += "No errors were found on the image.\n";
  }
  if (r.corruptions) {
    // Appended piece by piece: "\n" + std::string trips g++ 12's -Wrestrict at -O3.
    t += '\n';
    t += std::to_string(r.corruptions);
    t += " errors were found on the image.\nData may be corrupted, or further writes to the "
         "image may corrupt it.\n";
  }
  if (r.leaks) {
    t += '\n';
    t += std::to_string(r.leaks);
    t += " leaked clusters were found on the image.\nThis means waste of disk space, but no "
         "harm to data.\n";
  }
  if (r.check_errors) {
    t += '\n';
    t += std::to_string(r.check_errors);
    t += " internal errors have occurred during the check.\n";
  }
  if (r.total_clusters != 0 && r.allocated_clusters != 0) {
    auto pct = [&](uint64_t n, uint64_t of) { return 100.0 * double(n) / double(of); };
    std::snprintf(line, sizeof(line),
                  "%" PRIu64 "/%" PRIu64
                  " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
                  r.allocated_clusters, r.total_clusters,
                  pct(r.allocated_clusters, r.total_clusters),
                  pct(r.fragmented_clusters, r.allocated_clusters),
                  pct(r.compressed_clusters, r.allocated_clusters));
    t += line;
  }
  if (r.image_end_offset) t += "Image end offset: " + std::to_string(r.image_end_offset) + "\n";
  return t;
}

Json CheckJson(const storage::CheckReport& r, const std::string& path, const char* format) {
  Json j;
  if (r.image_end_offset) j["image-end-offset"] = r.image_end_offset;
  if (r.corruptions) j["corruptions"] = r.corruptions;
  if (r.leaks) j["leaks"] = r.leaks;
  if (r.corruptions_fixed) j["corruptions-fixed"] = r.corruptions_fixed;
  if (r.leaks_fixed) j["leaks-fixed"] = r.leaks_fixed;
  if (r.allocated_clusters) j["allocated-clusters"] = r.allocated_clusters;
  j["total-clusters"] = r.total_clusters;
  j["check-errors"] = r.check_errors;
  if (r.fragmented_clusters) j["fragmented-clusters"] = r.fragmented_clusters;
  if (r.compressed_clusters) j["compressed-clusters"] = r.compressed_clusters;
  j["filename"] = path;
  j["format"] = format;
  return j;
}

}  // namespace

int RunCheck(const CheckArgs& args, Console& console) {
  auto format = ResolveFormat(args.filename, args.format);
  if (!format) return Fail(console, format.error());
  if (*format != storage::ImageFormat::kQcow2 && *format != storage::ImageFormat::kQed) {
    console.err << "kite-img: This image format does not support checks\n";
    return kExitCheckUnsupported;
  }
  storage::RepairMode repair = args.repair == RepairMode::kAll     ? storage::RepairMode::kAll
                               : args.repair == RepairMode::kLeaks ? storage::RepairMode::kLeaks
                                                                   : storage::RepairMode::kNone;
  if (*format == storage::ImageFormat::kQed && repair != storage::RepairMode::kNone) {
    return Fail(console, Err("QED images are read-only in kite: check without -r"));
  }
  auto report = *format == storage::ImageFormat::kQed ? storage::qed::CheckQed(args.filename)
                                                      : storage::CheckQcow2(args.filename, repair);
  if (!report) return Fail(console, std::move(report).error().Context("Check failed"));
  for (const std::string& m : report->messages) console.err << m << "\n";
  if (!args.quiet) {
    if (args.output == OutputFormat::kJson) {
      // The file name is bytes from the command line, not always UTF-8 (U+FFFD where not).
      console.out << CheckJson(*report, args.filename, storage::ImageFormatName(*format))
                         .dump(4, ' ', false, Json::error_handler_t::replace)
                  << "\n";
    } else {
      console.out << CheckText(*report);
    }
  }
  return report->ExitCode();
}

Result<std::vector<MapEntry>> BuildMap(storage::DiskImage& image) {
  std::vector<MapEntry> entries;
  uint64_t offset = 0, size = image.size();
  while (offset < size) {
    storage::Extent e = TRY(image.BlockStatus(offset, size - offset));
    if (e.length == 0 || e.offset != offset || e.length > size - offset) {
      return Err(image.path() + ": block status returned a bad extent at " +
                 std::to_string(offset));
    }
    MapEntry m{e.offset, e.length, e.depth,       e.allocated || e.data,
               e.zero,   e.data,   e.host_offset, ""};
    const storage::DiskImage* layer = &image;
    for (int d = 0; d < e.depth && layer->backing() != nullptr; ++d) layer = layer->backing();
    m.filename = layer->data_path();  // an external data file holds the mapped data
    if (!entries.empty() && CanMerge(entries.back(), m)) {
      entries.back().length += m.length;
    } else {
      entries.push_back(std::move(m));
    }
    offset += e.length;
  }
  return entries;
}

bool CanMerge(const MapEntry& a, const MapEntry& b) {
  if (a.present != b.present || a.zero != b.zero || a.data != b.data || a.depth != b.depth ||
      a.filename != b.filename || a.offset.has_value() != b.offset.has_value()) {
    return false;
  }
  return !a.offset || *a.offset + a.length == *b.offset;
}

std::string MapJson(const std::vector<MapEntry>& entries) {
  std::string t = "[";
  char line[256];
  for (size_t i = 0; i < entries.size(); ++i) {
    const MapEntry& e = entries[i];
    std::snprintf(line, sizeof(line),
                  "{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
                  ", \"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
                  e.start, e.length, e.depth, e.present ? "true" : "false",
                  e.zero ? "true" : "false", e.data ? "true" : "false");
    t += line;
    if (e.offset) t += ", \"offset\": " + std::to_string(*e.offset);
    t += i + 1 < entries.size() ? "},\n" : "}";
  }
  return t + "]\n";
}

std::string MapText(const std::vector<MapEntry>& entries) {
  char line[512];
  std::snprintf(line, sizeof(line), "%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
  std::string t = line;
  for (const MapEntry& e : entries) {
    if (!e.data || !e.offset) continue;
    std::snprintf(line, sizeof(line), "%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e.start,
                  e.length, *e.offset, e.filename.c_str());
    t += line;
  }
  return t;
}

int RunMap(const MapArgs& args, Console& console) {
  auto format = ResolveFormat(args.filename, args.format);
  if (!format) return Fail(console, format.error());
  ToolOpenOptions options;
  options.force_share = args.force_share;
  auto image = OpenForTool(args.filename, *format, options);
  if (!image) return Fail(console, image.error());
  auto entries = BuildMap(**image);
  if (!entries) return Fail(console, entries.error());
  console.out << (args.output == OutputFormat::kJson ? MapJson(*entries) : MapText(*entries));
  return 0;
}

}  // namespace kite::img
