// libFuzzer target for the virtio-balloon's wire formats (src/virtio/balloon_request.cc): a
// feature set and the queue roles it gives, then one chain's readable bytes (split into up to
// 16 descriptors) read both as an inflate/deflate PFN list (ReadPfns, with a fuzzed limit)
// and as a statistics buffer (ParseStats, with a fuzzed entry limit); every PFN is then
// looked up in a guest memory of three regions as the device looks it up (Slice and
// IsValidRange of the PFN's 4 KiB page). Checks beyond the sanitizers:
//   - the queue roles are inflate, deflate, then stats and reporting only when negotiated, in
//     that order, without gaps, each once, kNone after;
//   - ReadPfns returns exactly min(whole PFNs, limit) PFNs, each the chain's le32 at its
//     place, counts the rest as skipped and flags 1-3 trailing bytes;
//   - a PFN's page is found only when it lies wholly inside one region, and then at that
//     region's host address (4 KiB aligned there as in the guest), and IsValidRange agrees;
//   - ParseStats reads exactly min(whole entries, limit) entries, counts unknown tags (ignored)
//     apart from known ones, keeps each known tag's last value and leaves tags it did not see
//     as they were.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <span>
#include <vector>

#include "fuzz_iovecs.h"
#include "virtio/balloon_request.h"
#include "virtio/virtio_spec.h"
#include "vmm/guest_memory.h"

namespace {

using namespace kite::virtio::balloon;
using kite::GuestAddr;

// Regions in PFNs: low RAM from 0, a few pages above a hole, and the last pages a le32 PFN
// can name (the page ending at 2^44 bytes).
struct RegionPfns {
  uint64_t first;
  uint64_t pages;
};
constexpr RegionPfns kRegions[] = {{0, 16}, {256, 8}, {0xfffffffcull, 4}};

struct Ram {
  std::vector<uint8_t*> blocks;
  kite::GuestMemory memory;
};

const Ram& TheRam() {
  static Ram* ram = [] {
    auto* r = new Ram;
    std::vector<kite::MemoryRegion> regions;
    for (const RegionPfns& p : kRegions) {
      auto* host = static_cast<uint8_t*>(std::aligned_alloc(kPfnPageSize, p.pages * kPfnPageSize));
      if (host == nullptr) std::abort();
      r->blocks.push_back(host);
      regions.push_back({GuestAddr(p.first << kPfnShift), p.pages * kPfnPageSize, host});
    }
    auto memory = kite::GuestMemory::FromRegions(std::move(regions));
    if (!memory) std::abort();
    r->memory = std::move(*memory);
    return r;
  }();
  return *ram;
}

void CheckRoles(uint64_t features) {
  std::vector<Role> expected = {Role::kInflate, Role::kDeflate};
  if (features & kite::virtio::FeatureBit(kFeatureStatsVq)) expected.push_back(Role::kStats);
  if (features & kite::virtio::FeatureBit(kFeatureReporting)) expected.push_back(Role::kReporting);
  for (uint16_t index = 0; index < 8; ++index) {
    Role want = index < expected.size() ? expected[index] : Role::kNone;
    if (QueueRole(index, features) != want) std::abort();
  }
  if (QueueRole(UINT16_MAX, features) != Role::kNone) std::abort();
}

// The page of `pfn` as the device finds it (balloon.cc InflateLocked, DeflateLocked).
void CheckPage(uint32_t pfn) {
  const Ram& ram = TheRam();
  const GuestAddr addr(uint64_t{pfn} << kPfnShift);
  std::span<uint8_t> page = ram.memory.Slice(addr, kPfnPageSize);
  if (ram.memory.IsValidRange(addr, kPfnPageSize) != !page.empty()) std::abort();
  for (size_t i = 0; i < std::size(kRegions); ++i) {
    const RegionPfns& r = kRegions[i];
    if (pfn < r.first || pfn >= r.first + r.pages) continue;
    if (page.size() != kPfnPageSize) std::abort();
    if (page.data() != ram.blocks[i] + (pfn - r.first) * kPfnPageSize) std::abort();
    if (reinterpret_cast<uintptr_t>(page.data()) % kPfnPageSize != 0) std::abort();
    page.front() = 1;  // the page is host memory of the region: ASan checks both ends
    page.back() = 1;
    return;
  }
  if (!page.empty()) std::abort();  // not guest RAM: never a page
}

void CheckPfns(const kite::fuzz::FuzzIovecs& chain, uint32_t max, std::vector<uint32_t> out) {
  const PfnParse parse = ReadPfns(chain.iov, max, &out);
  const size_t whole = chain.flat.size() / sizeof(uint32_t);
  const size_t read = whole < max ? whole : max;
  if (out.size() != read || parse.skipped != whole - read) std::abort();
  if (parse.trailing != (chain.flat.size() % sizeof(uint32_t) != 0)) std::abort();
  for (size_t i = 0; i < read; ++i) {
    uint32_t want;
    std::memcpy(&want, chain.flat.data() + i * sizeof(uint32_t), sizeof(want));
    if (out[i] != want) std::abort();
    CheckPage(out[i]);
  }
}

void CheckStats(const kite::fuzz::FuzzIovecs& chain, uint32_t max, const StatValues& before) {
  StatValues values = before;
  const StatsParse parse = ParseStats(chain.iov, &values, max);
  const size_t whole = chain.flat.size() / kStatEntryBytes;
  const size_t read = whole < max ? whole : max;
  if (size_t{parse.entries} + parse.unknown != read) std::abort();
  if (parse.trailing != (chain.flat.size() % kStatEntryBytes != 0)) std::abort();
  StatValues want = before;
  uint32_t unknown = 0;
  for (size_t i = 0; i < read; ++i) {
    uint16_t tag;
    uint64_t value;
    std::memcpy(&tag, chain.flat.data() + i * kStatEntryBytes, sizeof(tag));
    std::memcpy(&value, chain.flat.data() + i * kStatEntryBytes + sizeof(tag), sizeof(value));
    if (tag >= kStatTags) {
      ++unknown;
    } else {
      want[tag] = value;
    }
  }
  if (parse.unknown != unknown || values != want) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  CheckRoles(in.ConsumeIntegral<uint64_t>());
  // Limits around the device's (4096 PFNs, 256 entries) but small enough to be reached.
  const uint32_t max_pfns = in.ConsumeIntegralInRange<uint32_t>(0, 4096);
  const uint32_t max_entries = in.ConsumeIntegralInRange<uint32_t>(0, 256);
  // What the vector held before: ReadPfns must replace it, not append to it.
  std::vector<uint32_t> stale(in.ConsumeIntegralInRange<size_t>(0, 8), 0xdeadbeef);
  StatValues before;
  before.fill(kStatUnset);
  if (in.ConsumeBool()) before[in.ConsumeIntegralInRange<size_t>(0, kStatTags - 1)] = 0;
  const kite::fuzz::FuzzIovecs chain = kite::fuzz::ConsumeIovecs(in, 16, 128);
  CheckPfns(chain, max_pfns, std::move(stale));
  CheckStats(chain, max_entries, before);
  return 0;
}
