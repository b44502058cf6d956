// The memory balloon's option (--balloon, Cloud Hypervisor's names) and its "balloon" object in
// the JSON config (the same keys; Firecracker's amount_mib and stats_polling_interval_s too),
// parsed into BalloonConfig (include/kite/kite.h) and checked. Pure code; docs/CLI.md is the
// user reference.
//
//   --balloon size=SIZE[,deflate_on_oom=on][,free_page_reporting=on]
//             [,statistics_interval=SECONDS][,id=ID]
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "base/result.h"
#include "kite/kite.h"

namespace kite::cli {

Result<BalloonConfig> ParseBalloonOption(std::string_view text);
Result<BalloonConfig> BalloonFromJson(const nlohmann::json& v);
nlohmann::json BalloonToJson(const BalloonConfig& balloon);
// size a multiple of 4 KiB and at most the guest's RAM; the id (if given) a valid device id.
Result<void> ValidateBalloon(const BalloonConfig& balloon, uint64_t memory);
// "balloon0" unless the config names it.
std::string BalloonId(const BalloonConfig& balloon);

}  // namespace kite::cli
