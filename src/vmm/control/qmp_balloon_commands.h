// The memory balloon's QMP commands (qmp_balloon_commands.cc), QEMU's names and shapes:
// `balloon`, `query-balloon`, and `qom-get` / `qom-set` on the balloon's QOM path for its
// properties `guest-stats` and `guest-stats-polling-interval` (docs/virtio-balloon-stats.txt
// in QEMU). Declared here for the table in qmp_commands.cc.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "base/result.h"
#include "kite/kite.h"
#include "vmm/control/qmp_commands.h"

namespace kite::qmp {

Result<nlohmann::json> Balloon(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> QueryBalloon(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> QomGet(Machine& machine, const nlohmann::json& args);
Result<nlohmann::json> QomSet(Machine& machine, const nlohmann::json& args);

// QEMU's guest-stats value: {"stats": {"stat-swap-in": ..., ...}, "last-update": seconds};
// a statistic the guest never reported is 18446744073709551615 (QEMU's -1 as uint64).
nlohmann::json GuestStatsJson(const BalloonInfo& info);

inline constexpr std::array<ArgSpec, 1> kBalloonArgs = {{{"value", ArgType::kInteger, true}}};
inline constexpr std::array<ArgSpec, 2> kQomGetArgs = {
    {{"path", ArgType::kString, true}, {"property", ArgType::kString, true}}};
inline constexpr std::array<ArgSpec, 3> kQomSetArgs = {{{"path", ArgType::kString, true},
                                                        {"property", ArgType::kString, true},
                                                        {"value", ArgType::kAny, true}}};

}  // namespace kite::qmp
