// libFuzzer target for the `kite run --config FILE.json` parser (src/vmm/cli.cc ApplyConfigJson,
// device_options.cc DiskFromJson/NetFromJson) and the checks behind it (ValidateVmConfig): the
// input is the file's text. Nothing may crash, throw or allocate without bound; every refusal
// is an Error. Checks beyond the sanitizers: a config that is accepted and valid survives the
// round trip a snapshot makes (ConfigToJson, then ApplyConfigJson gives the same JSON again),
// and the whole command line with --config reads the same file the same way.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kite/kite.h"
#include "vmm/cli.h"
#include "vmm/config_json.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "config_json_fuzzer: invariant violated: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (64 << 10)) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  kite::VmConfig config;
  if (!kite::cli::ApplyConfigJson(text, "/cfg", config)) return 0;
  bool valid = static_cast<bool>(kite::ValidateVmConfig(config));

  // The command line reads the same text through --config (a reader that serves it).
  std::vector<std::string> args = {"run", "--config", "/cfg/vm.json"};
  if (config.kernel.empty()) args.insert(args.end(), {"--kernel", "/k"});
  auto read = [&](const std::string&) -> kite::Result<std::string> { return text; };
  auto command = kite::cli::ParseCommandLine(args, read);
  if (valid && config.kernel.size() > 0 && !command) {
    Fail("a valid config refused through --config: " + command.error().message());
  }
  if (!valid) return 0;

  // The snapshot round trip: written with ConfigToJson, read back, written again: the same.
  nlohmann::json saved = kite::ConfigToJson(config);
  std::string dumped = saved.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  kite::VmConfig back;
  auto reread = kite::cli::ApplyConfigJson(dumped, "", back);
  if (!reread) Fail("ConfigToJson output refused: " + reread.error().message());
  if (kite::ConfigToJson(back) != saved) Fail("config round trip changed it: " + dumped);
  return 0;
}
