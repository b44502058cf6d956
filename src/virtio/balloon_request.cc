// The balloon's wire formats: see balloon_request.h.
#include "virtio/balloon_request.h"

#include <cstring>

#include "virtio/queue.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio::balloon {

Role QueueRole(uint16_t index, uint64_t features) {
  Role present[4];
  size_t n = 0;
  present[n++] = Role::kInflate;
  present[n++] = Role::kDeflate;
  if (features & FeatureBit(kFeatureStatsVq)) present[n++] = Role::kStats;
  if (features & FeatureBit(kFeatureReporting)) present[n++] = Role::kReporting;
  return index < n ? present[index] : Role::kNone;
}

StatsParse ParseStats(std::span<const iovec> readable, StatValues* values, uint32_t max_entries) {
  StatsParse out;
  ChainReader reader(readable);
  uint8_t entry[kStatEntryBytes];
  while (out.entries + out.unknown < max_entries && reader.Read(entry, sizeof(entry))) {
    uint16_t tag;
    uint64_t value;
    std::memcpy(&tag, entry, sizeof(tag));  // little-endian host (x86_64)
    std::memcpy(&value, entry + sizeof(tag), sizeof(value));
    if (tag >= kStatTags) {
      ++out.unknown;
      continue;
    }
    (*values)[tag] = value;
    ++out.entries;
  }
  out.trailing = reader.remaining() % kStatEntryBytes != 0;
  return out;
}

PfnParse ReadPfns(std::span<const iovec> readable, uint32_t max, std::vector<uint32_t>* out) {
  PfnParse parse;
  ChainReader reader(readable);
  size_t total = reader.remaining();
  size_t count = total / sizeof(uint32_t);
  parse.trailing = total % sizeof(uint32_t) != 0;
  if (count > max) {
    parse.skipped = static_cast<uint32_t>(count - max);
    count = max;
  }
  out->resize(count);
  (void)reader.Read(out->data(), count * sizeof(uint32_t));  // little-endian host
  return parse;
}

}  // namespace kite::virtio::balloon
