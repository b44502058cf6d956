// kite-img create: option validation (create_spec.h) and the create subcommand itself.
#include <algorithm>
#include <cctype>
#include <iterator>

#include "base/units.h"
#include "storage/img/cli.h"
#include "storage/img/commands.h"
#include "storage/img/create_spec.h"
#include "storage/img/image_open.h"
#include "storage/raw_image.h"

namespace kite::img {
namespace {

using storage::ImageFormat;

Result<void> ApplyQcow2Option(CreateSpec& spec, const std::string& key, const std::string& v) {
  storage::Qcow2CreateOptions& q = spec.qcow2;
  if (key == "compat") {
    if (v == "v2" || v == "0.10")
      q.compat = "0.10";
    else if (v == "v3" || v == "1.1")
      q.compat = "1.1";
    else
      return Err("Invalid parameter '" + v + "' for compat (expected 0.10 or 1.1)");
  } else if (key == "cluster_size") {
    uint64_t size = TRY(ParseSize(v));
    if (size < 512 || size > (2u << 20) || (size & (size - 1)) != 0) {
      return Err("Cluster size must be a power of two between 512 and 2048k");
    }
    q.cluster_size = static_cast<uint32_t>(size);
  } else if (key == "lazy_refcounts") {
    q.lazy_refcounts = TRY(ParseOnOff(key, v));
  } else if (key == "refcount_bits") {
    uint64_t bits = TRY(ParseSize(v));
    if (bits == 0 || bits > 64 || (bits & (bits - 1)) != 0) {
      return Err("Refcount width must be a power of two and may not exceed 64 bits");
    }
    q.refcount_bits = static_cast<int>(bits);
  } else if (key == "compression_type") {
    q.compression_type = TRY(storage::ParseCompressionType(v));
  } else if (key == "extended_l2") {
    q.extended_l2 = TRY(ParseOnOff(key, v));
  } else if (key == "data_file") {
    q.data_file = v;
  } else if (key == "data_file_raw") {
    q.data_file_raw = TRY(ParseOnOff(key, v));
  } else if (key == "encryption" || key == "encrypt.format") {
    return Err("Parameter '" + key + "' is not supported by kite");
  } else {
    return Err("Invalid parameter '" + key + "'");
  }
  return {};
}

Result<void> CheckQcow2Combination(const storage::Qcow2CreateOptions& q) {
  if (q.compat == "0.10") {
    if (q.lazy_refcounts)
      return Err(
          "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or "
          "greater)");
    if (q.refcount_bits != 16)
      return Err(
          "Different refcount widths than 16 bits require compatibility level 1.1 or above (use "
          "compat=1.1 or greater)");
    if (q.compression_type != storage::CompressionType::kZlib) {
      return Err("Compression type other than zlib requires compat=1.1 or greater");
    }
    if (q.extended_l2) {
      return Err(
          "Extended L2 entries are only supported with compatibility level 1.1 and above (use "
          "version=v3 or greater)");
    }
  }
  if (q.extended_l2 && q.cluster_size < 16384) {
    return Err("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
  }
  return {};
}

// Version strings go into the descriptor between quotes: a quote or newline would end it.
Result<std::string> VersionString(const std::string& key, const std::string& v) {
  bool plain = !v.empty() && std::all_of(v.begin(), v.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
  if (!plain)
    return Err("Invalid " + key + " '" + v + "' (expected letters, digits, '.', '-', '_')");
  return v;
}

Result<void> ApplyVmdkOption(VmdkCreateOptions& o, const std::string& key, const std::string& v) {
  if (key == "subformat") {
    static constexpr const char* kKnown[] = {"monolithicSparse", "monolithicFlat",
                                             "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
                                             "streamOptimized"};
    if (std::find(std::begin(kKnown), std::end(kKnown), v) == std::end(kKnown)) {
      return Err("Unknown subformat '" + v +
                 "' (expected monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, "
                 "twoGbMaxExtentFlat or streamOptimized)");
    }
    o.subformat = v;
    o.subformat_given = true;
  } else if (key == "adapter_type") {
    if (v != "ide" && v != "lsilogic" && v != "buslogic" && v != "legacyESX") {
      return Err("Unknown adapter type '" + v +
                 "' (expected ide, lsilogic, buslogic or legacyESX)");
    }
    o.adapter_type = v;
    o.adapter_type_given = true;
  } else if (key == "hwversion") {
    o.hwversion = TRY(VersionString(key, v));
  } else if (key == "toolsversion") {
    o.toolsversion = TRY(VersionString(key, v));
  } else if (key == "compat6") {
    o.compat6 = TRY(ParseOnOff(key, v));
  } else if (key == "zeroed_grain") {
    o.zeroed_grain = TRY(ParseOnOff(key, v));
    o.zeroed_grain_given = true;
  } else {
    return Err("Invalid parameter '" + key + "'");
  }
  return {};
}

Result<void> CheckVmdkOptions(const VmdkCreateOptions& o) {
  if (o.compat6 && !o.hwversion.empty()) {
    return Err("compat6 cannot be enabled with hwversion set");
  }
  if (o.subformat != "streamOptimized" && o.subformat != "monolithicSparse") {
    return Err("kite-img writes VMDK subformats streamOptimized and monolithicSparse only, not " +
               o.subformat);
  }
  return {};
}

// qemu-img's order: size adapter_type compat6 hwversion toolsversion subformat zeroed_grain.
std::string VmdkFormattingOptions(const VmdkCreateOptions& o) {
  std::string line;
  if (o.adapter_type_given) line += " adapter_type=" + o.adapter_type;
  line += std::string(" compat6=") + (o.compat6 ? "on" : "off");
  line += " hwversion=" + (o.hwversion.empty() ? std::string("undefined") : o.hwversion);
  if (!o.toolsversion.empty()) line += " toolsversion=" + o.toolsversion;
  if (o.subformat_given) line += " subformat=" + o.subformat;
  if (o.zeroed_grain_given) line += std::string(" zeroed_grain=") + (o.zeroed_grain ? "on" : "off");
  return line;
}

}  // namespace

Result<bool> ParseOnOff(const std::string& name, const std::string& value) {
  if (value == "on" || value == "true") return true;
  if (value == "off" || value == "false") return false;
  return Err("Parameter '" + name + "' expects 'on' or 'off'");
}

Result<CreateSpec> BuildCreateSpec(const CreateRequest& r) {
  CreateSpec spec;
  auto format = storage::ParseImageFormat(r.format);
  if (!format) return Err("Unknown file format '" + r.format + "'");
  spec.format = *format;
  if (spec.format == ImageFormat::kQed) return Err("kite-img cannot create QED images");
  std::string backing = r.backing;
  std::optional<std::string> backing_format = r.backing_format;
  std::optional<uint64_t> size = r.size;
  auto options = TRY(ParseOptionList(r.options));
  for (const auto& [key, value] : options) {
    if (key == "size") {
      size = TRY(ParseSize(value));
    } else if (key == "backing_file") {
      backing = value;
    } else if (key == "backing_fmt") {
      backing_format = value;
    } else if (spec.format == ImageFormat::kVmdk) {
      TRY(ApplyVmdkOption(spec.vmdk, key, value));
    } else if (key == "preallocation") {
      spec.preallocation = TRY(storage::ParsePreallocation(value));
    } else if (spec.format == ImageFormat::kRaw) {
      return Err("Invalid parameter '" + key + "'");
    } else {
      TRY(ApplyQcow2Option(spec, key, value));
    }
  }
  if (!backing.empty()) {
    if (spec.format != ImageFormat::kQcow2) {
      return Err("Backing file not supported for file format '" + r.format + "'");
    }
    if (!backing_format) return Err("Backing file specified without backing format");
    TRY(storage::ParseImageFormat(*backing_format));
    if (spec.preallocation != storage::Preallocation::kOff && !spec.qcow2.extended_l2) {
      return Err(
          "Backing file and preallocation can only be used at the same time if "
          "extended_l2 is on");
    }
  }
  if (!size && backing.empty()) return Err("Image creation needs a size parameter");
  spec.size_given = size.has_value();
  spec.size = size.value_or(0);
  spec.qcow2.size = spec.size;
  spec.qcow2.backing_file = backing;
  spec.qcow2.backing_format = backing_format.value_or("");
  spec.qcow2.preallocation = spec.preallocation;
  if (spec.format == ImageFormat::kQcow2) TRY(CheckQcow2Combination(spec.qcow2));
  if (spec.format == ImageFormat::kVmdk) TRY(CheckVmdkOptions(spec.vmdk));
  return spec;
}

std::string FormattingLine(const std::string& filename, const CreateSpec& spec) {
  std::string line = "Formatting '" + filename + "', fmt=" + ImageFormatName(spec.format);
  std::string prealloc;
  if (spec.preallocation != storage::Preallocation::kOff) {
    prealloc = std::string(" preallocation=") + storage::PreallocationName(spec.preallocation);
  }
  if (spec.format == ImageFormat::kRaw)
    return line + " size=" + std::to_string(spec.size) + prealloc;
  if (spec.format == ImageFormat::kVmdk)
    return line + " size=" + std::to_string(spec.size) + VmdkFormattingOptions(spec.vmdk);
  const storage::Qcow2CreateOptions& q = spec.qcow2;
  line += " cluster_size=" + std::to_string(q.cluster_size) +
          " extended_l2=" + (q.extended_l2 ? "on" : "off") + prealloc;
  line += std::string(" compression_type=") + storage::CompressionTypeName(q.compression_type);
  line += " size=" + std::to_string(spec.size);
  if (!q.backing_file.empty()) {
    line += " backing_file=" + q.backing_file + " backing_fmt=" + q.backing_format;
  }
  if (q.compat != "1.1") line += " compat=" + q.compat;
  if (!q.data_file.empty()) line += " data_file=" + q.data_file;
  if (q.data_file_raw) line += " data_file_raw=on";
  line += std::string(" lazy_refcounts=") + (q.lazy_refcounts ? "on" : "off");
  line += " refcount_bits=" + std::to_string(q.refcount_bits);
  return line;
}

Result<void> CreateImage(const std::string& filename, const CreateSpec& spec, bool sync) {
  if (spec.format == ImageFormat::kVmdk) {  // no grain: only the metadata
    auto stream = TRY(VmdkWriter::Create(filename, spec.size, spec.vmdk));
    return stream->Finish(sync);
  }
  if (spec.format == ImageFormat::kRaw) {
    return storage::CreateRaw(filename, spec.size, spec.preallocation, sync);
  }
  storage::Qcow2CreateOptions q = spec.qcow2;
  q.size = spec.size;
  q.sync = sync;
  return storage::CreateQcow2(filename, q);
}

int RunCreate(const CreateArgs& args, Console& console) {
  auto spec =
      BuildCreateSpec({args.format, args.options, args.backing, args.backing_format, args.size});
  if (!spec) return Fail(console, std::move(spec).error().Context(args.filename));
  const std::string& backing = spec->qcow2.backing_file;
  if (!backing.empty() && (!args.unsafe || !spec->size_given)) {
    // Like qemu-img: the backing file must open, and gives the size when none was named.
    std::string resolved = ResolveRelative(args.filename, backing);
    auto format = ResolveFormat(resolved, spec->qcow2.backing_format);
    if (!format) return Fail(console, format.error());
    ToolOpenOptions options;
    options.force_share = true;
    auto image = OpenForTool(resolved, *format, options);
    if (!image) return Fail(console, std::move(image).error().Context(args.filename));
    if (!spec->size_given) spec->size = (*image)->size();
  }
  if (!args.quiet) console.out << FormattingLine(args.filename, *spec) << "\n";
  auto created = CreateImage(args.filename, *spec);
  if (!created) return Fail(console, std::move(created).error().Context(args.filename));
  return 0;
}

}  // namespace kite::img
