// kite-img amend: changes the creation options of an existing qcow2 image, as qemu-img amend.
// The -o list is checked here (qemu-img's messages: options only for creation, encryption and
// data file options on images without them, the backing file); the change itself is the
// storage library's AmendQcow2 (compat, refcount_bits, lazy_refcounts, size, data_file,
// data_file_raw).
#include <algorithm>
#include <optional>
#include <span>
#include <string>

#include "base/units.h"
#include "storage/img/cli.h"
#include "storage/img/commands.h"
#include "storage/img/create_spec.h"
#include "storage/img/image_open.h"
#include "storage/img/progress.h"
#include "storage/qcow2/qcow2.h"

namespace kite::img {
namespace {

using storage::ImageFormat;

// What the -o list asks for, before it is compared with the image.
struct AmendRequest {
  storage::Qcow2AmendOptions qcow2;
  bool backing_given = false;  // backing_file or backing_fmt named
  std::optional<std::string> backing_file, backing_format;
  bool encryption = false;  // an encrypt.* option that amends keyslots
};

// qcow2 creation options qemu-img amend refuses by name (its "only for creation" list).
constexpr std::string_view kCreateOnly[] = {
    "cluster_size",      "preallocation",    "compression_type",       "extended_l2",
    "encryption",        "encrypt.format",   "encrypt.cipher-alg",     "encrypt.cipher-mode",
    "encrypt.ivgen-alg", "encrypt.hash-alg", "encrypt.ivgen-hash-alg", "encrypt.key-secret"};
constexpr std::string_view kEncryptAmend[] = {"encrypt.new-secret", "encrypt.old-secret",
                                              "encrypt.state", "encrypt.keyslot",
                                              "encrypt.iter-time"};

bool OneOf(std::span<const std::string_view> names, const std::string& key) {
  return std::find(names.begin(), names.end(), key) != names.end();
}

Result<AmendRequest> ParseAmendOptions(const std::vector<std::string>& lists) {
  AmendRequest r;
  for (const auto& [key, v] : TRY(ParseOptionList(lists))) {
    if (key == "compat") {
      if (v == "0.10" || v == "v2") {
        r.qcow2.version = 2;
      } else if (v == "1.1" || v == "v3") {
        r.qcow2.version = 3;
      } else {
        return Err("Unknown compatibility level " + v);
      }
    } else if (key == "lazy_refcounts") {
      r.qcow2.lazy_refcounts = TRY(ParseOnOff(key, v));
    } else if (key == "size") {
      auto size = ParseSize(v);
      if (!size) {
        return Err(
            "Parameter 'size' expects a non-negative number below 2^64\n"
            "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
            "and exabytes, respectively.");
      }
      // size=0 leaves the size alone (qemu treats 0 as "not given").
      r.qcow2.size = *size == 0 ? std::nullopt : std::optional<uint64_t>(*size);
    } else if (key == "refcount_bits") {
      auto bits = ParseSize(v);
      if (!bits) return Err("Parameter 'refcount_bits' expects a number");
      if (*bits == 0 || *bits > 64 || (*bits & (*bits - 1)) != 0) {
        return Err("Refcount width must be a power of two and may not exceed 64 bits");
      }
      r.qcow2.refcount_bits = static_cast<int>(*bits);
    } else if (key == "backing_file") {
      r.backing_given = true;
      r.backing_file = v;
    } else if (key == "backing_fmt") {
      r.backing_given = true;
      r.backing_format = v;
    } else if (key == "data_file") {
      r.qcow2.data_file = v;
    } else if (key == "data_file_raw") {
      r.qcow2.data_file_raw = TRY(ParseOnOff(key, v));
    } else if (OneOf(kEncryptAmend, key)) {
      r.encryption = true;
    } else if (OneOf(kCreateOnly, key)) {
      return Err("Invalid parameter '" + key +
                 "'\nThis option is only supported for image creation");
    } else {
      return Err("Invalid parameter '" + key + "'");
    }
  }
  return r;
}

std::optional<std::string> Named(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

// What qemu-img refuses for this image (its messages), checked before kite opens it to write.
Result<void> CheckAgainstImage(const AmendRequest& r, const storage::Qcow2Info& info) {
  if (r.encryption) return Err("Can't amend encryption options - encryption not present");
  if (r.qcow2.data_file && !info.external_data)
    return Err("data-file can only be set for images that use an external data file");
  if (r.qcow2.data_file_raw && (*r.qcow2.data_file_raw || !info.external_data) &&
      !info.data_file_raw) {
    return Err("data-file-raw cannot be set on existing images");
  }
  // qemu-img 7.2 only accepts the backing file and format the image already has (both named).
  if (r.backing_given && (r.backing_file != Named(info.backing_file) ||
                          r.backing_format != Named(info.backing_format))) {
    return Err("Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.");
  }
  return {};
}

constexpr const char* kQcow2AmendHelp =
    "Amend options for 'qcow2':\n"
    "  backing_file=<str>     - File name of a base image (only the current one)\n"
    "  backing_fmt=<str>      - Image format of the base image (only the current one)\n"
    "  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])\n"
    "  data_file=<str>        - File name of an external data file\n"
    "  data_file_raw=<bool (on/off)> - The external data file must stay valid as a raw image\n"
    "  lazy_refcounts=<bool (on/off)> - Postpone refcount updates\n"
    "  refcount_bits=<num>    - Width of a reference count entry in bits\n"
    "  size=<size>            - Virtual disk size\n";

bool WantsHelp(const std::vector<std::string>& lists) {
  for (const std::string& list : lists) {
    if (list == "help" || list == "?" || list.starts_with("help,") || list.ends_with(",help")) {
      return true;
    }
  }
  return false;
}

Result<void> Amend(const AmendArgs& args, Console& console) {
  bool probed = false;
  ImageFormat format = TRY(ResolveFormat(args.filename, args.format, &probed));
  if (format != ImageFormat::kQcow2) {
    if (probed && format == ImageFormat::kRaw) {
      console.err << "WARNING: Image format was not specified for '" << args.filename
                  << "' and probing guessed raw.\n";
    }
    return Err(std::string("Format driver '") + storage::ImageFormatName(format) +
               "' does not support option amendment");
  }
  if (WantsHelp(args.options)) {
    console.out << kQcow2AmendHelp;
    return {};
  }
  AmendRequest request = TRY(ParseAmendOptions(args.options));
  storage::Qcow2Info info = TRY(storage::InspectQcow2(args.filename));
  TRY(CheckAgainstImage(request, info));
  Progress progress(console.out, args.progress && console.tty, 1);
  TRY(storage::AmendQcow2(args.filename, request.qcow2));
  progress.Advance(1);
  return {};
}

}  // namespace

int RunAmend(const AmendArgs& args, Console& console) {
  auto done = Amend(args, console);
  if (!done) return Fail(console, done.error());
  return 0;
}

}  // namespace kite::img
