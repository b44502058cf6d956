// kite-img command line parsing: a small getopt-like walker (short options, clustered flags,
// --long and --long=value, "--" ends options, options may follow positionals as with GNU
// getopt) and one function per subcommand that turns the walked options into its Args struct.
#include "storage/img/cli.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <span>
#include <string_view>
#include <type_traits>
#include <variant>

#include "base/units.h"
#include "storage/disk_image.h"

namespace kite::img {
namespace {

struct OptDef {
  std::string_view key;  // one letter for a short option, else the long name
  bool has_arg;
  std::string_view long_alias = {};  // a long name for a short option
};

struct Opt {
  std::string key;
  std::string value;
};

struct Walked {
  std::vector<Opt> opts;
  std::vector<std::string> positional;
};

const OptDef* FindLong(std::span<const OptDef> defs, std::string_view name) {
  for (const OptDef& d : defs) {
    if (d.key == name || (!d.long_alias.empty() && d.long_alias == name)) return &d;
  }
  return nullptr;
}

Result<Walked> Walk(std::span<const std::string> args, std::span<const OptDef> defs) {
  Walked out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      for (++i; i < args.size(); ++i) out.positional.push_back(args[i]);
      break;
    }
    if (a.size() > 2 && a.starts_with("--")) {
      std::string_view body = std::string_view(a).substr(2);
      size_t eq = body.find('=');
      std::string_view name = body.substr(0, eq);
      const OptDef* d = FindLong(defs, name);
      if (d == nullptr || (d->key.size() == 1 && d->long_alias != name)) {
        return Err("unrecognized option '--" + std::string(name) + "'");
      }
      Opt opt{std::string(d->key), ""};
      if (d->has_arg) {
        if (eq != std::string_view::npos) {
          opt.value = std::string(body.substr(eq + 1));
        } else if (i + 1 < args.size()) {
          opt.value = args[++i];
        } else {
          return Err("option '--" + std::string(name) + "' requires an argument");
        }
      } else if (eq != std::string_view::npos) {
        return Err("option '--" + std::string(name) + "' doesn't allow an argument");
      }
      out.opts.push_back(std::move(opt));
      continue;
    }
    if (a.size() < 2 || a[0] != '-') {
      out.positional.push_back(a);
      continue;
    }
    for (size_t j = 1; j < a.size(); ++j) {
      std::string_view letter = std::string_view(a).substr(j, 1);
      const OptDef* d = nullptr;
      for (const OptDef& def : defs) {
        if (def.key == letter) d = &def;
      }
      if (d == nullptr) return Err("invalid option -- '" + std::string(letter) + "'");
      Opt opt{std::string(letter), ""};
      if (d->has_arg) {
        if (j + 1 < a.size()) {
          opt.value = a.substr(j + 1);
        } else if (i + 1 < args.size()) {
          opt.value = args[++i];
        } else {
          return Err("option requires an argument -- '" + std::string(letter) + "'");
        }
        out.opts.push_back(std::move(opt));
        break;
      }
      out.opts.push_back(std::move(opt));
    }
  }
  return out;
}

Result<OutputFormat> ParseOutput(const std::string& v) {
  if (v == "human") return OutputFormat::kHuman;
  if (v == "json") return OutputFormat::kJson;
  return Err("--output must be used with human or json as argument.");
}

Result<uint64_t> ParseNumber(const std::string& v, const char* what) {
  auto r = ParseSize(v);
  if (!r) return Err(std::string("Invalid ") + what + " specified: '" + v + "'");
  return *r;
}

Result<void> ExpectPositional(const Walked& w, size_t min, size_t max) {
  if (w.positional.size() < min) return Err("Expecting image file name");
  if (w.positional.size() > max) return Err("Expecting one image file name");
  return {};
}

constexpr OptDef kCreateDefs[] = {{"f", true}, {"o", true},  {"b", true},
                                  {"F", true}, {"u", false}, {"q", false}};

