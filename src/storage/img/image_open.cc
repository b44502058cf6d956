// Opening images for kite-img (see image_open.h).
#include "storage/img/image_open.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "base/unique_fd.h"
#include "storage/vmdk/vmdk_format.h"
#include "storage/vmdk/vmdk_image.h"

namespace kite::img {

using storage::ImageFormat;

Result<ImageFormat> ProbeFormat(const std::string& path) {
  ImageFormat format = TRY(storage::ProbeImageFormat(path));
  if (format != ImageFormat::kRaw) return format;
  // A VMDK descriptor file is text (qemu-img probes it the same way); only the tool knows it.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return SysErr("Could not open '" + path + "'");
  std::string head(4096, '\0');
  ssize_t n = ::pread(fd.get(), head.data(), head.size(), 0);
  if (n < 0) return SysErr("Could not read '" + path + "'");
  head.resize(static_cast<size_t>(n));
  return storage::LooksLikeVmdkDescriptor(head) ? ImageFormat::kVmdk : ImageFormat::kRaw;
}

Result<ImageFormat> ResolveFormat(const std::string& path, const std::optional<std::string>& format,
                                  bool* probed) {
  if (probed != nullptr) *probed = !format.has_value();
  if (format) {
    auto f = storage::ParseImageFormat(*format);
    if (!f) return Err("Unknown file format '" + *format + "'");
    return *f;
  }
  return ProbeFormat(path);
}

Result<std::unique_ptr<storage::DiskImage>> OpenForTool(const std::string& path, ImageFormat format,
                                                        const ToolOpenOptions& options) {
  if (format == ImageFormat::kVmdk) {
    if (!options.read_only) return Err(path + ": VMDK images can only be read by kite-img");
    return storage::OpenVmdk(path);
  }
  if (format == ImageFormat::kQed && !options.read_only) {
    return Err(path + ": QED images can only be read by kite-img");
  }
  storage::OpenOptions o;
  o.read_only = options.read_only;
  o.force_share = options.force_share;
  o.open_backing = options.open_backing;
  o.allow_unformatted_backing_as_raw = options.allow_unformatted_backing_as_raw;
  o.follow_data_file = true;  // the image's owner runs kite-img (qemu-img follows it too)
  o.cache = options.cache;
  auto image = storage::OpenImage(path, format, o);
  if (!image) return std::move(image).error().Context("Could not open '" + path + "'");
  return std::move(*image);
}

std::string ResolveRelative(const std::string& image_path, const std::string& name) {
  if (name.empty() || name.front() == '/') return name;
  size_t slash = image_path.rfind('/');
  if (slash == std::string::npos) return name;
  return image_path.substr(0, slash + 1) + name;
}

}  // namespace kite::img
