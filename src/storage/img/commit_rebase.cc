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

#include "storage/img/chunk_pipeline.h"
#include "storage/img/commands.h"
#include "storage/img/convert_util.h"
#include "storage/img/image_open.h"
#include "storage/img/progress.h"
#include "storage/qcow2/qcow2.h"

namespace kite::img {
namespace {

using storage::DiskImage;
using storage::ImageFormat;

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

enum ChunkKind { kSkip, kCopy, kZeroes };

// Copies the ranges owned by layers above `base_depth` from `top` into `base`, as a pipeline
// job (chunk_pipeline.h): reads on the chunks' threads, writes in disk order.
class CopyDown final : public ChunkJob {
 public:
  CopyDown(DiskImage& top, DiskImage& base, int base_depth)
      : top_(top), base_(base), base_depth_(base_depth) {}

  Result<void> Plan(Chunk& c, uint64_t max_data, uint64_t rest) override {
    storage::Extent e = TRY(status_.At(c.offset, rest));
    bool owned = e.allocated && e.depth < base_depth_;
    c.kind = !owned ? kSkip : e.zero ? kZeroes : kCopy;
    c.length = c.kind == kCopy ? std::min(max_data, e.length) : e.length;
    return {};
  }

  Result<void> Work(Chunk& c) override {
    if (c.kind != kCopy) return {};
    Reserve(c.data, c.length, kWalkChunk);
    return top_.Read(c.offset, c.data.data(), c.length);
  }

  Result<bool> Finish(Chunk& c) override {
    if (c.kind == kZeroes) TRY(base_.WriteZeroes(c.offset, c.length, false));
    if (c.kind == kCopy) TRY(base_.Write(c.offset, c.data.data(), c.length));
    return true;
  }

 private:
  DiskImage& top_;
  DiskImage& base_;
  StatusCursor status_{top_};  // Plan only
  int base_depth_;
};

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
    CopyDown job(*top, *base, base_depth);
    PipelineOptions walk{.size = top->size(), .requests = kWalkRequests, .chunk_size = kWalkChunk};
    TRY(RunPipeline(job, walk, progress));
    TRY(base->Flush());
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
// the new backing would show something else. A pipeline job: both reads and the comparison on
// the chunks' threads, writes in disk order. Work reads the overlay while Finish writes other
// chunks into it; a write stores what that chunk already read as, so no read sees a change.
class CopyDifferences final : public ChunkJob {
 public:
  CopyDifferences(DiskImage& image, DiskImage* new_backing)
      : image_(image), new_backing_(new_backing) {}

  Result<void> Plan(Chunk& c, uint64_t max_data, uint64_t rest) override {
    storage::Extent e = TRY(status_.At(c.offset, rest));
    c.kind = e.allocated && e.depth == 0 ? kSkip : e.zero ? kZeroes : kCopy;
    c.length = c.kind == kSkip ? e.length : std::min(max_data, e.length);
    return {};
  }

  // Old content zero (block status), new backing zero or absent there: nothing differs.
  Result<void> Work(Chunk& c) override {
    c.ranges.clear();
    if (c.kind == kSkip) return {};
    uint64_t nb_size = new_backing_ ? new_backing_->size() : 0;
    uint64_t nb_len = c.offset < nb_size ? std::min(c.length, nb_size - c.offset) : 0;
    if (c.kind == kZeroes && (nb_len == 0 || TRY(ReadsAsZeros(*new_backing_, c.offset, nb_len)))) {
      return {};
    }
    Reserve(c.data, c.length, kWalkChunk);
    Reserve(c.other, c.length, kWalkChunk);
    if (c.kind == kZeroes) {
      std::fill_n(c.data.begin(), c.length, 0);
    } else {
      TRY(image_.Read(c.offset, c.data.data(), c.length));
    }
    std::fill_n(c.other.begin() + nb_len, c.length - nb_len, 0);
    if (nb_len > 0) TRY(new_backing_->Read(c.offset, c.other.data(), nb_len));
    c.ranges = DifferingRanges(c.data.data(), c.other.data(), c.length, kCompareBlock);
    return {};
  }

  Result<bool> Finish(Chunk& c) override {
    for (const ByteRange& r : c.ranges) {
      TRY(image_.Write(c.offset + r.offset, c.data.data() + r.offset, r.length));
    }
    return true;
  }

 private:
  DiskImage& image_;
  DiskImage* new_backing_;
  StatusCursor status_{image_};  // Plan only
};

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
    CopyDifferences job(*image, new_backing.get());
    PipelineOptions walk{
        .size = image->size(), .requests = kWalkRequests, .chunk_size = kWalkChunk};
    TRY(RunPipeline(job, walk, progress));
    TRY(image->Flush());
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