Result<Command> ParseCreate(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kCreateDefs));
  CreateArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.format = o.value;
    if (o.key == "o") c.options.push_back(o.value);
    if (o.key == "b") c.backing = o.value;
    if (o.key == "F") c.backing_format = o.value;
    if (o.key == "u") c.unsafe = true;
    if (o.key == "q") c.quiet = true;
  }
  if (w.positional.empty()) return Err("Expecting image file name");
  if (w.positional.size() > 2) return Err("Unexpected argument: " + w.positional[2]);
  c.filename = w.positional[0];
  if (w.positional.size() == 2) {
    auto size = ParseSize(w.positional[1]);
    if (!size) {
      return Err(
          "Invalid image size specified. You may use k, M, G, T, P or E suffixes for "
          "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    }
    c.size = *size;
  } else if (c.backing.empty()) {
    return Err("Image creation needs a size parameter");
  }
  return Command(std::move(c));
}

constexpr OptDef kInfoDefs[] = {
    {"f", true}, {"U", false, "force-share"}, {"output", true}, {"backing-chain", false}};

Result<Command> ParseInfo(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kInfoDefs));
  InfoArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.format = o.value;
    if (o.key == "U") c.force_share = true;
    if (o.key == "output") c.output = TRY(ParseOutput(o.value));
    if (o.key == "backing-chain") c.backing_chain = true;
  }
  TRY(ExpectPositional(w, 1, 1));
  c.filename = w.positional[0];
  return Command(std::move(c));
}

constexpr OptDef kCheckDefs[] = {
    {"f", true}, {"r", true}, {"q", false}, {"U", false, "force-share"}, {"output", true}};

Result<Command> ParseCheck(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kCheckDefs));
  CheckArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.format = o.value;
    if (o.key == "q") c.quiet = true;
    if (o.key == "U") c.force_share = true;
    if (o.key == "output") c.output = TRY(ParseOutput(o.value));
    if (o.key == "r") {
      if (o.value == "leaks") {
        c.repair = RepairMode::kLeaks;
      } else if (o.value == "all") {
        c.repair = RepairMode::kAll;
      } else {
        return Err("Invalid option for -r: '" + o.value + "' (expected leaks or all)");
      }
    }
  }
  TRY(ExpectPositional(w, 1, 1));
  c.filename = w.positional[0];
  return Command(std::move(c));
}

constexpr OptDef kMapDefs[] = {{"f", true}, {"U", false, "force-share"}, {"output", true}};

Result<Command> ParseMap(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kMapDefs));
  MapArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.format = o.value;
    if (o.key == "U") c.force_share = true;
    if (o.key == "output") c.output = TRY(ParseOutput(o.value));
  }
  TRY(ExpectPositional(w, 1, 1));
  c.filename = w.positional[0];
  return Command(std::move(c));
}

constexpr OptDef kCompareDefs[] = {{"f", true},  {"F", true},  {"s", false},
                                   {"p", false}, {"q", false}, {"U", false, "force-share"}};

Result<Command> ParseCompare(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kCompareDefs));
  CompareArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.format1 = o.value;
    if (o.key == "F") c.format2 = o.value;
    if (o.key == "s") c.strict = true;
    if (o.key == "p") c.progress = true;
    if (o.key == "q") c.quiet = true;
    if (o.key == "U") c.force_share = true;
  }
  if (w.positional.size() != 2) return Err("Expecting two image file names");
  c.filename1 = w.positional[0];
  c.filename2 = w.positional[1];
  return Command(std::move(c));
}

constexpr OptDef kMeasureDefs[] = {{"O", true},    {"o", true},
                                   {"f", true},    {"U", false, "force-share"},
                                   {"size", true}, {"output", true}};

Result<Command> ParseMeasure(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kMeasureDefs));
  MeasureArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "O") c.out_format = o.value;
    if (o.key == "o") c.options.push_back(o.value);
    if (o.key == "f") c.in_format = o.value;
    if (o.key == "U") c.force_share = true;
    if (o.key == "size") c.size = TRY(ParseNumber(o.value, "image size"));
    if (o.key == "output") c.output = TRY(ParseOutput(o.value));
  }
  if (c.size && !w.positional.empty()) {
    return Err("--size N cannot be used together with a filename.");
  }
  if (!c.size && w.positional.size() != 1) {
    return Err("Either --size N or one filename must be specified.");
  }
  if (!w.positional.empty()) c.filename = w.positional[0];
  return Command(std::move(c));
}

