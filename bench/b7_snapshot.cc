// B7 (shared/BENCHMARKS.md): the timed steps of snapshot save and restore, for kite and QEMU.
//
//   b7_snapshot save-kite SOCKET DIR     `stop` (not timed), then `x-vm-snapshot-save
//                                        {"path": DIR}` timed from just before the request is
//                                        written to its reply (kite replies once the files are
//                                        fsynced), then `quit`.
//   b7_snapshot save-qemu SOCKET FILE    `stop`, migration events on (not timed), then
//                                        `migrate {"uri": "exec:cat > FILE"}` timed from just
//                                        before the request is written to the MIGRATION event
//                                        with status "completed" (QEMU has handed the last
//                                        byte to cat; nothing is fsynced), then `quit`.
//     Both print "us=<microseconds>".
//   b7_snapshot first-output [--bytes N] [--expect TEXT] [--timeout S] [--log FILE]
//                            -- COMMAND [ARGS...]
//                                        starts COMMAND with its stdout on a pipe (stdin
//                                        /dev/null, stderr to FILE or /dev/null) and times
//                                        from just before fork() to the first byte on the
//                                        pipe, then to N more bytes (default 256; 0: none);
//                                        kills it.
//     Prints "first_us=.. per_byte_us=..": per_byte_us is the mean time between bytes after
//     the first, i.e. one guest serial exit and the VMM's write when the guest prints in a
//     tight loop; the first byte can lag the vCPU's first instruction by about that much.
//     The bytes must contain TEXT (default "busy: ", guest-firmware "busy"), else it fails.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "qmp_client.h"

namespace {

using Clock = std::chrono::steady_clock;

double MicrosSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

int SaveKite(const std::string& socket, const std::string& dir) {
  bench::QmpClient qmp(socket, 10000);
  qmp.Execute(R"({"execute":"stop"})");
  nlohmann::json save = {{"execute", "x-vm-snapshot-save"}, {"arguments", {{"path", dir}}}};
  auto t0 = Clock::now();
  qmp.Execute(save.dump());
  double us = MicrosSince(t0);
  qmp.Execute(R"({"execute":"quit"})");
  std::printf("us=%.0f\n", us);
  return 0;
}

int SaveQemu(const std::string& socket, const std::string& file) {
  bench::QmpClient qmp(socket, 10000);
  qmp.Execute(R"({"execute":"stop"})");
  qmp.Execute(R"({"execute":"migrate-set-capabilities","arguments":{"capabilities":[)"
              R"({"capability":"events","state":true}]}})");
  nlohmann::json migrate = {{"execute", "migrate"}, {"arguments", {{"uri", "exec:cat > " + file}}}};
  auto t0 = Clock::now();
  qmp.Execute(migrate.dump());
  qmp.WaitEvent("MIGRATION", [](const nlohmann::json& e) {
    std::string status = e["data"]["status"];
    if (status == "failed" || status == "cancelled") bench::Die("migration " + status);
    return status == "completed";
  });
  double us = MicrosSince(t0);
  qmp.Execute(R"({"execute":"quit"})");
  std::printf("us=%.0f\n", us);
  return 0;
}

// Reads into `out` until it holds `want` bytes or `deadline` passes; false on EOF or timeout.
bool ReadUntil(int fd, std::string& out, size_t want, Clock::time_point deadline) {
  char chunk[4096];
  while (out.size() < want) {
    int left_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left_ms <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left_ms) <= 0) continue;
    ssize_t n = read(fd, chunk, std::min(sizeof(chunk), want - out.size()));
    if (n <= 0) return false;
    out.append(chunk, static_cast<size_t>(n));
  }
  return true;
}

struct FirstOutputOptions {
  size_t bytes = 256;
  std::string expect = "busy: ";
  int timeout_s = 60;
  std::string log = "/dev/null";
};

int FirstOutput(const FirstOutputOptions& o, char** command) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) bench::Die("pipe failed");
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid < 0) bench::Die("fork failed");
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    int err = open(o.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || err < 0) _exit(127);
    dup2(in, 0);
    dup2(pipe_fds[1], 1);
    dup2(err, 2);
    execvp(command[0], command);
    _exit(127);
  }
  close(pipe_fds[1]);
  auto deadline = t0 + std::chrono::seconds(o.timeout_s);
  std::string out;
  bool ok = ReadUntil(pipe_fds[0], out, 1, deadline);
  double first_us = MicrosSince(t0);
  auto t1 = Clock::now();
  ok = ok && (o.bytes == 0 || ReadUntil(pipe_fds[0], out, o.bytes + 1, deadline));
  ok = ok && (o.bytes > 0 || ReadUntil(pipe_fds[0], out, o.expect.size(), deadline));
  double rest_us = MicrosSince(t1);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  close(pipe_fds[0]);
  if (!ok || out.find(o.expect) == std::string::npos) {
    bench::Die("first-output: " + std::string(command[0]) + " gave " + std::to_string(out.size()) +
               " bytes: '" + out.substr(0, 200) + "' (log: " + o.log + ")");
  }
  double per_byte = o.bytes > 0 ? rest_us / static_cast<double>(o.bytes) : 0;
  std::printf("first_us=%.0f per_byte_us=%.1f\n", first_us, per_byte);
  return 0;
}

[[noreturn]] void Usage() {
  bench::Die(
      "usage: b7_snapshot save-kite SOCKET DIR | save-qemu SOCKET FILE |\n"
      "       first-output [--bytes N] [--expect TEXT] [--timeout S] [--log FILE] -- COMMAND...");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) Usage();
  std::string mode = argv[1];
  if (mode == "save-kite" && argc == 4) return SaveKite(argv[2], argv[3]);
  if (mode == "save-qemu" && argc == 4) return SaveQemu(argv[2], argv[3]);
  if (mode != "first-output") Usage();
  FirstOutputOptions o;
  int i = 2;
  for (; i < argc && std::string(argv[i]) != "--"; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) Usage();
    if (a == "--bytes") {
      o.bytes = std::strtoul(argv[++i], nullptr, 10);
    } else if (a == "--expect") {
      o.expect = argv[++i];
    } else if (a == "--timeout") {
      o.timeout_s = std::atoi(argv[++i]);
    } else if (a == "--log") {
      o.log = argv[++i];
    } else {
      Usage();
    }
  }
  if (i + 1 >= argc || o.expect.empty()) Usage();
  return FirstOutput(o, argv + i + 1);
}
