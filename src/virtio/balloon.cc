// VirtioBalloon: the virtio memory balloon (virtio 1.2 section 5.5).
//
// Queues (balloon_request.h: Linux numbers them without gaps): inflateq, deflateq, statsq
// (VIRTIO_BALLOON_F_STATS_VQ, always offered, as QEMU), reporting_vq (VIRTIO_BALLOON_F_REPORTING,
// with free_page_reporting=on). Configuration (5.5.4): num_pages, the device's request, and
// actual, the driver's answer; QMP `balloon` sets num_pages, a driver write of actual raises
// BALLOON_CHANGE (OnActualChange).
//
// Policy:
//   * Inflate: each PFN (a 4 KiB page, 5.5.6) inside guest RAM has its host memory given back
//     (GuestMemory::Discard: MADV_DONTNEED, or PUNCH_HOLE for shared RAM); runs of adjacent
//     PFNs go in one call. A PFN outside RAM (5.5.6.1 says the driver gives "page numbers of
//     pages it no longer needs" — anything else is a guest error) is ignored and counted in
//     `bad_pfns`, never touched. At most kMaxPfnsPerChain PFNs of one chain are read (Linux
//     sends 256); the rest are counted in `bad_pfns` and left as they are.
//   * Huge-page RAM: a huge page is given back only once every 4 KiB page of it is in the
//     balloon (a bitmap of inflated pages and a count per huge page); a deflate takes its page
//     out again. That is only safe when the driver tells the device before it reuses a page,
//     so MUST_TELL_HOST is offered with huge pages and, if the driver refuses it, inflated
//     huge-page memory is not given back (counted, not released).
//   * Deflate: the page leaves the bitmap; nothing else (the next touch faults memory in).
//   * Free page reporting (5.5.6.7): every buffer of a report chain (device-writable in Linux,
//     readable accepted too) names free guest memory; the whole host pages inside it are
//     given back and the chain returned with used length 0. The queue's chain cap is raised
//     to kReportingChainBytes (Linux reports up to 32 blocks of 4 MiB: 128 MiB).
//   * Statistics (5.5.6.3): the driver keeps one buffer on statsq; the device reads it, keeps
//     the values (QEMU's guest-stats) and holds the buffer; every stats_interval seconds it
//     returns the buffer, which asks the driver for fresh numbers. A second buffer while one is
//     held returns the held one first (as QEMU).
//   * A chain with no readable bytes on inflate/deflate is returned unused (length 0). A broken
//     ring (G3-G5) marks the device DEVICE_NEEDS_RESET.
//   * One kick handles at most kPagesPerRun PFNs (or kReportsPerRun reports), then posts the
//     rest to the loop, so a flood cannot hold the loop (G10, G34).
//
// Threads: queues, timers and the OnActualChange callback on the event loop; Activate, Reset,
// ReadConfig and WriteConfig on a vCPU thread under the transport's lock; SetTarget,
// SetStatsInterval and the queries on control threads. `mu_` guards all state and is held while
// guest memory is read or released, so nothing happens after Reset() returns (G33). Timers run
// only on the loop (their settings are posted there).
//
// Snapshot state (SaveDeviceState): a version byte, num_pages, actual and the statistics
// interval (le32 each). Quiesce gives the held statistics buffer back (Queue::Unpop); the
// huge-page bitmap is not saved (a restore maps 4 KiB pages).
#include "virtio/balloon.h"

#include <algorithm>
#include <asio/post.hpp>
#include <atomic>
#include <cstring>
#include <ctime>
#include <mutex>
#include <vector>

#include "base/log.h"
#include "base/units.h"