constexpr OptDef kConvertDefs[] = {
    {"f", true},  {"O", true},  {"o", true}, {"c", false}, {"S", true},
    {"p", false}, {"q", false}, {"B", true}, {"F", true},  {"U", false, "force-share"},
    {"m", true},  {"W", false}, {"t", true}, {"n", false}, {"target-is-zero", false}};

Result<int> ParseRequests(const std::string& value) {
  auto n = ParseNumber(value, "number of coroutines");
  if (!n || *n < 1 || *n > 16) {
    return Err("Invalid number of coroutines. Allowed number of coroutines is between 1 and 16");
  }
  return static_cast<int>(*n);
}

Result<Command> ParseConvert(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kConvertDefs));
  ConvertArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.in_format = o.value;
    if (o.key == "O") c.out_format = o.value;
    if (o.key == "o") c.options.push_back(o.value);
    if (o.key == "c") c.compress = true;
    if (o.key == "S") c.min_sparse = TRY(ParseNumber(o.value, "buffer size for sparse output"));
    if (o.key == "p") c.progress = true;
    if (o.key == "q") c.quiet = true;
    if (o.key == "B") c.backing = o.value;
    if (o.key == "F") c.backing_format = o.value;
    if (o.key == "U") c.force_share = true;
    if (o.key == "m") c.requests = TRY(ParseRequests(o.value));
    if (o.key == "W") c.out_of_order = true;
    if (o.key == "t") c.cache = o.value;
    if (o.key == "n") c.skip_create = true;
    if (o.key == "target-is-zero") c.target_is_zero = true;
  }
  if (!storage::ParseCacheMode(c.cache)) return Err("Invalid cache option: " + c.cache);
  if (c.target_is_zero && !c.skip_create) return Err("--target-is-zero requires use of -n flag");
  if (c.skip_create && !c.options.empty()) {
    return Err("-o has no effect when skipping image creation");
  }
  // qemu-img ignores -B with -n without a word; the backing file of an image that exists is
  // set with rebase, so kite-img says so instead of dropping the option.
  if (c.skip_create && !c.backing.empty()) {
    return Err("-B has no effect when skipping image creation (use rebase)");
  }
  // A compressed cluster is only ever written to unallocated space (qemu-img fails at the first
  // cluster the target already holds): refused up front rather than half-way.
  if (c.skip_create && c.compress) {
    return Err("-c cannot be used with -n: compressed clusters go to unallocated space only");
  }
  if (c.compress && c.out_of_order) {
    return Err("Out of order write and compress are mutually exclusive");
  }
  if (c.min_sparse % 512 != 0) {
    return Err("Invalid buffer size for sparse output specified (must be a multiple of 512)");
  }
  if (w.positional.size() < 2) return Err("Must specify image file name");
  if (w.positional.size() > 2 && !c.backing.empty()) {
    return Err("-B makes no sense when concatenating multiple input images");
  }
  if (c.progress && c.quiet) c.progress = false;
  c.inputs.assign(w.positional.begin(), w.positional.end() - 1);
  c.output = w.positional.back();
  return Command(std::move(c));
}

constexpr OptDef kCommitDefs[] = {
    {"f", true}, {"b", true}, {"d", false}, {"p", false}, {"q", false}};

Result<Command> ParseCommit(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kCommitDefs));
  CommitArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.format = o.value;
    if (o.key == "b") c.base = o.value;
    if (o.key == "d") c.drop = true;
    if (o.key == "p") c.progress = true;
    if (o.key == "q") c.quiet = true;
  }
  TRY(ExpectPositional(w, 1, 1));
  c.filename = w.positional[0];
  return Command(std::move(c));
}

constexpr OptDef kRebaseDefs[] = {{"f", true},  {"b", true},  {"F", true},
                                  {"u", false}, {"p", false}, {"q", false}};

