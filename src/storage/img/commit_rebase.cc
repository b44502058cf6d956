// kite-img commit and rebase: moving data between a qcow2 overlay and its backing chain.
//   commit: copies every range the overlay (and layers above the base) own into the base, then
//           empties the overlay (not with -d or -b, as qemu-img).
//   rebase: safe mode copies into the overlay each range where the old and the new backing
//           content differ (so the guest sees the same disk), then rewrites the header; -u
//           only rewrites the header.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "storage/img/commands.h"
#include "storage/img/convert_util.h"
#include "storage/img/image_open.h"
#include "storage/img/progress.h"
#include "storage/qcow2/qcow2.h"

namespace kite::img {
namespace {

using storage::DiskImage;
using storage::ImageFormat;

constexpr uint64_t kChunk = 2 << 20;

bool SameFile(const std::string& a, const std::string& b) {
  char ra[PATH_MAX], rb[PATH_MAX];
  if (::realpath(a.c_str(), ra) == nullptr || ::realpath(b.c_str(), rb) == nullptr) return a == b;
  return std::string(ra) == rb;
}

// Finds `base` (or the direct backing file when empty) in `top`'s chain; returns its depth.
Result<std::pair<DiskImage*, int>> FindBase(DiskImage& top, const std::string& base) {
  int depth = 1;
  for (DiskImage* layer = top.backing(); layer != nullptr; layer = layer->backing(), ++depth) {
    if (base.empty() || SameFile(layer->path(), base)) return std::make_pair(layer, depth);
  }
  if (base.empty()) return Err("Image does not have a backing file");
  return Err("Did not find '" + base + "' in the backing chain of '" + top.path() + "'");
}

// Copies the ranges owned by layers above `base_depth` from `top` into `base`.
Result<void> CopyDown(DiskImage& top, DiskImage& base, int base_depth, Progress& progress) {
  std::vector<uint8_t> buf(kChunk);
  for (uint64_t offset = 0; offset < top.size();) {
    storage::Extent e = TRY(top.BlockStatus(offset, std::min(kChunk, top.size() - offset)));
    if (e.length == 0) return Err(top.path() + ": block status returned an empty extent");
    if (e.allocated && e.depth < base_depth) {
      if (e.zero) {
        TRY(base.WriteZeroes(offset, e.length, false));
      } else {
        TRY(top.Read(offset, buf.data(), e.length));
        TRY(base.Write(offset, buf.data(), e.length));
      }
    }
    offset += e.length;
    progress.Advance(e.length);
  }
  return base.Flush();
}

// Replaces the overlay by an empty one with the same creation parameters and backing file.
Result<void> MakeEmpty(const std::string& path) {
  storage::Qcow2Info info = TRY(storage::InspectQcow2(path));
  if (!info.snapshots.empty()) {
    return Err("'" + path + "' has internal snapshots: it was left as it was (data committed)");
  }
  storage::Qcow2CreateOptions o;
  o.size = info.virtual_size;
  o.cluster_size = info.cluster_size;
  o.compat = info.compat;
  o.lazy_refcounts = info.lazy_refcounts;
  o.refcount_bits = info.refcount_bits;
  o.backing_file = info.backing_file;
  o.backing_format = info.backing_format;
  o.compression_type = info.compression_type;
  o.size_from_backing = false;
  std::string temp = path + ".kite-img-empty";
  TRY(storage::CreateQcow2(temp, o));
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    Error e = SysErr("renaming " + temp + " to " + path);
    ::unlink(temp.c_str());
    return e;
  }
  return {};
}

Result<void> Commit(const CommitArgs& args, Console& console) {
  ImageFormat format = TRY(ResolveFormat(args.filename, args.format));
  if (format != ImageFormat::kQcow2) return Err("Image does not have a backing file");
  ToolOpenOptions top_options;
  top_options.force_share = true;  // no locks: the base is opened for writing below
  auto top = TRY(OpenForTool(args.filename, format, top_options));
  auto [base_layer, base_depth] = TRY(FindBase(*top, args.base));
  const std::string base_path = base_layer->path();
  const ImageFormat base_format = base_layer->format();
  if (base_layer->size() < top->size()) {
    TRY(storage::ResizeImage(base_path, base_format, top->size(), {}));
  }
  ToolOpenOptions base_options;
  base_options.read_only = false;
  auto base = TRY(OpenForTool(base_path, base_format, base_options));
  {
    Progress progress(console.out, args.progress && console.tty, top->size());
    TRY(CopyDown(*top, *base, base_depth, progress));
  }
  base.reset();
  top.reset();
  if (!args.drop && args.base.empty()) {
    auto emptied = MakeEmpty(args.filename);
    if (!emptied) console.err << "kite-img: warning: " << emptied.error().message() << "\n";
  }
  return {};
}

// Safe rebase: where the overlay does not own a range, make it own the old content wherever
// the new backing would show something else.
Result<void> CopyDifferences(DiskImage& image, DiskImage* new_backing, Progress& progress) {
  std::vector<uint8_t> old_data(kChunk), new_data(kChunk);
  for (uint64_t offset = 0; offset < image.size();) {
    storage::Extent e = TRY(image.BlockStatus(offset, std::min(kChunk, image.size() - offset)));
    if (e.length == 0) return Err(image.path() + ": block status returned an empty extent");
    if (!(e.allocated && e.depth == 0)) {
      TRY(image.Read(offset, old_data.data(), e.length));
      std::fill_n(new_data.begin(), e.length, 0);
      uint64_t nb_size = new_backing ? new_backing->size() : 0;
      if (offset < nb_size) {
        TRY(new_backing->Read(offset, new_data.data(), std::min(e.length, nb_size - offset)));
      }
      for (const ByteRange& r :
           DifferingRanges(old_data.data(), new_data.data(), e.length, kCompareBlock)) {
        TRY(image.Write(offset + r.offset, old_data.data() + r.offset, r.length));
      }
    }
    offset += e.length;
    progress.Advance(e.length);
  }
  return image.Flush();
}

Result<void> Rebase(const RebaseArgs& args, Console& console) {
  ImageFormat format = TRY(ResolveFormat(args.filename, args.format));
  if (format != ImageFormat::kQcow2) {
    return Err("'" + args.filename + "': raw images do not support backing files");
  }
  if (!args.backing.empty() && !args.backing_format) {
    return Err("Backing file specified without backing format (-F); kite never probes");
  }
  std::string new_format = args.backing_format.value_or("");
  if (!args.unsafe) {
    ToolOpenOptions options;
    options.read_only = false;
    auto image = TRY(OpenForTool(args.filename, format, options));
    std::unique_ptr<DiskImage> new_backing;
    if (!args.backing.empty()) {
      std::string resolved = ResolveRelative(args.filename, args.backing);
      ImageFormat nb_format = TRY(ResolveFormat(resolved, new_format));
      ToolOpenOptions nb_options;
      nb_options.force_share = true;
      new_backing = TRY(OpenForTool(resolved, nb_format, nb_options));
    }
    Progress progress(console.out, args.progress && console.tty, image->size());
    TRY(CopyDifferences(*image, new_backing.get(), progress));
  }
  return storage::SetBackingFile(args.filename, args.backing, new_format);
}

}  // namespace

int RunCommit(const CommitArgs& args, Console& console) {
  auto done = Commit(args, console);
  if (!done) return Fail(console, done.error());
  if (!args.quiet) console.out << "Image committed.\n";
  return 0;
}

int RunRebase(const RebaseArgs& args, Console& console) {
  auto done = Rebase(args, console);
  if (!done) return Fail(console, done.error());
  return 0;
}

}  // namespace kite::img
