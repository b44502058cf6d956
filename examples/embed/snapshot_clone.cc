// Embedding kite as a sandbox runtime does: boot once, snapshot, then start clones from the
// snapshot in milliseconds, all through include/kite/kite.h (no control socket involved).
//
//   kite_snapshot_example KERNEL SNAPSHOT_DIR [CLONES]
//
// Boots KERNEL (for instance guest-firmware's counter.elf), lets it run for a second, pauses
// it, saves a snapshot to SNAPSHOT_DIR and ends it; then restores CLONES machines (default 2)
// from the snapshot one after another, lets each run for a second and ends it. Each clone's
// serial output goes to SNAPSHOT_DIR.clone-N.txt; events are printed as they arrive.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "kite/kite.h"

namespace {

void PrintEvent(const kite::Event& event) {
  std::fprintf(stderr, "event: %s %s\n", event.name.c_str(),
               event.data.is_null() ? "" : event.data.dump().c_str());
}

int Fail(const char* what, const kite::Error& error) {
  std::fprintf(stderr, "snapshot example: %s: %s\n", what, error.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s KERNEL SNAPSHOT_DIR [CLONES]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[2];
  const int clones = argc > 3 ? std::atoi(argv[3]) : 2;

  kite::VmConfig config;
  config.kernel = argv[1];
  config.memory = 128ull << 20;
  config.serial = kite::SerialMode::kFile;
  config.serial_path = dir + ".boot.txt";
  auto machine = kite::Machine::Create(config);
  if (!machine) return Fail("create", machine.error());
  (*machine)->Subscribe(PrintEvent);
  if (auto r = (*machine)->Start(); !r) return Fail("start", r.error());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  if (auto r = (*machine)->Pause(); !r) return Fail("pause", r.error());
  auto t0 = std::chrono::steady_clock::now();
  if (auto r = (*machine)->SaveSnapshot({dir}); !r) return Fail("snapshot", r.error());
  auto saved_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0);
  std::fprintf(stderr, "snapshot example: saved %s in %.1f ms\n", dir.c_str(), saved_ms.count());
  (*machine)->Quit();
  (void)(*machine)->Wait();

  for (int i = 0; i < clones; ++i) {
    kite::RestoreOptions options;
    options.path = dir;
    options.override_serial = true;
    options.serial = kite::SerialMode::kFile;
    options.serial_path = dir + ".clone-" + std::to_string(i) + ".txt";
    auto start = std::chrono::steady_clock::now();
    auto clone = kite::Machine::Restore(options);
    if (!clone) return Fail("restore", clone.error());
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    std::fprintf(stderr, "snapshot example: clone %d running after %.2f ms (%s)\n", i, ms.count(),
                 kite::RunStateName((*clone)->state()));
    std::this_thread::sleep_for(std::chrono::seconds(1));
    (*clone)->Quit();
    (void)(*clone)->Wait();
  }
  return 0;
}
