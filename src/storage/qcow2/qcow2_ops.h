// Opening a qcow2 file for a path-based maintenance operation (qcow2.h): the file with its
// advisory lock and its Meta, shared by qcow2_ops.cc and qcow2_amend.cc.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "storage/disk_image.h"
#include "storage/qcow2/qcow2_meta.h"

namespace kite::storage::qcow2 {

struct Opened {
  OpenedFile file;
  std::unique_ptr<Meta> meta;
};

// Opens for maintenance. Writable opens refuse corrupt images (unless `allow_corrupt`) and
// repair dirty ones first, as a read-write OpenImage does.
Result<Opened> OpenMeta(const std::string& path, bool writable, bool allow_corrupt = false);

}  // namespace kite::storage::qcow2
