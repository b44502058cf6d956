// Embedding kite: boot a guest from code through include/kite/kite.h and report how it ended.
//
//   kite_embed_example KERNEL [CMDLINE]
//
// The guest's serial output goes to stdout; after 60 seconds the example stops the VM from a
// second thread with Machine::RequestStop(), as a sandbox runtime would enforce a deadline.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "kite/kite.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s KERNEL [CMDLINE]\n", argv[0]);
    return 1;
  }
  kite::VmConfig config;
  config.kernel = argv[1];
  if (argc > 2) config.cmdline = argv[2];
  config.memory = 256ull << 20;
  config.cpus = 1;

  auto machine = kite::Machine::Create(config);
  if (!machine) {
    std::fprintf(stderr, "embed: %s\n", machine.error().message().c_str());
    return 1;
  }
  if (auto started = (*machine)->Start(); !started) {
    std::fprintf(stderr, "embed: %s\n", started.error().message().c_str());
    return 1;
  }

  // A watchdog: stop the guest if it runs longer than the deadline.
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock lock(mutex);
    if (!done_cv.wait_for(lock, std::chrono::seconds(60), [&] { return done; })) {
      (*machine)->RequestStop();
    }
  });

  kite::VmOutcome outcome = (*machine)->Wait();
  {
    std::lock_guard lock(mutex);
    done = true;
  }
  done_cv.notify_all();
  watchdog.join();

  std::fprintf(stderr, "embed: the VM ended: %s%s%s (exit status %d)\n",
               kite::VmEndName(outcome.end), outcome.detail.empty() ? "" : ": ",
               outcome.detail.c_str(), outcome.ExitStatus());
  return outcome.ExitStatus();
}