namespace kite::virtio {
namespace {

using balloon::Role;

constexpr uint32_t kMaxPfnsPerChain = 4096;
constexpr uint32_t kPagesPerRun = 64 * 1024;
constexpr uint32_t kReportsPerRun = 64;
constexpr uint32_t kReportingChainBytes = 1u << 30;
constexpr uint64_t kEventIntervalNs = 1'000'000'000;  // BALLOON_CHANGE: once a second at most
constexpr uint8_t kStateVersion = 1;
constexpr size_t kStateBytes = 13;

void PutLe32(uint8_t* p, uint32_t v) {
  std::memcpy(p, &v, sizeof(v));  // little-endian host (x86_64)
}
uint32_t GetLe32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

class VirtioBalloon final : public BalloonDevice,
                            public std::enable_shared_from_this<VirtioBalloon> {
 public:
  VirtioBalloon(const BalloonOptions& options, asio::io_context* loop)
      : options_(options),
        loop_(loop),
        stats_time_(options.make_time ? options.make_time() : LoopThrottleTime(loop)),
        event_time_(options.make_time ? options.make_time() : LoopThrottleTime(loop)),
        target_(options.target_pages),
        stats_interval_(options.stats_interval_s) {
    stats_.values.fill(balloon::kStatUnset);
  }

  uint32_t device_id() const override { return kDeviceIdBalloon; }
  uint64_t device_features() const override;
  std::vector<uint16_t> queue_max_sizes() const override;
  void ReadConfig(uint64_t offset, std::span<uint8_t> data) override;
  void WriteConfig(uint64_t offset, std::span<const uint8_t> data) override;
  Result<void> Activate(ActiveQueues queues) override;
  void ProcessQueue(uint16_t index) override;
  void Reset() override;
  Result<void> Quiesce() override;
  void Unquiesce() override;
  std::vector<uint8_t> SaveDeviceState() const override;
  Result<void> RestoreDeviceState(std::span<const uint8_t> bytes) override;
  std::string name() const override { return "virtio-balloon"; }
  std::string description() const override;
  DeviceCounters counters() const override;

  void SetTarget(uint32_t pages) override;
  uint32_t target() const override;
  uint32_t actual() const override;
  BalloonStats stats() const override;
  void SetStatsInterval(uint32_t seconds) override;
  uint32_t stats_interval() const override;
  BalloonCounters balloon_counters() const override;
  void OnActualChange(std::function<void(uint32_t)> fn) override;

 private:
  enum class RunResult { kIdle, kMore, kBroken };
  void Run(uint16_t index, uint64_t generation);
  RunResult RunPagesLocked(Queue* queue, bool inflate);
  RunResult RunStatsLocked(Queue* queue);
  RunResult RunReportingLocked(Queue* queue);
  void InflateLocked(const std::vector<uint32_t>& pfns);
  void DeflateLocked(const std::vector<uint32_t>& pfns);
  // Gives back host memory; counts what went (`into`) and what the kernel refused.
  void ReleaseLocked(std::span<uint8_t> host, uint64_t* into);
  // Huge-page RAM: marks/unmarks one 4 KiB page; true when its huge page became all inflated.
  bool MarkLocked(uint32_t pfn, bool inflated);
  // Statistics polls (on the loop): returns the held buffer every stats_interval_ seconds.
  void SchedulePoll(uint64_t delay_s);
  void Poll(uint64_t generation);
  void ReturnStatsLocked(bool signal);
  // BALLOON_CHANGE's rate (on the loop).
  void ActualChanged();
  void SendActual();
  template <typename Fn>
  void Post(Fn fn) {
    std::weak_ptr<VirtioBalloon> weak = weak_from_this();
    asio::post(*loop_, [weak, fn] {
      if (auto self = weak.lock()) fn(*self);
    });
  }

  const BalloonOptions options_;
  asio::io_context* const loop_;
  const std::unique_ptr<ThrottleTime> stats_time_;  // loop only
  const std::unique_ptr<ThrottleTime> event_time_;  // loop only

  mutable std::mutex mu_;
  uint64_t generation_ = 0;  // bumped by Activate and Reset: stale continuations stop
  bool quiesced_ = false;
  bool broken_ = false;
  ActiveQueues active_;
  std::vector<Role> roles_;       // per transport queue, for the negotiated features
  Queue* stats_queue_ = nullptr;  // while live
  bool stats_held_ = false;       // a statistics buffer is held (its head in stats_head_)
  uint16_t stats_head_ = 0;
  bool huge_ = false;                     // huge-page RAM: inflate through the bitmap
  bool huge_release_ = false;             // ... and the driver tells before reusing a page
  std::vector<uint64_t> inflated_bits_;   // huge_: per 4 KiB page of RAM
  std::vector<uint32_t> inflated_count_;  // huge_: per huge page
  uint32_t target_;
  uint32_t actual_ = 0;
  uint32_t stats_interval_;
  BalloonStats stats_;
  BalloonCounters counters_;
  uint64_t requests_ = 0;
  DescriptorChain chain_;
  std::vector<uint32_t> pfns_;
  std::function<void(uint32_t)> on_actual_;
  bool event_pending_ = false;
  bool event_sent_ = false;
  uint64_t last_event_ns_ = 0;
};

uint64_t VirtioBalloon::device_features() const {
  uint64_t f = FeatureBit(kFeatureVersion1) | FeatureBit(kFeatureIndirectDesc) |
               FeatureBit(kFeatureEventIdx) | FeatureBit(balloon::kFeatureStatsVq);
  if (options_.deflate_on_oom) f |= FeatureBit(balloon::kFeatureDeflateOnOom);
  if (options_.free_page_reporting) f |= FeatureBit(balloon::kFeatureReporting);
  if (options_.host_page_size > balloon::kPfnPageSize)
    f |= FeatureBit(balloon::kFeatureMustTellHost);
  return f;
}

std::vector<uint16_t> VirtioBalloon::queue_max_sizes() const {
  size_t n = options_.free_page_reporting ? 4 : 3;
  return std::vector<uint16_t>(n, options_.queue_size);
}

void VirtioBalloon::ReadConfig(uint64_t offset, std::span<uint8_t> data) {
  uint8_t config[balloon::kConfigSize] = {};
  {
    std::lock_guard lock(mu_);
    PutLe32(config + balloon::kConfigNumPages, target_);
    PutLe32(config + balloon::kConfigActual, actual_);
  }
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < sizeof(config) ? config[offset + i] : 0;
  }
}

// 5.5.4: only `actual` is the driver's to write; other writes are ignored.
void VirtioBalloon::WriteConfig(uint64_t offset, std::span<const uint8_t> data) {
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    uint8_t bytes[4];
    PutLe32(bytes, actual_);
    for (size_t i = 0; i < data.size(); ++i) {
      if (offset + i >= balloon::kConfigActual && offset + i < balloon::kConfigActual + 4) {
        bytes[offset + i - balloon::kConfigActual] = data[i];
      }
    }
    uint32_t value = GetLe32(bytes);
    changed = value != actual_;
    actual_ = value;
  }
  if (changed) Post([](VirtioBalloon& self) { self.ActualChanged(); });
}

