// The `kite` executable: parses the command line (vmm/cli.h), runs the VM through the
// embedding API (kite/kite.h) and turns its outcome into the exit status of docs/CLI.md.
// SIGINT and SIGTERM are taken by a dedicated thread (sigwait) and stop the VM (status 130).
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "kite/kite.h"
#include "vmm/cli.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "kite: error: %s\n", message.c_str());
  return 1;
}

int ReportOutcome(const kite::VmOutcome& outcome) {
  switch (outcome.end) {
    case kite::VmEnd::kPowerOff:
      break;
    case kite::VmEnd::kError:
      return Fail(outcome.detail);
    case kite::VmEnd::kCrash:
      std::fprintf(stderr, "kite: the guest crashed: %s\n", outcome.detail.c_str());
      break;
    case kite::VmEnd::kReset:
    case kite::VmEnd::kStopped:
      std::fprintf(stderr, "kite: %s\n", outcome.detail.c_str());
      break;
  }
  return outcome.ExitStatus();
}

int RunCommand(const kite::VmConfig& config) {
  auto machine = kite::Machine::Create(config);
  if (!machine) return Fail(machine.error().message());

  // Every thread started from here on inherits the blocked set; only the signal thread takes
  // SIGINT and SIGTERM.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::atomic<bool> done{false};
  kite::Machine* m = machine->get();
  std::thread signal_thread([&] {
    int sig = 0;
    while (sigwait(&signals, &sig) == 0 && !done.load()) {
      m->RequestStop();
    }
  });

  int status;
  if (auto started = m->Start(); !started) {
    status = Fail(started.error().message());
  } else {
    status = ReportOutcome(m->Wait());
  }
  done.store(true);
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a closed output pipe becomes EPIPE (BAD_INPUTS.md F14)
  std::vector<std::string> args(argv + 1, argv + argc);
  auto command = kite::cli::ParseCommandLine(args);
  if (!command) return Fail(command.error().message());
  if (std::holds_alternative<kite::cli::Help>(*command)) {
    std::fputs(kite::cli::UsageText().c_str(), stdout);
    return 0;
  }
  if (std::holds_alternative<kite::cli::ShowVersion>(*command)) {
    std::printf("kite %s\n", kite::Version());
    return 0;
  }
  return RunCommand(std::get<kite::cli::Run>(*command).config);
}
