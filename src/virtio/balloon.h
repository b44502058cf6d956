// VirtioBalloon: the virtio memory balloon (virtio 1.2 section 5.5), as QEMU's virtio-balloon
// and Cloud Hypervisor's --balloon: the host asks the guest for a number of pages (num_pages,
// QMP `balloon`), the guest's driver inflates the balloon with pages it gives up and reports
// how many it holds (actual), and kite returns their host memory (GuestMemory::Discard).
// Optional: memory statistics (STATS_VQ, QEMU's guest-stats), deflate on OOM, free page
// reporting (REPORTING: the guest hands over free pages without inflating). See balloon.cc and
// docs/VIRTIO.md "The memory balloon".
#pragma once

#include <asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>

#include "base/result.h"
#include "virtio/balloon_request.h"
#include "virtio/throttle.h"
#include "virtio/virtio_device.h"

namespace kite::virtio {

struct BalloonOptions {
  uint32_t target_pages = 0;         // num_pages at start (4 KiB pages; --balloon size=)
  bool deflate_on_oom = false;       // offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM
  bool free_page_reporting = false;  // offer VIRTIO_BALLOON_F_REPORTING
  uint32_t stats_interval_s = 0;     // ask for statistics this often; 0: never
  uint16_t queue_size = 128;
  // The guest RAM's page size (GuestMemory::page_size()): with huge pages MUST_TELL_HOST is
  // offered (balloon.cc).
  uint64_t host_page_size = 4096;
  // The event loop's clock and timers (statistics polls, BALLOON_CHANGE's rate); tests pass
  // fakes. Null: LoopThrottleTime(loop).
  std::function<std::unique_ptr<ThrottleTime>()> make_time;
};

// What the guest last reported on the statistics queue (QEMU's guest-stats).
struct BalloonStats {
  balloon::StatValues values{};  // by tag; balloon::kStatUnset: never reported
  int64_t last_update = 0;       // host wall-clock seconds of the last report; 0: none yet
};

struct BalloonCounters {
  uint64_t inflated_pages = 0;  // valid PFNs the guest inflated
  uint64_t deflated_pages = 0;  // valid PFNs the guest deflated
  uint64_t bad_pfns = 0;        // PFNs outside guest RAM or beyond a request's cap: ignored
  uint64_t released_bytes = 0;  // host memory given back for inflated pages
  uint64_t reported_bytes = 0;  // host memory given back for reported free pages
  uint64_t discard_errors = 0;  // the kernel refused to release a range
};

class BalloonDevice : public VirtioDevice {
 public:
  // QMP `balloon`: the pages the driver should hold (num_pages). The caller then raises the
  // configuration-change interrupt (TransportCore::NotifyConfigChanged). Any thread.
  virtual void SetTarget(uint32_t pages) = 0;
  virtual uint32_t target() const = 0;
  // The driver's `actual`: pages in the balloon now.
  virtual uint32_t actual() const = 0;
  virtual BalloonStats stats() const = 0;
  // QMP qom-set guest-stats-polling-interval (0: stop asking). Any thread.
  virtual void SetStatsInterval(uint32_t seconds) = 0;
  virtual uint32_t stats_interval() const = 0;
  virtual BalloonCounters balloon_counters() const = 0;
  // `fn(actual)` on the event loop when the driver's actual changed: at once, then at most
  // once a second with the latest value (QEMU's BALLOON_CHANGE rate). Set before the VM runs.
  virtual void OnActualChange(std::function<void(uint32_t actual)> fn) = 0;
};

Result<std::shared_ptr<BalloonDevice>> CreateVirtioBalloon(const BalloonOptions& options,
                                                           asio::io_context* loop);

}  // namespace kite::virtio