Result<void> VirtioBalloon::Activate(ActiveQueues queues) {
  if (queues.queues.size() < 2 || queues.memory == nullptr) {
    return Err("virtio-balloon: expected its queues and guest memory");
  }
  std::lock_guard lock(mu_);
  ++generation_;
  active_ = std::move(queues);
  broken_ = false;
  stats_held_ = false;
  stats_queue_ = nullptr;
  roles_.clear();
  for (uint16_t i = 0; i < active_.queues.size(); ++i) {
    roles_.push_back(balloon::QueueRole(i, active_.features));
    if (roles_.back() == Role::kStats) stats_queue_ = active_.queues[i];
    if (roles_.back() == Role::kReporting) {
      active_.queues[i]->set_max_chain_bytes(kReportingChainBytes);
    }
  }
  const uint64_t page = active_.memory->page_size();
  huge_ = page > balloon::kPfnPageSize;
  huge_release_ = huge_ && (active_.features & FeatureBit(balloon::kFeatureMustTellHost));
  inflated_bits_.clear();
  inflated_count_.clear();
  if (huge_) {
    uint64_t pages = active_.memory->end().value >> balloon::kPfnShift;
    inflated_bits_.assign((pages + 63) / 64, 0);
    inflated_count_.assign(active_.memory->end().value / page + 1, 0);
  }
  // Linux makes its first statistics buffer available and kicks before DRIVER_OK (its probe
  // primes statsq in init_vqs), a kick the transport drops: look at every queue once now.
  const uint64_t generation = generation_;
  for (uint16_t i = 0; i < roles_.size(); ++i) {
    Post([i, generation](VirtioBalloon& self) { self.Run(i, generation); });
  }
  if (stats_queue_ != nullptr && stats_interval_ != 0) {
    Post([generation](VirtioBalloon& self) {
      std::lock_guard lock(self.mu_);
      if (generation == self.generation_) self.SchedulePoll(self.stats_interval_);
    });
  }
  return {};
}

void VirtioBalloon::Reset() {
  bool changed;
  {
    std::lock_guard lock(mu_);
    ++generation_;
    active_ = ActiveQueues{};
    roles_.clear();
    stats_queue_ = nullptr;
    stats_held_ = false;
    broken_ = false;
    inflated_bits_.clear();
    inflated_count_.clear();
    // The driver is gone: every page it held is the guest's again.
    changed = actual_ != 0;
    actual_ = 0;
  }
  if (changed) Post([](VirtioBalloon& self) { self.ActualChanged(); });
}

void VirtioBalloon::ProcessQueue(uint16_t index) {
  uint64_t generation;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
  }
  Run(index, generation);
}

