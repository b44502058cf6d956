// Format, cache-mode and preallocation names, and OpenImage with its backing-chain rules
// (BAD_INPUTS I14-I18): explicit formats only, relative names against the overlay's
// directory, no protocol strings, regular files only, loops found by inode, a depth limit.
#include "storage/disk_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "base/unique_fd.h"
#include "storage/qcow2/qcow2_header.h"
#include "storage/qcow2/qcow2_image.h"
#include "storage/qcow2/qcow2_io.h"
#include "storage/qed/qed_image.h"
#include "storage/raw_image.h"
#include "storage/vmdk/vmdk_image.h"

namespace kite::storage {
namespace {

struct ChainState {
  std::vector<std::pair<uint64_t, uint64_t>> seen;  // (dev, ino) of every layer so far
};

// A file name stored in an image (`what`: "backing file", "data file") as a path: relative
// names against the image's directory, or against the working directory with
// `relative_to_cwd` (qemu's rule for data file names).
Result<std::string> ResolveBacking(const std::string& overlay, const std::string& name,
                                   const OpenOptions& options,
                                   const std::string& what = "backing file",
                                   bool relative_to_cwd = false) {
  if (name.rfind("json:", 0) == 0) {
    return Err(overlay + ": " + what + " '" + name + "': json: filenames are not supported");
  }
  size_t colon = name.find(':'), slash = name.find('/');
  if (colon != std::string::npos && (slash == std::string::npos || colon < slash)) {
    return Err(overlay + ": " + what + " '" + name + "': protocol names are not supported");
  }
  std::filesystem::path p(name);
  if (p.is_relative() && !relative_to_cwd) p = std::filesystem::path(overlay).parent_path() / p;
  if (options.backing_root.empty()) return p.string();
  std::error_code ec;
  auto st = std::filesystem::symlink_status(p, ec);
  if (!ec && std::filesystem::is_symlink(st)) {
    return Err(overlay + ": " + what + " '" + name + "' is a symbolic link (not allowed)");
  }
  auto real = std::filesystem::weakly_canonical(p, ec);
  auto root = std::filesystem::weakly_canonical(options.backing_root, ec);
  auto rel = real.lexically_relative(root);
  if (ec || rel.empty() || *rel.begin() == "..") {
    return Err(overlay + ": " + what + " '" + name + "' is outside " + options.backing_root);
  }
  return real.string();
}

Result<std::unique_ptr<DiskImage>> OpenLayer(const std::string& path, ImageFormat format,
                                             const OpenOptions& options, int depth,
                                             ChainState& chain);

// Whether two names reach the same file (realpath); false when either does not resolve.
bool SameFile(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return false;
  std::error_code ec1, ec2;
  auto ca = std::filesystem::canonical(a, ec1);
  auto cb = std::filesystem::canonical(b, ec2);
  return !ec1 && !ec2 && ca == cb;
}

// A backing file as an image header names it: `format` empty means the header gives none;
// `probe` (QED without its raw-backing bit) means the format is guessed from the file.
struct BackingRef {
  std::string name;
  std::string format;
  bool probe = false;
};

Result<std::unique_ptr<DiskImage>> OpenBacking(const std::string& overlay, const BackingRef& ref,
                                               const OpenOptions& options, int depth,
                                               ChainState& chain) {
  std::string path = TRY(ResolveBacking(overlay, ref.name, options));
  ImageFormat format = ImageFormat::kRaw;
  if (ref.probe) {
    format = TRY_CTX(ProbeImageFormat(path), overlay + ": backing file");
  } else if (ref.format.empty()) {
    if (!options.allow_unformatted_backing_as_raw) {
      return Err(overlay + ": backing file '" + ref.name +
                 "' has no backing format; kite does not probe formats (set one with "
                 "'kite-img rebase -u -F')");
    }
  } else {
    format = TRY_CTX(ParseImageFormat(ref.format), overlay + ": backing format");
  }
  if (depth + 1 > options.max_backing_depth) {
    return Err(overlay + ": Maximum disk nesting depth exceeded");
  }
  OpenOptions bopts = options;
  bopts.read_only = !SameFile(path, options.writable_backing);
  if (bopts.read_only && bopts.cache == CacheMode::kWritethrough) {
    bopts.cache = CacheMode::kWriteback;
  }
  return OpenLayer(path, format, bopts, depth + 1, chain);
}

// A qcow2 image's external data file: the caller's, or the header's name checked as a
// backing file name is (no protocol or json: names, within backing_root) but, as qemu-img
// resolves it, relative to the working directory; opened with the image's flags and lock. It
// may be a block device.
Result<std::optional<qcow2::ExternalData>> OpenDataFile(const std::string& path,
                                                        const qcow2::Header& h,
                                                        const OpenOptions& options, int depth) {
  if (!h.external_data()) return std::optional<qcow2::ExternalData>();
  std::string data_path;
  if (depth == 0 && !options.data_file.empty()) {
    data_path = options.data_file;  // named by the user: taken as given
  } else if (h.data_file.empty()) {
    return Err("Could not open '" + path + "': 'data-file' is required for this image");
  } else if (!options.follow_data_file) {
    return Err(path + ": the image keeps its data in the external data file '" + h.data_file +
               "'; kite opens it only when the disk names it (data_file=PATH)");
  } else {
    data_path = TRY(ResolveBacking(path, h.data_file, options, "data file", true));
  }
  OpenedFile file = TRY_CTX(OpenImageFile(data_path, options, true), path + ": data file");
  return std::optional<qcow2::ExternalData>(qcow2::ExternalData{data_path, std::move(file)});
}

// QED: read-only only; the backing file is raw when the header says so, else probed, which
// is safe because no guest can write any layer of a chain under a read-only QED image.
Result<std::unique_ptr<DiskImage>> OpenQedLayer(const std::string& path, OpenedFile file,
                                                const OpenOptions& options, int depth,
                                                ChainState& chain) {
  if (!options.read_only) {
    return Err(path +
               ": QED images can only be opened read-only in kite (readonly=on, or "
               "convert the image to qcow2 to write it)");
  }
  qed::HeaderAndName hn = TRY(qed::ReadHeader(file.fd.get(), file.size, path));
  std::unique_ptr<DiskImage> backing;
  if (hn.header.has_backing() && options.open_backing) {
    BackingRef ref{hn.backing_file, hn.header.backing_is_raw() ? "raw" : "",
                   !hn.header.backing_is_raw()};
    backing = TRY(OpenBacking(path, ref, options, depth, chain));
  }
  return qed::OpenQed({path, std::move(file), hn.header, std::move(backing)});
}

// VMDK: read-only only, refused before the file is opened (or locked) for writing.
Error VmdkReadOnly(const std::string& path) {
  return Err(path +
             ": VMDK images are read-only in kite: open it with readonly=on, or put a qcow2 "
             "overlay over it (kite-img create -f qcow2 -b " +
             path + " -F vmdk OVERLAY.qcow2)");
}

Result<std::unique_ptr<DiskImage>> OpenLayer(const std::string& path, ImageFormat format,
                                             const OpenOptions& options, int depth,
                                             ChainState& chain) {
  if (format == ImageFormat::kVmdk && !options.read_only) return VmdkReadOnly(path);
  // Backing files must be regular files (I14); the top image may be a block device.
  // cache=none opens every layer with O_DIRECT (qcow2 bounces unaligned I/O: qcow2_io.h), but
  // VMDK's small unaligned reads of a read-only file go through the page cache.
  OpenOptions file_opts = options;
  file_opts.lock = false;  // after the loop check: a loop would otherwise look like a conflict
  if (format == ImageFormat::kVmdk) file_opts.cache = CacheMode::kWriteback;
  OpenedFile file = TRY(OpenImageFile(path, file_opts, depth == 0));
  for (const auto& [dev, ino] : chain.seen) {
    if (dev == file.dev && ino == file.ino) {
      return Err("Backing file '" + path + "' creates an infinite loop");
    }
  }
  if (options.lock && !options.force_share) {
    TRY(LockImageFile(file.fd.get(), path, !options.read_only));
  }
  chain.seen.emplace_back(file.dev, file.ino);
  switch (format) {
    case ImageFormat::kRaw:
      return std::unique_ptr<DiskImage>(new RawImage(path, std::move(file), options));
    case ImageFormat::kQcow2: {
      std::vector<uint8_t> first(std::min<uint64_t>(file.size, 1u << qcow2::kMaxClusterBits));
      TRY(qcow2::FileIo(file.fd.get()).Read(first.data(), first.size(), 0));
      qcow2::Header h = TRY(qcow2::ParseHeader(first, file.size, path));
      std::unique_ptr<DiskImage> backing;
      if (!h.backing_file.empty() && options.open_backing) {
        backing = TRY(OpenBacking(path, {h.backing_file, h.backing_format}, options, depth, chain));
      }
      auto data = TRY(OpenDataFile(path, h, options, depth));
      auto image = TRY(qcow2::Qcow2Image::Open(path, std::move(file), options, std::move(backing),
                                               std::move(data)));
      return std::unique_ptr<DiskImage>(std::move(image));
    }
    case ImageFormat::kQed:
      return OpenQedLayer(path, std::move(file), options, depth, chain);
    case ImageFormat::kVmdk:
      return OpenVmdk(path, std::move(file.fd), file.size);
  }
  return Err(path + ": the " + std::string(ImageFormatName(format)) +
             " format is not supported for I/O");
}

}  // namespace

Result<ImageFormat> ParseImageFormat(std::string_view name) {
  if (name == "raw") return ImageFormat::kRaw;
  if (name == "qcow2") return ImageFormat::kQcow2;
  if (name == "vmdk") return ImageFormat::kVmdk;
  if (name == "qed") return ImageFormat::kQed;
  return Err("Unknown image format '" + std::string(name) + "' (expected raw, qcow2, vmdk or qed)");
}

const char* ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kRaw:
      return "raw";
    case ImageFormat::kQcow2:
      return "qcow2";
    case ImageFormat::kVmdk:
      return "vmdk";
    case ImageFormat::kQed:
      return "qed";
  }
  return "unknown";
}

