// The `kite` executable: parses the command line (vmm/cli.h), runs the VM through the
// embedding API (kite/kite.h) and turns its outcome into the exit status of docs/CLI.md.
// SIGINT and SIGTERM are taken by a dedicated thread (sigwait) and stop the VM (status 130).
// Every thread runs under its seccomp filter (base/seccomp.h): the main thread's goes in
// before the VM is built, so no guest instruction runs while a kite thread is unfiltered.
// With --jail (vmm/jail.h) kite confines itself before that: the jailed child runs the VM.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/seccomp.h"
#include "kite/kite.h"
#include "vmm/cli.h"
#include "vmm/control/ctl.h"
#include "vmm/control/qmp_server.h"
#include "vmm/jail.h"

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

// The QMP control socket, when the configuration asks for one (--api-sock, "api_sock").
// A jailed kite also serves the uid that started it (root), which it no longer is.
int64_t g_starter_uid = -1;

kite::Result<std::unique_ptr<kite::qmp::QmpServer>> StartControlSocket(kite::Machine& machine) {
  if (machine.config().api_sock.empty()) return std::unique_ptr<kite::qmp::QmpServer>();
  kite::qmp::ServerOptions options;
  options.also_allowed_uid = g_starter_uid;
  return kite::qmp::QmpServer::Start(machine, machine.config().api_sock, options);
}

void StopControlSocket(std::unique_ptr<kite::qmp::QmpServer>& server) {
  if (server) server->Stop();
}

// Runs a machine built by `make` (a boot or a restore) until it ends: SIGINT and SIGTERM stop
// it, the control socket (when configured) serves it meanwhile.
template <typename MakeFn>
int RunMachine(MakeFn make, kite::seccomp::Mode seccomp_mode) {
  using kite::seccomp::ThreadKind;
  if (kite::seccomp::kSanitizerBuild) seccomp_mode = kite::seccomp::Mode::kOff;
  kite::seccomp::SetMode(seccomp_mode);
  if (auto confined = kite::seccomp::ConfineThread(ThreadKind::kMain); !confined) {
    return Fail(confined.error().message() + " (--seccomp=off runs without filters)");
  }
  // Every thread started from here on inherits the blocked set; only the signal thread takes
  // SIGINT and SIGTERM.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::atomic<bool> done{false};
  std::atomic<kite::Machine*> current{nullptr};
  std::atomic<bool> stop_early{false};
  std::thread signal_thread([&] {
    pthread_setname_np(pthread_self(), "kite-signal");
    kite::seccomp::Confine(ThreadKind::kSignal);
    int sig = 0;
    while (sigwait(&signals, &sig) == 0 && !done.load()) {
      if (kite::Machine* m = current.load()) {
        m->RequestStop();
      } else {
        stop_early.store(true);
      }
    }
  });

  int status;
  kite::Result<std::unique_ptr<kite::Machine>> machine = make();
  if (!machine) {
    status = Fail(machine.error().message());
  } else {
    kite::Machine* m = machine->get();
    current.store(m);
    if (stop_early.load()) m->RequestStop();
    auto server = StartControlSocket(*m);
    if (!server) {
      m->RequestStop();
      (void)m->Wait();
      status = Fail(server.error().message());
    } else {
      status = ReportOutcome(m->Wait());
      StopControlSocket(*server);
    }
    current.store(nullptr);
  }
  done.store(true);
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  return status;
}

int RunCommand(kite::cli::Run& run) {
  if (run.jail) {
    // As root: confine this process (a child of it) before anything of the VM exists.
    g_starter_uid = ::getuid();
    auto entered = kite::jail::Enter(*run.jail, run.config);
    if (!entered) return Fail(entered.error().message());
    if (!entered->jailed) return entered->exit_status;
  }
  return RunMachine(
      [&]() -> kite::Result<std::unique_ptr<kite::Machine>> {
        std::unique_ptr<kite::Machine> machine = TRY(kite::Machine::Create(run.config));
        TRY(machine->Start());
        return machine;
      },
      run.seccomp);
}

// kite restore --jail: the jail holds the files of the snapshot's config and the snapshot.
int RestoreCommand(kite::cli::Restore& restore) {
  if (restore.jail) {
    kite::RestoreOptions& options = restore.options;
    kite::VmConfig config;
    std::string config_file = options.path + "/config.json";
    auto text = kite::cli::ReadConfigFile(config_file);
    if (!text) return Fail(text.error().message());
    if (auto applied = kite::cli::ApplyConfigJson(*text, "", config); !applied) {
      return Fail(config_file + ": " + applied.error().message());
    }
    config.api_sock = options.api_sock;
    if (options.override_serial) {
      config.serial = options.serial;
      config.serial_path = options.serial_path;
    }
    g_starter_uid = ::getuid();
    options.path = std::filesystem::absolute(options.path).lexically_normal().string();
    auto entered = kite::jail::Enter(*restore.jail, config, options.path);
    if (!entered) return Fail(entered.error().message());
    if (!entered->jailed) return entered->exit_status;
    options.api_sock = config.api_sock;  // made absolute by the jail
    options.serial_path = config.serial_path;
  }
  return RunMachine([&] { return kite::Machine::Restore(restore.options); }, restore.seccomp);
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
  if (auto* restore = std::get_if<kite::cli::Restore>(&*command)) {
    return RestoreCommand(*restore);
  }
  if (auto* ctl = std::get_if<kite::cli::Ctl>(&*command)) return kite::ctl::RunCtl(ctl->args);
  return RunCommand(std::get<kite::cli::Run>(*command));
}