void VirtioBalloon::Run(uint16_t index, uint64_t generation) {
  RunResult result = RunResult::kIdle;
  std::function<void(const std::string&)> mark_broken;
  {
    std::lock_guard lock(mu_);
    if (generation != generation_ || quiesced_ || broken_ || index >= roles_.size()) return;
    Queue* queue = active_.queues[index];
    if (!queue->ready()) return;
    switch (roles_[index]) {
      case Role::kInflate:
      case Role::kDeflate:
        result = RunPagesLocked(queue, roles_[index] == Role::kInflate);
        break;
      case Role::kStats:
        result = RunStatsLocked(queue);
        break;
      case Role::kReporting:
        result = RunReportingLocked(queue);
        break;
      case Role::kNone:
        return;
    }
    if (active_.signal_used) active_.signal_used(index);
    if (result == RunResult::kBroken) {
      broken_ = true;
      mark_broken = active_.mark_broken;
    }
  }
  if (result == RunResult::kBroken) {
    if (mark_broken) mark_broken("malformed available ring");
  } else if (result == RunResult::kMore) {
    Post([index, generation](VirtioBalloon& self) { self.Run(index, generation); });
  }
}

VirtioBalloon::RunResult VirtioBalloon::RunPagesLocked(Queue* queue, bool inflate) {
  uint64_t spent = 0;
  for (;;) {
    if (spent >= kPagesPerRun) return RunResult::kMore;
    Queue::PopResult pop = queue->Pop(&chain_);
    if (pop == Queue::PopResult::kEmpty) return RunResult::kIdle;
    if (pop == Queue::PopResult::kBroken) return RunResult::kBroken;
    ++requests_;
    balloon::PfnParse parse = balloon::ReadPfns(chain_.readable(), kMaxPfnsPerChain, &pfns_);
    if (parse.skipped != 0) {
      counters_.bad_pfns += parse.skipped;
      KITE_LOG_RATELIMITED(Warn, "virtio-balloon: %u PFNs beyond %u in one request ignored",
                           parse.skipped, kMaxPfnsPerChain);
    }
    if (inflate) {
      InflateLocked(pfns_);
    } else {
      DeflateLocked(pfns_);
    }
    queue->PushUsed(chain_.head(), 0);
    spent += std::max<size_t>(pfns_.size(), 1);
  }
}

void VirtioBalloon::InflateLocked(const std::vector<uint32_t>& pfns) {
  const GuestMemory& memory = *active_.memory;
  std::span<uint8_t> run;  // adjacent pages, released together
  for (uint32_t pfn : pfns) {
    std::span<uint8_t> page =
        memory.Slice(GuestAddr(uint64_t{pfn} << balloon::kPfnShift), balloon::kPfnPageSize);
    if (page.empty()) {
      ++counters_.bad_pfns;
      KITE_LOG_RATELIMITED(Warn, "virtio-balloon: inflated PFN 0x%x is not guest RAM: ignored",
                           pfn);
      continue;
    }
    ++counters_.inflated_pages;
    if (huge_) {
      if (MarkLocked(pfn, true) && huge_release_) {
        uint64_t size = memory.page_size();
        uint64_t base = (uint64_t{pfn} << balloon::kPfnShift) / size * size;
        ReleaseLocked(memory.Slice(GuestAddr(base), size), &counters_.released_bytes);
      }
      continue;
    }
    if (!run.empty() && run.data() + run.size() == page.data()) {
      run = std::span<uint8_t>(run.data(), run.size() + page.size());
      continue;
    }
    ReleaseLocked(run, &counters_.released_bytes);
    run = page;
  }
  ReleaseLocked(run, &counters_.released_bytes);
}

void VirtioBalloon::DeflateLocked(const std::vector<uint32_t>& pfns) {
  for (uint32_t pfn : pfns) {
    if (!active_.memory->IsValidRange(GuestAddr(uint64_t{pfn} << balloon::kPfnShift),
                                      balloon::kPfnPageSize)) {
      ++counters_.bad_pfns;
      KITE_LOG_RATELIMITED(Warn, "virtio-balloon: deflated PFN 0x%x is not guest RAM: ignored",
                           pfn);
      continue;
    }
    ++counters_.deflated_pages;
    if (huge_) MarkLocked(pfn, false);
  }
}

