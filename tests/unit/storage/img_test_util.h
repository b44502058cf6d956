// Helpers for kite-img tests: run qemu-img (the oracle) and kite-img subcommands in-process,
// capturing output and exit codes.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "storage/img/cli.h"
#include "storage/img/commands.h"

namespace kite::img::testing {

struct Ran {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs a shell command; captures stdout (stderr is discarded unless redirected by `cmd`).
inline Ran Shell(const std::string& cmd) {
  Ran r;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs a shell command that must succeed (qemu-img, qemu-io making the test's images).
inline void Qemu(const std::string& cmd) {
  ASSERT_EQ(Shell(cmd).code, 0) << cmd;
}

// Runs `kite-img <args...>` in-process.
inline Ran Kite(const std::vector<std::string>& args) {
  Ran r;
  std::ostringstream out, err;
  Console console{out, err, false};
  auto command = ParseCommandLine(args);
  if (!command) {
    r.code = 1;
    r.err = command.error().message();
    return r;
  }
  r.code = RunCommand(*command, console);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// Quotes a path for the shell.
inline std::string Q(const std::string& s) {
  return "'" + s + "'";
}

}  // namespace kite::img::testing
