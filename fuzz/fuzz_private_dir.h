// A private temporary directory for fuzzers that need files on disk (an image and the backing
// files its name may reach): on tmpfs when there is one (or $TMPDIR), removed when the fuzzer
// process is gone, however it ends — libFuzzer leaves with _Exit (no atexit handlers) and
// crashes abort, so a child in its own session waits for the end of a pipe only this process
// holds, then runs rm -rf (nothing instrumented runs in it).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace kite::fuzz {

inline void RemoveWhenGone(const std::string& dir) {
  int fds[2];
  if (pipe(fds) != 0) return;
  pid_t pid = fork();
  if (pid == 0) {
    setsid();  // a signal to the fuzzer's process group does not reach the cleaner
    close(fds[1]);
    char c;
    while (read(fds[0], &c, 1) != 0) {
    }
    execlp("rm", "rm", "-rf", dir.c_str(), static_cast<char*>(nullptr));
    _exit(1);
  }
  close(fds[0]);  // fds[1] stays open until this process ends
}

// A new directory named `prefix`-XXXXXX; empty when it cannot be made.
inline std::string MakePrivateDir(const std::string& prefix) {
  std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
  if (const char* t = getenv("TMPDIR")) base = t;
  std::string tmpl = base + "/" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return "";
  RemoveWhenGone(tmpl);
  return tmpl;
}

}  // namespace kite::fuzz