bool VirtioBalloon::MarkLocked(uint32_t pfn, bool inflated) {
  uint64_t& word = inflated_bits_[pfn / 64];
  const uint64_t bit = uint64_t{1} << (pfn % 64);
  if (((word & bit) != 0) == inflated) return false;  // already so (a repeated PFN)
  word ^= bit;
  const uint64_t per_huge = active_.memory->page_size() >> balloon::kPfnShift;
  uint32_t& count = inflated_count_[pfn / per_huge];
  count = inflated ? count + 1 : count - 1;
  return inflated && count == per_huge;
}

void VirtioBalloon::ReleaseLocked(std::span<uint8_t> host, uint64_t* into) {
  if (host.empty()) return;
  Result<uint64_t> released = active_.memory->Discard(host);
  if (released) {
    *into += *released;
    return;
  }
  ++counters_.discard_errors;
  KITE_LOG_RATELIMITED(Warn, "virtio-balloon: %s", released.error().message().c_str());
}

VirtioBalloon::RunResult VirtioBalloon::RunReportingLocked(Queue* queue) {
  for (uint32_t reports = 0;; ++reports) {
    if (reports == kReportsPerRun) return RunResult::kMore;
    Queue::PopResult pop = queue->Pop(&chain_);
    if (pop == Queue::PopResult::kEmpty) return RunResult::kIdle;
    if (pop == Queue::PopResult::kBroken) return RunResult::kBroken;
    ++requests_;
    // The queue split the buffers per memory region and checked each lies in RAM.
    for (const iovec& iov : chain_.readable()) {
      ReleaseLocked({static_cast<uint8_t*>(iov.iov_base), iov.iov_len}, &counters_.reported_bytes);
    }
    for (const iovec& iov : chain_.writable()) {
      ReleaseLocked({static_cast<uint8_t*>(iov.iov_base), iov.iov_len}, &counters_.reported_bytes);
    }
    queue->PushUsed(chain_.head(), 0);
  }
}

VirtioBalloon::RunResult VirtioBalloon::RunStatsLocked(Queue* queue) {
  for (;;) {
    Queue::PopResult pop = queue->Pop(&chain_);
    if (pop == Queue::PopResult::kEmpty) return RunResult::kIdle;
    if (pop == Queue::PopResult::kBroken) return RunResult::kBroken;
    ++requests_;
    // 5.5.6.3: one buffer at a time; a new one while another is held returns the old one.
    if (stats_held_) ReturnStatsLocked(false);
    balloon::StatsParse parse = balloon::ParseStats(chain_.readable(), &stats_.values);
    if (parse.unknown != 0 || parse.trailing) {
      KITE_LOG_RATELIMITED(Debug, "virtio-balloon: stats with %u unknown tags%s", parse.unknown,
                           parse.trailing ? " and trailing bytes" : "");
    }
    stats_.last_update = static_cast<int64_t>(std::time(nullptr));
    stats_held_ = true;
    stats_head_ = chain_.head();
  }
}

void VirtioBalloon::ReturnStatsLocked(bool signal) {
  if (!stats_held_ || stats_queue_ == nullptr) return;
  stats_held_ = false;
  stats_queue_->PushUsed(stats_head_, 0);
  if (!signal || !active_.signal_used) return;
  for (uint16_t i = 0; i < roles_.size(); ++i) {
    if (roles_[i] == Role::kStats) active_.signal_used(i);
  }
}

void VirtioBalloon::SchedulePoll(uint64_t delay_s) {
  uint64_t generation = generation_;
  std::weak_ptr<VirtioBalloon> weak = weak_from_this();
  stats_time_->RunAfter(delay_s * 1'000'000'000, [weak, generation] {
    if (auto self = weak.lock()) self->Poll(generation);
  });
}

void VirtioBalloon::Poll(uint64_t generation) {
  std::lock_guard lock(mu_);
  if (generation != generation_ || stats_interval_ == 0) return;
  if (!quiesced_ && !broken_) ReturnStatsLocked(true);
  SchedulePoll(stats_interval_);
}

void VirtioBalloon::ActualChanged() {
  std::function<void(uint32_t)> fn;
  uint32_t value;
  {
    std::lock_guard lock(mu_);
    if (!on_actual_ || event_pending_) return;  // a pending send takes the latest value
    uint64_t now = event_time_->NowNs();
    if (event_sent_ && now - last_event_ns_ < kEventIntervalNs) {
      event_pending_ = true;
      std::weak_ptr<VirtioBalloon> weak = weak_from_this();
      event_time_->RunAfter(kEventIntervalNs - (now - last_event_ns_), [weak] {
        if (auto self = weak.lock()) self->SendActual();
      });
      return;
    }
    event_sent_ = true;
    last_event_ns_ = now;
    fn = on_actual_;
    value = actual_;
  }
  fn(value);
}

