// The virtio memory balloon's wire formats (virtio 1.2 section 5.5) and the pure functions
// that read them: which queue plays which role, the page frame numbers of an inflate or
// deflate request, and a statistics buffer. No device state here: fuzzable and unit-tested.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace kite::virtio::balloon {

// 5.5.3 Feature bits.
inline constexpr int kFeatureMustTellHost = 0;  // VIRTIO_BALLOON_F_MUST_TELL_HOST
inline constexpr int kFeatureStatsVq = 1;       // VIRTIO_BALLOON_F_STATS_VQ
inline constexpr int kFeatureDeflateOnOom = 2;  // VIRTIO_BALLOON_F_DEFLATE_ON_OOM
inline constexpr int kFeatureReporting = 5;     // VIRTIO_BALLOON_F_REPORTING

// 5.5.4 Configuration layout: num_pages (device), actual (driver), free_page_hint_cmd_id and
// poison_val (features kite does not offer: read as 0).
inline constexpr uint64_t kConfigNumPages = 0;
inline constexpr uint64_t kConfigActual = 4;
inline constexpr uint64_t kConfigSize = 16;

// Page frame numbers count 4 KiB pages whatever the guest's page size (5.5.6).
inline constexpr uint64_t kPfnShift = 12;
inline constexpr uint64_t kPfnPageSize = uint64_t{1} << kPfnShift;

// 5.5.2 Virtqueues. Only the queues of negotiated features exist, and Linux numbers them
// without gaps (its find_vqs skips an absent queue's index): with STATS_VQ refused and
// REPORTING accepted, the reporting queue is queue 2.
enum class Role { kInflate, kDeflate, kStats, kReporting, kNone };
// The role of transport queue `index` for the negotiated `features`.
Role QueueRole(uint16_t index, uint64_t features);

// 5.5.6.3 Memory statistics: tags as the spec and Linux number them (QEMU's names in
// balloon.cc). A value never reported is kStatUnset.
inline constexpr size_t kStatTags = 16;
inline constexpr uint64_t kStatUnset = UINT64_MAX;
using StatValues = std::array<uint64_t, kStatTags>;
inline constexpr size_t kStatEntryBytes = 10;  // le16 tag, le64 val, packed

struct StatsParse {
  uint32_t entries = 0;   // entries read (known tags)
  uint32_t unknown = 0;   // entries with a tag beyond kStatTags: ignored (5.5.6.3: "the device
                          // MUST ignore entries with tags it does not recognize")
  bool trailing = false;  // bytes after the last whole entry (ignored)
};
// Reads the stats entries of a buffer (a chain's readable bytes) into `values`; a tag given
// twice keeps its last value. At most `max_entries` entries are read.
StatsParse ParseStats(std::span<const iovec> readable, StatValues* values,
                      uint32_t max_entries = 256);

// The le32 page frame numbers of an inflate or deflate buffer, at most `max` of them (the rest
// are not read); `trailing` is set when the bytes are not a whole number of PFNs.
struct PfnParse {
  uint32_t skipped = 0;   // PFNs beyond `max`
  bool trailing = false;  // 1-3 bytes after the last PFN
};
PfnParse ReadPfns(std::span<const iovec> readable, uint32_t max, std::vector<uint32_t>* out);

}  // namespace kite::virtio::balloon
