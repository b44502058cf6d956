// kite-img command line: the subcommands and options of qemu-img, parsed by a pure function
// (no I/O, no globals) into one struct per subcommand. Option letters follow qemu-img.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/result.h"

namespace kite::img {

enum class OutputFormat { kHuman, kJson };

struct CreateArgs {
  std::string format = "raw";                 // -f
  std::vector<std::string> options;           // -o, may repeat ("a=b,c=d")
  std::string backing;                        // -b
  std::optional<std::string> backing_format;  // -F
  bool unsafe = false;                        // -u: do not open the backing file
  bool quiet = false;                         // -q
  std::string filename;
  std::optional<uint64_t> size;  // defaults to the backing file's size
};

struct InfoArgs {
  std::optional<std::string> format;
  OutputFormat output = OutputFormat::kHuman;
  bool backing_chain = false;
  bool force_share = false;  // -U
  std::string filename;
};

enum class RepairMode { kNone, kLeaks, kAll };

struct CheckArgs {
  std::optional<std::string> format;
  RepairMode repair = RepairMode::kNone;  // -r leaks|all
  OutputFormat output = OutputFormat::kHuman;
  bool force_share = false;
  bool quiet = false;
  std::string filename;
};

struct MapArgs {
  std::optional<std::string> format;
  OutputFormat output = OutputFormat::kHuman;
  bool force_share = false;
  std::string filename;
};

struct CompareArgs {
  std::optional<std::string> format1;  // -f
  std::optional<std::string> format2;  // -F
  bool strict = false;                 // -s: a size difference is a difference
  bool progress = false;
  bool quiet = false;
  bool force_share = false;
  std::string filename1, filename2;
};

struct MeasureArgs {
  std::string out_format = "raw";  // -O
  std::vector<std::string> options;
  std::optional<uint64_t> size;  // --size
  std::optional<std::string> in_format;
  OutputFormat output = OutputFormat::kHuman;
  bool force_share = false;
  std::string filename;  // empty with --size
};

struct ConvertArgs {
  std::optional<std::string> in_format;  // -f
  std::string out_format = "raw";        // -O
  std::vector<std::string> options;      // -o
  bool compress = false;                 // -c
  uint64_t min_sparse = 4096;            // -S (0: write every byte)
  bool progress = false;                 // -p
  bool quiet = false;
  bool force_share = false;
  std::string backing;                        // -B: the new image's backing file
  std::optional<std::string> backing_format;  // -F
  int requests = 8;                           // -m: requests in flight (1..16)
  bool out_of_order = false;                  // -W: writes as soon as their data is ready
  std::string cache = "unsafe";               // -t: the output's cache mode (qemu-img's default)
  bool skip_create = false;  // -n: write into the existing OUT (format -O) instead of creating it
  bool target_is_zero = false;  // --target-is-zero (with -n): OUT reads as zeros, skip zero writes
  std::vector<std::string> inputs;  // several: concatenated, in order, into one disk
  // --image-opts: each input's own driver (empty: -f or probing for all of them)
  std::vector<std::optional<std::string>> input_formats;
  std::string output;
};

struct CommitArgs {
  std::optional<std::string> format;
  std::string base;   // -b: commit down to this image (default: the direct backing)
  bool drop = false;  // -d: leave the overlay unchanged (do not empty it)
  bool progress = false;
  bool quiet = false;
  std::string filename;
};

struct RebaseArgs {
  std::optional<std::string> format;
  bool unsafe = false;                        // -u: only rewrite the header
  std::string backing;                        // -b ("" removes the backing file)
  std::optional<std::string> backing_format;  // -F
  bool progress = false;
  bool quiet = false;
  std::string filename;
};

struct ResizeArgs {
  enum class Mode { kAbsolute, kGrow, kShrink };
  std::optional<std::string> format;
  bool shrink = false;  // --shrink allows making the image smaller
  std::optional<std::string> preallocation;
  bool quiet = false;
  std::string filename;
  Mode mode = Mode::kAbsolute;
  uint64_t size = 0;  // absolute size, or the amount to add/subtract
};

struct SnapshotArgs {
  enum class Action { kList, kCreate, kApply, kDelete };
  Action action = Action::kList;
  std::string name;
  std::optional<std::string> format;
  OutputFormat output = OutputFormat::kHuman;
  bool force_share = false;
  bool quiet = false;
  std::string filename;
};

struct BenchArgs {
  uint64_t count = 75000;  // -c
  uint32_t depth = 64;     // -d
  std::optional<std::string> format;
  bool native_aio = false;       // -n (accepted and ignored: kite has no Linux AIO)
  std::string aio;               // -i threads|io_uring (empty: AsyncDisk's default)
  uint64_t offset = 0;           // -o
  uint64_t buffer_size = 4096;   // -s
  std::optional<uint64_t> step;  // -S (default: buffer size)
  std::string cache = "writeback";
  bool write = false;   // -w
  uint8_t pattern = 0;  // --pattern (qemu-img bench's default is 0 too)
  uint64_t flush_interval = 0;
  bool no_drain = false;
  bool quiet = false;
  bool force_share = false;
  std::string filename;
};

struct AmendArgs {
  std::optional<std::string> format;  // -f
  std::vector<std::string> options;   // -o, may repeat; required
  bool progress = false;              // -p
  bool quiet = false;                 // -q
  bool force = false;                 // --force (qemu: encryption keyslots; accepted, no effect)
  std::string cache = "writeback";    // -t (checked, no effect: amend flushes every step)
  std::string filename;
};

struct HelpArgs {};

using Command = std::variant<HelpArgs, CreateArgs, InfoArgs, CheckArgs, MapArgs, CompareArgs,
                             MeasureArgs, ConvertArgs, CommitArgs, RebaseArgs, ResizeArgs,
                             SnapshotArgs, BenchArgs, AmendArgs>;

// Parses argv[1..] (the subcommand and its options). Errors read like qemu-img's messages,
// without the "kite-img: " prefix.
Result<Command> ParseCommandLine(const std::vector<std::string>& args);

// A file name given with --image-opts (or convert's --target-image-opts): qemu's option string
// for the image, "driver=qcow2,file.filename=disk.qcow2" (",," is a comma in a value; a key
// given twice: the last one counts). kite-img takes driver, file.filename (required),
// file.driver (file or host_device), read-only and force-share (on|off); any other key is
// refused naming it, as qemu-img.
struct ImageOpts {
  std::string path;                   // file.filename
  std::optional<std::string> driver;  // the image format; none: probed
  bool force_share = false;
  bool read_only = false;
};
Result<ImageOpts> ParseImageOpts(const std::string& text);

// "name=value,name2=value2" lists from -o, merged in order; "help" is refused here.
Result<std::vector<std::pair<std::string, std::string>>> ParseOptionList(
    const std::vector<std::string>& lists);

// The usage text printed by `kite-img --help`.
const char* UsageText();

}  // namespace kite::img