void VirtioBalloon::SendActual() {
  std::function<void(uint32_t)> fn;
  uint32_t value;
  {
    std::lock_guard lock(mu_);
    event_pending_ = false;
    last_event_ns_ = event_time_->NowNs();
    fn = on_actual_;
    value = actual_;
  }
  if (fn) fn(value);
}

Result<void> VirtioBalloon::Quiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = true;
  // Nothing is saved in flight: the held statistics buffer goes back to the ring (the driver
  // has not been told about it), or, if that cannot be, to the driver unused.
  if (stats_held_ && stats_queue_ != nullptr) {
    stats_held_ = false;
    if (!stats_queue_->Unpop(1)) {
      stats_held_ = true;
      ReturnStatsLocked(true);
    }
  }
  return {};
}

void VirtioBalloon::Unquiesce() {
  std::lock_guard lock(mu_);
  quiesced_ = false;
}

std::vector<uint8_t> VirtioBalloon::SaveDeviceState() const {
  std::lock_guard lock(mu_);
  std::vector<uint8_t> out(kStateBytes);
  out[0] = kStateVersion;
  PutLe32(&out[1], target_);
  PutLe32(&out[5], actual_);
  PutLe32(&out[9], stats_interval_);
  return out;
}

Result<void> VirtioBalloon::RestoreDeviceState(std::span<const uint8_t> bytes) {
  if (bytes.size() != kStateBytes || bytes[0] != kStateVersion) {
    return Err("virtio-balloon: device state of " + std::to_string(bytes.size()) +
               " bytes (expected version " + std::to_string(kStateVersion) + ", " +
               std::to_string(kStateBytes) + " bytes)");
  }
  std::lock_guard lock(mu_);
  target_ = GetLe32(&bytes[1]);
  actual_ = GetLe32(&bytes[5]);
  stats_interval_ = GetLe32(&bytes[9]);
  return {};
}

std::string VirtioBalloon::description() const {
  std::lock_guard lock(mu_);
  return "balloon: target " + FormatSize(uint64_t{target_} << balloon::kPfnShift) + ", actual " +
         FormatSize(uint64_t{actual_} << balloon::kPfnShift);
}

DeviceCounters VirtioBalloon::counters() const {
  std::lock_guard lock(mu_);
  DeviceCounters c;
  c.requests = requests_;
  c.errors = counters_.discard_errors;
  c.drops = counters_.bad_pfns;
  return c;
}

void VirtioBalloon::SetTarget(uint32_t pages) {
  std::lock_guard lock(mu_);
  target_ = pages;
}

uint32_t VirtioBalloon::target() const {
  std::lock_guard lock(mu_);
  return target_;
}

uint32_t VirtioBalloon::actual() const {
  std::lock_guard lock(mu_);
  return actual_;
}

BalloonStats VirtioBalloon::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

// As QEMU's qom-set: enabling asks at once, then every `seconds`.
void VirtioBalloon::SetStatsInterval(uint32_t seconds) {
  {
    std::lock_guard lock(mu_);
    if (seconds == stats_interval_) return;
    stats_interval_ = seconds;
  }
  if (seconds == 0) return;  // the pending poll finds the interval 0 and stops
  Post([](VirtioBalloon& self) {
    std::lock_guard lock(self.mu_);
    if (self.stats_interval_ != 0) self.SchedulePoll(0);
  });
}

uint32_t VirtioBalloon::stats_interval() const {
  std::lock_guard lock(mu_);
  return stats_interval_;
}

BalloonCounters VirtioBalloon::balloon_counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

void VirtioBalloon::OnActualChange(std::function<void(uint32_t)> fn) {
  std::lock_guard lock(mu_);
  on_actual_ = std::move(fn);
}

}  // namespace

Result<std::shared_ptr<BalloonDevice>> CreateVirtioBalloon(const BalloonOptions& options,
                                                           asio::io_context* loop) {
  if (loop == nullptr) return Err("virtio-balloon: no event loop");
  if (options.queue_size == 0 || (options.queue_size & (options.queue_size - 1)) != 0) {
    return Err("virtio-balloon: queue size must be a power of two");
  }
  return std::shared_ptr<BalloonDevice>(std::make_shared<VirtioBalloon>(options, loop));
}

}  // namespace kite::virtio
