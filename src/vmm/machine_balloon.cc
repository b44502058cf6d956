// kite::Machine's memory balloon (include/kite/kite.h): QMP `balloon`, query-balloon and the
// statistics properties, and BALLOON_CHANGE from the device (virtio/balloon.h) to the event
// subscribers. The target and the polling interval also go into the configuration, so a
// restart or a snapshot builds the balloon as it is now.
#include <algorithm>

#include "vmm/machine_impl.h"
#include "vmm/vm_virtio.h"

namespace kite {
namespace {

constexpr uint64_t kPageShift = 12;  // the balloon counts 4 KiB pages
const char* const kNoBalloon = "No balloon device has been activated";

}  // namespace

void Machine::Impl::WatchBalloon(Vm& fresh) {
  std::shared_ptr<virtio::BalloonDevice> balloon = FindBalloon(fresh.registry());
  if (!balloon) return;
  const uint64_t ram = config.memory;
  balloon->OnActualChange([this, ram](uint32_t actual) {
    uint64_t held = std::min<uint64_t>(uint64_t{actual} << kPageShift, ram);
    Emit("BALLOON_CHANGE", {{"actual", ram - held}});
  });
}

Result<void> Machine::SetBalloon(uint64_t bytes) {
  std::lock_guard control(impl_->control);
  Vm* current = impl_->CurrentVm();
  if (!current || !impl_->config.balloon) return Err(ErrorKind::kDeviceNotActive, kNoBalloon);
  // As QEMU's virtio_balloon_to_target: more than the RAM is the whole RAM (an empty balloon).
  const uint64_t ram = impl_->config.memory;
  const uint64_t pages = (ram - std::min(bytes, ram)) >> kPageShift;
  TRY(SetBalloonTarget(current->registry(), static_cast<uint32_t>(pages)));
  std::lock_guard lock(impl_->mutex);
  impl_->config.balloon->size = pages << kPageShift;
  return {};
}

Result<BalloonInfo> Machine::Balloon() const {
  std::lock_guard lock(impl_->mutex);
  BalloonInfo info;
  std::shared_ptr<virtio::BalloonDevice> balloon =
      impl_->vm ? FindBalloon(impl_->vm->registry(), &info.id) : nullptr;
  if (!balloon) return Err(ErrorKind::kDeviceNotActive, kNoBalloon);
  const uint64_t ram = impl_->config.memory;
  info.actual = ram - std::min<uint64_t>(uint64_t{balloon->actual()} << kPageShift, ram);
  info.target = ram - std::min<uint64_t>(uint64_t{balloon->target()} << kPageShift, ram);
  info.stats_interval = balloon->stats_interval();
  virtio::BalloonStats stats = balloon->stats();
  info.stats.assign(stats.values.begin(), stats.values.end());
  info.last_update = stats.last_update;
  return info;
}

Result<void> Machine::SetBalloonStatsInterval(uint32_t seconds) {
  std::lock_guard control(impl_->control);
  Vm* current = impl_->CurrentVm();
  std::shared_ptr<virtio::BalloonDevice> balloon =
      current ? FindBalloon(current->registry()) : nullptr;
  if (!balloon || !impl_->config.balloon) return Err(ErrorKind::kDeviceNotActive, kNoBalloon);
  balloon->SetStatsInterval(seconds);
  std::lock_guard lock(impl_->mutex);
  impl_->config.balloon->statistics_interval = seconds;
  return {};
}

}  // namespace kite
