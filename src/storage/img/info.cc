// kite-img info and snapshot -l: what an image is, as qemu-img info prints it (human text, or
// JSON with qemu-img's field names). qcow2 metadata comes from InspectQcow2, which needs no
// lock and no backing file; raw and VMDK images are opened read-only.
#include <sys/stat.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <set>

#include "base/units.h"
#include "storage/img/commands.h"
#include "storage/img/image_open.h"
#include "storage/img/info_format.h"
#include "storage/qcow2/qcow2.h"
#include "storage/qed/qed_image.h"
#include "storage/raw_image.h"

namespace kite::img {
namespace {

using Json = nlohmann::ordered_json;
// Names from the image (snapshot names, the backing file name) are bytes, not always UTF-8:
// printed as JSON they get U+FFFD where they are not (a strict dump() would throw and abort).
constexpr auto kReplace = Json::error_handler_t::replace;
using storage::ImageFormat;

Result<uint64_t> ActualSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return SysErr("Could not open '" + path + "'");
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

Json FormatSpecific(const storage::Qcow2Info& q) {
  Json data;
  data["compat"] = q.compat;
  data["compression-type"] = storage::CompressionTypeName(q.compression_type);
  if (q.version >= 3) data["lazy-refcounts"] = q.lazy_refcounts;
  data["refcount-bits"] = q.refcount_bits;
  if (!q.data_file.empty()) data["data-file"] = q.data_file;
  if (q.external_data) data["data-file-raw"] = q.data_file_raw;
  if (q.version >= 3) {
    data["corrupt"] = q.corrupt;
    data["extended-l2"] = q.extended_l2;
  }
  return Json{{"type", "qcow2"}, {"data", data}};
}

// QED: the header alone (no backing file opened), in qemu-img's field order. The backing
// format is known only when the header marks the backing file as raw; "dirty-flag" is
// QED_F_NEED_CHECK.
Result<Json> QedInfoJson(const std::string& path, uint64_t actual) {
  storage::OpenOptions o;
  o.read_only = true;
  o.lock = false;
  storage::OpenedFile file =
      TRY_CTX(storage::OpenImageFile(path, o), "Could not open '" + path + "'");
  auto hn = TRY_CTX(storage::qed::ReadHeader(file.fd.get(), file.size, path),
                    "Could not open '" + path + "'");
  Json j;
  if (hn.header.has_backing() && hn.header.backing_is_raw()) j["backing-filename-format"] = "raw";
  j["virtual-size"] = hn.header.image_size;
  j["filename"] = path;
  j["cluster-size"] = hn.header.cluster_size;
  j["format"] = "qed";
  j["actual-size"] = actual;
  if (hn.header.has_backing()) {
    j["full-backing-filename"] = ResolveRelative(path, hn.backing_file);
    j["backing-filename"] = hn.backing_file;
  }
  j["dirty-flag"] = hn.header.need_check();
  return j;
}

}  // namespace

Json SnapshotsJson(const std::vector<storage::SnapshotInfo>& snapshots) {
  Json list = Json::array();
  for (const storage::SnapshotInfo& s : snapshots) {
    Json j;
    if (s.icount) j["icount"] = *s.icount;
    j["vm-clock-nsec"] = s.vm_clock_nsec % 1000000000;
    j["name"] = s.name;
    j["date-sec"] = s.date_sec;
    j["date-nsec"] = s.date_nsec;
    j["vm-clock-sec"] = s.vm_clock_nsec / 1000000000;
    j["id"] = s.id;
    j["vm-state-size"] = s.vm_state_size;
    list.push_back(std::move(j));
  }
  return list;
}

Result<Json> ImageInfoJson(const std::string& path, ImageFormat format, bool force_share) {
  Json j;
  uint64_t actual = TRY(ActualSize(path));
  if (format == ImageFormat::kQcow2) {
    storage::Qcow2Info q = TRY_CTX(storage::InspectQcow2(path), "Could not open '" + path + "'");
    if (!q.snapshots.empty()) j["snapshots"] = SnapshotsJson(q.snapshots);
    if (!q.backing_format.empty()) j["backing-filename-format"] = q.backing_format;
    j["virtual-size"] = q.virtual_size;
    j["filename"] = path;
    j["cluster-size"] = q.cluster_size;
    j["format"] = "qcow2";
    j["actual-size"] = actual;
    j["format-specific"] = FormatSpecific(q);
    if (!q.backing_file.empty()) {
      j["full-backing-filename"] = ResolveRelative(path, q.backing_file);
      j["backing-filename"] = q.backing_file;
    }
    j["dirty-flag"] = q.dirty;
    return j;
  }
  if (format == ImageFormat::kQed) return QedInfoJson(path, actual);
  ToolOpenOptions options;
  options.force_share = force_share;
  auto image = TRY(OpenForTool(path, format, options));
  j["virtual-size"] = image->size();
  j["filename"] = path;
  j["format"] = storage::ImageFormatName(format);
  j["actual-size"] = actual;
  j["dirty-flag"] = false;
  return j;
}

std::string SnapshotTableText(const std::vector<storage::SnapshotInfo>& snapshots) {
  std::string text;
  char line[256];
  std::snprintf(line, sizeof(line), "%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
                "VM CLOCK", "ICOUNT");
  text += line;
  for (const storage::SnapshotInfo& s : snapshots) {
    char date[32] = "";
    time_t t = s.date_sec;
    struct tm tm;
    if (localtime_r(&t, &tm) != nullptr)
      std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t ms = s.vm_clock_nsec / 1000000;
    char clock[32];
    std::snprintf(clock, sizeof(clock), "%02llu:%02llu:%02llu.%03llu",
                  static_cast<unsigned long long>(ms / 3600000),
                  static_cast<unsigned long long>(ms / 60000 % 60),
                  static_cast<unsigned long long>(ms / 1000 % 60),
                  static_cast<unsigned long long>(ms % 1000));
    std::string icount = s.icount ? std::to_string(*s.icount) : "";
    std::snprintf(line, sizeof(line), "%-9s %-16s %8s%20s%13s%11s\n", s.id.c_str(), s.name.c_str(),
                  FormatSize(s.vm_state_size).c_str(), date, clock, icount.c_str());
    text += line;
  }
  return text;
}

std::string ImageInfoText(const Json& j) {
  std::string t;
  t += "image: " + j["filename"].get<std::string>() + "\n";
  t += "file format: " + j["format"].get<std::string>() + "\n";
  uint64_t vsize = j["virtual-size"].get<uint64_t>();
  t += "virtual size: " + FormatSize(vsize) + " (" + std::to_string(vsize) + " bytes)\n";
  t += "disk size: " + FormatSize(j["actual-size"].get<uint64_t>()) + "\n";
  if (j.contains("cluster-size")) {
    t += "cluster_size: " + std::to_string(j["cluster-size"].get<uint64_t>()) + "\n";
  }
  if (j.contains("backing-filename")) {
    std::string name = j["backing-filename"], full = j["full-backing-filename"];
    t += "backing file: " + name;
    if (full != name) t += " (actual path: " + full + ")";
    t += "\n";
    if (j.contains("backing-filename-format")) {
      t += "backing file format: " + j["backing-filename-format"].get<std::string>() + "\n";
    }
  }
  if (j["dirty-flag"].get<bool>()) t += "cleanly shut down: no\n";
  if (j.contains("snapshots")) {
    t += "Snapshot list:\n";
    std::vector<storage::SnapshotInfo> snaps;
    for (const Json& s : j["snapshots"]) {
      storage::SnapshotInfo info;
      info.id = s["id"], info.name = s["name"];
      info.vm_state_size = s["vm-state-size"], info.date_sec = s["date-sec"];
      info.vm_clock_nsec =
          s["vm-clock-sec"].get<uint64_t>() * 1000000000 + s["vm-clock-nsec"].get<uint64_t>();
      if (s.contains("icount")) info.icount = s["icount"].get<uint64_t>();
      snaps.push_back(std::move(info));
    }
    t += SnapshotTableText(snaps);
  }
  if (j.contains("format-specific")) {
    t += "Format specific information:\n";
    for (const auto& [key, value] : j["format-specific"]["data"].items()) {
      std::string name = key;
      for (char& c : name) c = c == '-' ? ' ' : c;
      t += "    " + name + ": " +
           (value.is_string() ? value.get<std::string>() : value.dump(-1, ' ', false, kReplace)) +
           "\n";
    }
  }
  return t;
}

int RunInfo(const InfoArgs& args, Console& console) {
  std::string path = args.filename;
  auto format = ResolveFormat(path, args.format);
  if (!format) return Fail(console, format.error());
  Json chain = Json::array();
  std::set<std::string> seen;
  while (true) {
    if (!seen.insert(path).second) {
      return Fail(console, Err("Backing file '" + path + "' creates an infinite loop"));
    }
    auto info = ImageInfoJson(path, *format, args.force_share);
    if (!info) return Fail(console, info.error());
    chain.push_back(*info);
    if (!args.backing_chain || !info->contains("full-backing-filename")) break;
    path = (*info)["full-backing-filename"];
    std::optional<std::string> fmt;
    if (info->contains("backing-filename-format")) fmt = (*info)["backing-filename-format"];
    // A QED image without a backing format has its backing probed (as kite run does).
    if (!fmt && *format != ImageFormat::kQed) fmt = "raw";
    auto next = ResolveFormat(path, fmt);
    if (!next) return Fail(console, next.error());
    format = next;
  }
  if (args.output == OutputFormat::kJson) {
    console.out << (args.backing_chain ? chain : chain[0]).dump(4, ' ', false, kReplace) << "\n";
    return 0;
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    if (i > 0) console.out << "\n";
    console.out << ImageInfoText(chain[i]);
  }
  return 0;
}

int RunSnapshotList(const std::string& path, OutputFormat output, Console& console) {
  auto snaps = storage::ListSnapshots(path);
  if (!snaps) return Fail(console, snaps.error());
  if (output == OutputFormat::kJson) {
    console.out << SnapshotsJson(*snaps).dump(4, ' ', false, kReplace) << "\n";
    return 0;
  }
  console.out << "Snapshot list:\n" << SnapshotTableText(*snaps);
  return 0;
}

}  // namespace kite::img
