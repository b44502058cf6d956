// A VmConfig as the JSON object `kite run --config FILE.json` reads (cli::ApplyConfigJson,
// docs/CLI.md): the snapshot's config.json and its "config" member are written with it, and
// read back with ApplyConfigJson, so one schema serves both.
//
//   nlohmann::json j = ConfigToJson(config);
//   VmConfig back;
//   TRY(cli::ApplyConfigJson(j.dump(), "", back));   // back equals config
//
// Every key is written, defaults included, so that a later change of a default does not
// change a saved machine. Relative paths stay relative (to kite's working directory).
#pragma once

#include <nlohmann/json.hpp>

#include "kite/kite.h"

namespace kite {

nlohmann::json ConfigToJson(const VmConfig& config);

}  // namespace kite