Result<Command> ParseRebase(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kRebaseDefs));
  RebaseArgs c;
  bool have_backing = false;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.format = o.value;
    if (o.key == "b") c.backing = o.value, have_backing = true;
    if (o.key == "F") c.backing_format = o.value;
    if (o.key == "u") c.unsafe = true;
    if (o.key == "p") c.progress = true;
    if (o.key == "q") c.quiet = true;
  }
  if (!have_backing) return Err("Must specify backing file (-b)");
  TRY(ExpectPositional(w, 1, 1));
  c.filename = w.positional[0];
  return Command(std::move(c));
}

constexpr OptDef kResizeDefs[] = {
    {"f", true}, {"q", false}, {"shrink", false}, {"preallocation", true}};

Result<Command> ParseResize(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kResizeDefs));
  ResizeArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.format = o.value;
    if (o.key == "q") c.quiet = true;
    if (o.key == "shrink") c.shrink = true;
    if (o.key == "preallocation") c.preallocation = o.value;
  }
  if (w.positional.size() != 2) return Err("Expecting image file name and size");
  c.filename = w.positional[0];
  std::string_view size = w.positional[1];
  if (size.starts_with('+'))
    c.mode = ResizeArgs::Mode::kGrow, size.remove_prefix(1);
  else if (size.starts_with('-'))
    c.mode = ResizeArgs::Mode::kShrink, size.remove_prefix(1);
  auto bytes = ParseSize(size);
  if (!bytes) return Err("Invalid image size specified: '" + w.positional[1] + "'");
  c.size = *bytes;
  return Command(std::move(c));
}

constexpr OptDef kSnapshotDefs[] = {{"l", false},
                                    {"c", true},
                                    {"a", true},
                                    {"d", true},
                                    {"f", true},
                                    {"q", false},
                                    {"U", false, "force-share"},
                                    {"output", true}};

Result<Command> ParseSnapshot(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kSnapshotDefs));
  SnapshotArgs c;
  int actions = 0;
  for (const Opt& o : w.opts) {
    using A = SnapshotArgs::Action;
    if (o.key == "l") c.action = A::kList, ++actions;
    if (o.key == "c") c.action = A::kCreate, c.name = o.value, ++actions;
    if (o.key == "a") c.action = A::kApply, c.name = o.value, ++actions;
    if (o.key == "d") c.action = A::kDelete, c.name = o.value, ++actions;
    if (o.key == "f") c.format = o.value;
    if (o.key == "q") c.quiet = true;
    if (o.key == "U") c.force_share = true;
    if (o.key == "output") c.output = TRY(ParseOutput(o.value));
  }
  if (actions > 1) return Err("Cannot mix '-l', '-a', '-c', '-d'");
  TRY(ExpectPositional(w, 1, 1));
  c.filename = w.positional[0];
  return Command(std::move(c));
}

constexpr OptDef kBenchDefs[] = {{"c", true},        {"d", true},
                                 {"f", true},        {"i", true},
                                 {"n", false},       {"o", true},
                                 {"s", true},        {"S", true},
                                 {"t", true},        {"w", false},
                                 {"q", false},       {"U", false, "force-share"},
                                 {"pattern", true},  {"flush-interval", true},
                                 {"no-drain", false}};