Result<CacheMode> ParseCacheMode(std::string_view name) {
  if (name == "writeback") return CacheMode::kWriteback;
  if (name == "writethrough") return CacheMode::kWritethrough;
  if (name == "none" || name == "directsync") return CacheMode::kNone;
  if (name == "unsafe") return CacheMode::kUnsafe;
  return Err("Unknown cache mode '" + std::string(name) +
             "' (expected writeback, writethrough, none or unsafe)");
}

Result<Preallocation> ParsePreallocation(std::string_view name) {
  if (name == "off") return Preallocation::kOff;
  if (name == "metadata") return Preallocation::kMetadata;
  if (name == "falloc") return Preallocation::kFalloc;
  if (name == "full") return Preallocation::kFull;
  return Err("Invalid preallocation mode: '" + std::string(name) + "'");
}

const char* PreallocationName(Preallocation prealloc) {
  switch (prealloc) {
    case Preallocation::kOff:
      return "off";
    case Preallocation::kMetadata:
      return "metadata";
    case Preallocation::kFalloc:
      return "falloc";
    case Preallocation::kFull:
      return "full";
  }
  return "off";
}

Result<ImageFormat> ProbeImageFormat(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return SysErr("Could not open '" + path + "'");
  unsigned char magic[4] = {};
  ssize_t n = ::pread(fd.get(), magic, sizeof(magic), 0);
  if (n < 0) return SysErr("Could not read '" + path + "'");
  if (n == 4 && std::memcmp(magic, "QFI\xfb", 4) == 0) return ImageFormat::kQcow2;
  if (n == 4 && std::memcmp(magic, "KDMV", 4) == 0) return ImageFormat::kVmdk;
  if (n == 4 && std::memcmp(magic, "QED\0", 4) == 0) return ImageFormat::kQed;
  return ImageFormat::kRaw;
}

