// kite-img resize and snapshot: thin front ends over the storage library's ResizeImage and
// internal-snapshot calls, with qemu-img's messages and size arithmetic (+N, -N, absolute).
#include "storage/img/commands.h"
#include "storage/img/image_open.h"
#include "storage/img/info_format.h"
#include "storage/qcow2/qcow2.h"

namespace kite::img {
namespace {

using storage::ImageFormat;

Result<uint64_t> CurrentSize(const std::string& path, ImageFormat format) {
  if (format == ImageFormat::kQcow2) return TRY(storage::InspectQcow2(path)).virtual_size;
  ToolOpenOptions options;
  options.open_backing = false;
  auto image = TRY(OpenForTool(path, format, options));
  return image->size();
}

}  // namespace

Result<uint64_t> ResizeTarget(uint64_t current, ResizeArgs::Mode mode, uint64_t amount) {
  switch (mode) {
    case ResizeArgs::Mode::kAbsolute:
      return amount;
    case ResizeArgs::Mode::kGrow:
      if (amount > UINT64_MAX / 2 - current) return Err("Image size too large");
      return current + amount;
    case ResizeArgs::Mode::kShrink:
      if (amount > current) return Err("New image size must be positive.");
      return current - amount;
  }
  return Err("bad resize mode");
}

int RunResize(const ResizeArgs& args, Console& console) {
  bool probed = false;
  auto format = ResolveFormat(args.filename, args.format, &probed);
  if (!format) return Fail(console, format.error());
  if (*format == ImageFormat::kVmdk) return Fail(console, Err("VMDK images are read-only"));
  if (*format == ImageFormat::kQed) return Fail(console, Err("QED images are read-only"));
  if (probed && *format == ImageFormat::kRaw) {
    console.err << "WARNING: Image format was not specified for '" << args.filename
                << "' and probing guessed raw.\n";
  }
  auto current = CurrentSize(args.filename, *format);
  if (!current) return Fail(console, current.error());
  auto target = ResizeTarget(*current, args.mode, args.size);
  if (!target) return Fail(console, target.error());
  if (*target < *current && !args.shrink) {
    console.err << "kite-img: Use the --shrink option to perform a shrink operation.\n"
                << "kite-img: warning: Shrinking an image will delete all data beyond the "
                   "shrunken image's end. Before performing such an operation, make sure there "
                   "is no important data there.\n";
    return 1;
  }
  storage::ResizeOptions options;
  options.shrink = args.shrink;
  if (args.preallocation) {
    auto prealloc = storage::ParsePreallocation(*args.preallocation);
    if (!prealloc) return Fail(console, prealloc.error());
    options.preallocation = *prealloc;
  }
  auto resized = storage::ResizeImage(args.filename, *format, *target, options);
  if (!resized) return Fail(console, resized.error());
  if (!args.quiet) console.out << "Image resized.\n";
  return 0;
}

int RunSnapshot(const SnapshotArgs& args, Console& console) {
  auto format = ResolveFormat(args.filename, args.format);
  if (!format) return Fail(console, format.error());
  if (*format != ImageFormat::kQcow2) {
    return Fail(console, Err("Could not open '" + args.filename +
                             "': this image format does not support internal snapshots"));
  }
  using A = SnapshotArgs::Action;
  Result<void> done;
  switch (args.action) {
    case A::kList:
      return RunSnapshotList(args.filename, args.output, console);
    case A::kCreate:
      done = storage::CreateSnapshot(args.filename, args.name);
      if (!done)
        done = std::move(done).error().Context("Could not create snapshot '" + args.name + "'");
      break;
    case A::kApply:
      done = storage::ApplySnapshot(args.filename, args.name);
      if (!done)
        done = std::move(done).error().Context("Could not apply snapshot '" + args.name + "'");
      break;
    case A::kDelete:
      done = storage::DeleteSnapshot(args.filename, args.name);
      if (!done)
        done = std::move(done).error().Context("Could not delete snapshot '" + args.name + "'");
      break;
  }
  if (!done) return Fail(console, done.error());
  return 0;
}

}  // namespace kite::img