Result<Command> ParseBench(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kBenchDefs));
  BenchArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "c") c.count = TRY(ParseNumber(o.value, "request count"));
    if (o.key == "d") {
      uint64_t d = TRY(ParseNumber(o.value, "queue depth"));
      if (d == 0 || d > 4096) return Err("Invalid queue depth specified");
      c.depth = static_cast<uint32_t>(d);
    }
    if (o.key == "f") c.format = o.value;
    if (o.key == "n") c.native_aio = true;
    if (o.key == "i") {
      if (o.value != "threads" && o.value != "io_uring") {
        return Err("Invalid aio option '" + o.value + "' (kite supports threads and io_uring)");
      }
      c.aio = o.value;
    }
    if (o.key == "o") c.offset = TRY(ParseNumber(o.value, "offset"));
    if (o.key == "s") c.buffer_size = TRY(ParseNumber(o.value, "buffer size"));
    if (o.key == "S") c.step = TRY(ParseNumber(o.value, "step size"));
    if (o.key == "t") c.cache = o.value;
    if (o.key == "w") c.write = true;
    if (o.key == "q") c.quiet = true;
    if (o.key == "U") c.force_share = true;
    if (o.key == "no-drain") c.no_drain = true;
    if (o.key == "flush-interval") c.flush_interval = TRY(ParseNumber(o.value, "flush interval"));
    if (o.key == "pattern") {  // decimal, 0x hex or 0 octal, as qemu-img (strtol base 0)
      char* end = nullptr;
      errno = 0;
      unsigned long p = std::strtoul(o.value.c_str(), &end, 0);
      if (o.value.empty() || *end != '\0' || errno != 0 || p > 0xff || o.value[0] == '-') {
        return Err("Invalid pattern byte specified");
      }
      c.pattern = static_cast<uint8_t>(p);
    }
  }
  if (c.buffer_size == 0 || c.buffer_size > (1u << 30)) return Err("Invalid buffer size specified");
  if (c.flush_interval != 0 && !c.write)
    return Err("--flush-interval is only available in write tests");
  TRY(ExpectPositional(w, 1, 1));
  c.filename = w.positional[0];
  return Command(std::move(c));
}

constexpr OptDef kAmendDefs[] = {{"f", true},  {"o", true}, {"p", false},
                                 {"q", false}, {"t", true}, {"force", false}};

Result<Command> ParseAmend(std::span<const std::string> args) {
  Walked w = TRY(Walk(args, kAmendDefs));
  AmendArgs c;
  for (const Opt& o : w.opts) {
    if (o.key == "f") c.format = o.value;
    if (o.key == "o") c.options.push_back(o.value);
    if (o.key == "p") c.progress = true;
    if (o.key == "q") c.quiet = true;
    if (o.key == "t") c.cache = o.value;
    if (o.key == "force") c.force = true;
  }
  if (!storage::ParseCacheMode(c.cache)) return Err("Invalid cache option: " + c.cache);
  if (c.options.empty()) {
    return Err("Must specify options (-o)\nTry 'kite-img --help' for more information");
  }
  if (w.positional.size() != 1) return Err("Expecting one image file name");
  if (c.progress && c.quiet) c.progress = false;
  c.filename = w.positional[0];
  return Command(std::move(c));
}

// --image-opts: `name` becomes the option string's file name, `format` its driver (-f with
// --image-opts is refused, as qemu-img), and force-share=on sets -U where the command has it.
Result<void> FromImageOpts(std::string& name, std::optional<std::string>& format,
                           bool* force_share) {
  if (format) return Err("--image-opts and --format are mutually exclusive");
  ImageOpts opts = TRY(ParseImageOpts(name));
  // Commands without -U (commit, rebase, resize, amend) write the image.
  if (opts.read_only && force_share == nullptr) {
    return Err("Could not open '" + name + "': this command writes the image (read-only=on)");
  }
  if (opts.force_share && force_share == nullptr) {
    return Err("Could not open '" + name +
               "': force-share=on can only be used with read-only images");
  }
  if (opts.force_share) *force_share = true;
  name = opts.path;
  format = opts.driver;
  return {};
}

template <typename Args>
Result<void> ApplyImageOpts(Args& c) {
  if constexpr (std::is_same_v<Args, CompareArgs>) {
    TRY(FromImageOpts(c.filename1, c.format1, &c.force_share));
    return FromImageOpts(c.filename2, c.format2, &c.force_share);
  } else if constexpr (std::is_same_v<Args, ConvertArgs>) {
    if (c.in_format) return Err("--image-opts and --format are mutually exclusive");
    c.input_formats.resize(c.inputs.size());
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      TRY(FromImageOpts(c.inputs[i], c.input_formats[i], &c.force_share));
    }
    return {};
  } else if constexpr (std::is_same_v<Args, MeasureArgs>) {
    if (c.filename.empty()) return {};  // --size
    return FromImageOpts(c.filename, c.in_format, &c.force_share);
  } else if constexpr (requires {
                         c.filename;
                         c.format;
                         requires !std::is_same_v<decltype(c.format), std::string>;
                       }) {
    bool* share = nullptr;
    if constexpr (requires { c.force_share; }) share = &c.force_share;
    return FromImageOpts(c.filename, c.format, share);
  } else {
    return Err("unrecognized option '--image-opts'");
  }
}

