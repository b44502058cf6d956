// The balloon's option and JSON object. See balloon_options.h.
#include "vmm/balloon_options.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "base/key_values.h"
#include "base/units.h"
#include "vmm/device_options.h"

namespace kite::cli {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxStatisticsInterval = UINT32_MAX;  // seconds (QEMU: "timer value is too big")

Result<uint32_t> ParseSeconds(const std::string& key, const std::string& value) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size() ||
      n > kMaxStatisticsInterval) {
    return Err(key + "=" + value + ": expected seconds (0 to " +
               std::to_string(kMaxStatisticsInterval) + ")");
  }
  return static_cast<uint32_t>(n);
}

Result<bool> ParseSwitch(const std::string& key, const std::string& value) {
  if (value == "on" || value == "true" || value == "yes") return true;
  if (value == "off" || value == "false" || value == "no") return false;
  return Err(key + "=" + value + ": expected on or off");
}

// A non-negative JSON integer up to `max` (a value built in code is signed, a parsed one not).
bool JsonUnsigned(const json& value, uint64_t max, uint64_t* out) {
  if (!value.is_number_integer()) return false;
  if (!value.is_number_unsigned() && value.get<int64_t>() < 0) return false;
  *out = value.get<uint64_t>();
  return *out <= max;
}

Result<void> ApplyKey(const KeyValue& kv, BalloonConfig& b) {
  if (!kv.has_value) return Err("'" + kv.key + "': expected key=value");
  if (kv.key == "size") {
    b.size = TRY_CTX(ParseSize(kv.value), "size=" + kv.value);
  } else if (kv.key == "deflate_on_oom") {
    b.deflate_on_oom = TRY(ParseSwitch(kv.key, kv.value));
  } else if (kv.key == "free_page_reporting") {
    b.free_page_reporting = TRY(ParseSwitch(kv.key, kv.value));
  } else if (kv.key == "statistics_interval") {
    b.statistics_interval = TRY(ParseSeconds(kv.key, kv.value));
  } else if (kv.key == "id") {
    b.id = kv.value;
  } else {
    return Err("unknown balloon setting '" + kv.key +
               "' (size, deflate_on_oom, free_page_reporting, statistics_interval, id)");
  }
  return {};
}

}  // namespace

Result<BalloonConfig> ParseBalloonOption(std::string_view text) {
  BalloonConfig b;
  for (const KeyValue& kv : SplitKeyValues(text)) TRY(ApplyKey(kv, b));
  return b;
}

Result<BalloonConfig> BalloonFromJson(const json& v) {
  if (!v.is_object()) return Err("'balloon' must be an object");
  BalloonConfig b;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    const json& value = *it;
    if (key == "deflate_on_oom" || key == "free_page_reporting") {
      if (!value.is_boolean()) return Err("'" + key + "' must be true or false");
      (key == "deflate_on_oom" ? b.deflate_on_oom : b.free_page_reporting) = value.get<bool>();
    } else if (key == "amount_mib") {  // Firecracker
      uint64_t mib = 0;
      if (!JsonUnsigned(value, uint64_t{1} << 40, &mib)) {
        return Err("'amount_mib' must be a number of MiB");
      }
      b.size = mib << 20;
    } else if (key == "stats_polling_interval_s" || key == "statistics_interval") {
      uint64_t seconds = 0;
      if (!JsonUnsigned(value, kMaxStatisticsInterval, &seconds)) {
        return Err("'" + key + "' must be a number of seconds");
      }
      b.statistics_interval = static_cast<uint32_t>(seconds);
    } else if (key == "size" && value.is_number()) {
      if (!JsonUnsigned(value, UINT64_MAX, &b.size)) return Err("'size' must be a byte count");
    } else if ((key == "size" || key == "id") && value.is_string()) {
      TRY(ApplyKey({key, value.get<std::string>(), true}, b));
    } else {
      return Err("balloon: unknown key or bad value for '" + key + "'");
    }
  }
  return b;
}

json BalloonToJson(const BalloonConfig& b) {
  json out = {{"size", b.size},
              {"deflate_on_oom", b.deflate_on_oom},
              {"free_page_reporting", b.free_page_reporting},
              {"statistics_interval", b.statistics_interval}};
  if (!b.id.empty()) out["id"] = b.id;
  return out;
}

Result<void> ValidateBalloon(const BalloonConfig& b, uint64_t memory) {
  if (b.size % 4096 != 0) {
    return Err("balloon: size " + std::to_string(b.size) + " is not a multiple of 4 KiB");
  }
  if (b.size > memory) {
    return Err("balloon: size " + FormatSize(b.size) + " is more than the guest's memory (" +
               FormatSize(memory) + ")");
  }
  if (!b.id.empty()) TRY_CTX(ValidateDeviceId(b.id), "balloon");
  return {};
}

std::string BalloonId(const BalloonConfig& b) {
  return b.id.empty() ? "balloon0" : b.id;
}

}  // namespace kite::cli