Result<std::unique_ptr<DiskImage>> OpenImage(const std::string& path, ImageFormat format,
                                             const OpenOptions& options) {
  ChainState chain;
  return OpenLayer(path, format, options, 0, chain);
}

std::optional<std::pair<DiskImage*, int>> FindLayer(DiskImage& top, const std::string& path) {
  int depth = 0;
  for (DiskImage* layer = &top; layer; layer = layer->backing(), ++depth) {
    if (layer->path() == path || SameFile(layer->path(), path)) return std::pair{layer, depth};
  }
  return std::nullopt;
}

Result<void> GrowOpenImage(DiskImage& image, uint64_t new_size) {
  if (image.read_only()) return Err(image.path() + ": the image is read-only");
  if (new_size < image.size()) {
    return Err(image.path() + ": new size " + std::to_string(new_size) +
               " is smaller than the current " + std::to_string(image.size()) +
               " (shrinking a running disk would cut off the guest's data)");
  }
  if (auto* qcow = dynamic_cast<qcow2::Qcow2Image*>(&image)) return qcow->Resize(new_size, {});
  if (auto* raw = dynamic_cast<RawImage*>(&image)) return raw->Grow(new_size);
  return Err(image.path() + ": resizing " + ImageFormatName(image.format()) +
             " images is not supported");
}

}  // namespace kite::storage
