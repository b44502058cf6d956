// Opening images for kite-img: the format named with -f, or (kite-img only, never the VMM)
// probed from the first bytes as qemu-img does; VMDK through kite-img's own reader.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "storage/disk_image.h"

namespace kite::img {

// "qcow2" when the file starts with QFI\xfb, "vmdk" for KDMV or a VMDK descriptor file's text,
// "qed" for QED\0, else "raw".
Result<storage::ImageFormat> ProbeFormat(const std::string& path);

// The -f value if given (validated), else the probed format. `probed` tells the caller
// whether it guessed (write commands warn about guessed raw images, as qemu-img does).
Result<storage::ImageFormat> ResolveFormat(const std::string& path,
                                           const std::optional<std::string>& format,
                                           bool* probed = nullptr);

struct ToolOpenOptions {
  bool read_only = true;
  bool force_share = false;  // -U
  bool open_backing = true;
  // kite-img is run by the image's owner: a qcow2 backing file without a backing-format
  // extension is opened as raw (qemu-img probes it; kite never probes a backing file).
  bool allow_unformatted_backing_as_raw = true;
  storage::CacheMode cache = storage::CacheMode::kWriteback;  // -t (convert: the output's)
};

Result<std::unique_ptr<storage::DiskImage>> OpenForTool(const std::string& path,
                                                        storage::ImageFormat format,
                                                        const ToolOpenOptions& options);

// The directory part of `path` joined with `name` unless `name` is absolute: how a backing
// file name stored in an image resolves (qemu's "full-backing-filename").
std::string ResolveRelative(const std::string& image_path, const std::string& name);

}  // namespace kite::img