// convert --target-image-opts (only with -n, as qemu-img): the output's driver is its format.
Result<void> ApplyTargetImageOpts(ConvertArgs& c, bool format_given) {
  if (!c.skip_create) return Err("--target-image-opts requires use of -n flag");
  if (format_given) return Err("--target-image-opts and -O are mutually exclusive");
  ImageOpts opts = TRY(ParseImageOpts(c.output));
  if (opts.force_share) {
    return Err("Could not open '" + c.output +
               "': force-share=on can only be used with read-only images");
  }
  c.output = opts.path;
  if (opts.driver) c.out_format = *opts.driver;
  return {};
}

// Takes `flag` out of args (before a "--", after which every argument is a file name).
bool TakeFlag(std::vector<std::string>& args, std::string_view flag) {
  bool found = false;
  for (size_t i = 0; i < args.size() && args[i] != "--";) {
    if (args[i] == flag) {
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
      found = true;
    } else {
      ++i;
    }
  }
  return found;
}

Result<Command> ParseSubcommand(const std::string& cmd, std::span<const std::string> rest);

}  // namespace

Result<ImageOpts> ParseImageOpts(const std::string& text) {
  auto fail = [&](const std::string& why) { return Err("Could not open '" + text + "': " + why); };
  // Items split at single commas; ",," is a comma inside an item.
  std::vector<std::string> items(1);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != ',') {
      items.back() += text[i];
    } else if (i + 1 < text.size() && text[i + 1] == ',') {
      items.back() += ',';
      ++i;
    } else {
      items.emplace_back();
    }
  }
  std::map<std::string, std::string> values;
  for (size_t i = 0; i < items.size(); ++i) {
    size_t eq = items[i].find('=');
    if (eq == std::string::npos && i == 0) {  // qemu reads it as a node name: none exist here
      return fail("Cannot find device='" + items[i] + "' nor node-name='" + items[i] + "'");
    }
    if (eq == std::string::npos || eq == 0) return fail("Invalid parameter '" + items[i] + "'");
    values[items[i].substr(0, eq)] = items[i].substr(eq + 1);
  }
  ImageOpts opts;
  if (auto d = values.find("driver"); d != values.end()) opts.driver = d->second;
  const std::string format = opts.driver.value_or("raw");
  for (const auto& [key, value] : values) {
    if (key == "driver" || key == "file.filename") continue;
    if (key == "file.driver") {
      if (value != "file" && value != "host_device") {
        return fail("kite-img opens images through the 'file' and 'host_device' protocols only");
      }
    } else if (key == "read-only" || key == "force-share") {
      if (value != "on" && value != "off") {
        return fail("Parameter '" + key + "' expects 'on' or 'off'");
      }
      (key == "force-share" ? opts.force_share : opts.read_only) = value == "on";
    } else if (key.starts_with("file.")) {
      return fail("Block protocol 'file' doesn't support the option '" + key.substr(5) + "'");
    } else {
      return fail("Block format '" + format + "' does not support the option '" + key + "'");
    }
  }
  auto f = values.find("file.filename");
  if (f == values.end() || f->second.empty()) {
    return fail("A block device must be specified for \"file\"");
  }
  opts.path = f->second;
  return opts;
}

Result<Command> ParseCommandLine(const std::vector<std::string>& args) {
  if (args.empty()) return Err("Not enough arguments\nTry 'kite-img --help' for more information");
  const std::string& cmd = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  bool image_opts = TakeFlag(rest, "--image-opts");
  bool target_image_opts = cmd == "convert" && TakeFlag(rest, "--target-image-opts");
  Command command = TRY(ParseSubcommand(cmd, rest));
  if (image_opts) {
    TRY(std::visit([](auto& c) -> Result<void> { return ApplyImageOpts(c); }, command));
  }
  if (target_image_opts) {
    bool format_given = std::any_of(rest.begin(), std::find(rest.begin(), rest.end(), "--"),
                                    [](const std::string& a) { return a.starts_with("-O"); });
    TRY(ApplyTargetImageOpts(std::get<ConvertArgs>(command), format_given));
  }
  return command;
}

