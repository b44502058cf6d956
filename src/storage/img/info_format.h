// kite-img info building blocks: the qemu-img JSON description of one image, its human text,
// and the snapshot table (shared by info and snapshot -l).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/result.h"
#include "storage/disk_image.h"
#include "storage/img/commands.h"
#include "storage/qcow2/qcow2.h"

namespace kite::img {

// One image as `qemu-img info --output=json` describes it (virtual-size, filename, format,
// actual-size, cluster-size, backing-filename, full-backing-filename, backing-filename-format,
// dirty-flag, format-specific, snapshots).
Result<nlohmann::ordered_json> ImageInfoJson(const std::string& path, storage::ImageFormat format,
                                             bool force_share);
std::string ImageInfoText(const nlohmann::ordered_json& info);

nlohmann::ordered_json SnapshotsJson(const std::vector<storage::SnapshotInfo>& snapshots);
// "ID TAG VM SIZE DATE VM CLOCK ICOUNT" table with qemu's column widths.
std::string SnapshotTableText(const std::vector<storage::SnapshotInfo>& snapshots);

int RunSnapshotList(const std::string& path, OutputFormat output, Console& console);

}  // namespace kite::img