namespace {

Result<Command> ParseSubcommand(const std::string& cmd, std::span<const std::string> rest) {
  if (cmd == "-h" || cmd == "--help" || cmd == "help") return Command(HelpArgs{});
  if (cmd == "create") return ParseCreate(rest);
  if (cmd == "info") return ParseInfo(rest);
  if (cmd == "check") return ParseCheck(rest);
  if (cmd == "map") return ParseMap(rest);
  if (cmd == "compare") return ParseCompare(rest);
  if (cmd == "measure") return ParseMeasure(rest);
  if (cmd == "convert") return ParseConvert(rest);
  if (cmd == "commit") return ParseCommit(rest);
  if (cmd == "rebase") return ParseRebase(rest);
  if (cmd == "resize") return ParseResize(rest);
  if (cmd == "snapshot") return ParseSnapshot(rest);
  if (cmd == "bench") return ParseBench(rest);
  if (cmd == "amend") return ParseAmend(rest);
  return Err("Command not found: " + cmd);
}

}  // namespace

Result<std::vector<std::pair<std::string, std::string>>> ParseOptionList(
    const std::vector<std::string>& lists) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& list : lists) {
    size_t pos = 0;
    while (pos <= list.size()) {
      size_t comma = list.find(',', pos);
      std::string item = list.substr(pos, comma == std::string::npos ? comma : comma - pos);
      pos = comma == std::string::npos ? list.size() + 1 : comma + 1;
      if (item.empty()) continue;
      size_t eq = item.find('=');
      if (eq == std::string::npos || eq == 0) {
        if (item == "help" || item == "?") return Err("Option help is not supported");
        return Err("Invalid parameter '" + item + "' (expected name=value)");
      }
      out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    }
  }
  return out;
}

const char* UsageText() {
  return "usage: kite-img [standard options] command [command options]\n"
         "kite image utility (follows qemu-img)\n\n"
         "Command syntax:\n"
         "  amend [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename\n"
         "  bench [-c count] [-d depth] [-f fmt] [--flush-interval=N] [-i aio] [--no-drain] [-n]\n"
         "        [-o offset] [--pattern=N] [-q] [-s buffer_size] [-S step] [-t cache] [-w]\n"
         "        [-U] filename\n"
         "  check [-q] [--output=ofmt] [-f fmt] [-r [leaks | all]] [-U] filename\n"
         "  commit [-q] [-f fmt] [-b base] [-d] [-p] filename\n"
         "  compare [-f fmt] [-F fmt] [-p] [-q] [-s] [-U] filename1 filename2\n"
         "  convert [--image-opts] [--target-image-opts] [--target-is-zero] [-c] [-p] [-q] [-n]\n"
         "          [-W] [-f fmt] [-t cache]\n"
         "          [-O output_fmt] [-B backing_file [-F fmt]] [-o options] [-S sparse_size]\n"
         "          [-m num_coroutines] [-U] filename [filename2 [...]] output_filename\n"
         "  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options]\n"
         "         filename [size]\n"
         "  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename\n"
         "  map [-f fmt] [--output=ofmt] [-U] filename\n"
         "  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] filename]\n"
         "  rebase [-q] [-f fmt] [-p] [-u] -b backing_file [-F backing_fmt] filename\n"
         "  resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size\n"
         "  snapshot [-q] [-l | -a snapshot | -c snapshot | -d snapshot] [-U] filename\n"
         "Every command but create takes --image-opts: each file name is then an option string,\n"
         "driver=FMT,file.filename=PATH[,file.driver=file|host_device][,force-share=on|off]\n"
         "[,read-only=on|off]\n\n"
         "Supported formats: raw qcow2 (read and write), vmdk (read: monolithicSparse,\n"
         "streamOptimized, monolithicFlat, vmfs, twoGbMaxExtentSparse, twoGbMaxExtentFlat;\n"
         "write: streamOptimized, monolithicSparse)\n";
}

}  // namespace kite::img
