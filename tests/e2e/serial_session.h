// SerialSession: `kite run --serial stdio` driven the way a user at its terminal drives it:
// Expect(text) waits until the console has printed text (after the previous match), Send(text)
// types. The e2e test of a real distribution logs in at its getty with it.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.h"

namespace kite::testing {

class SerialSession {
 public:
  // Starts argv (argv[0] a path) with stdin and stdout+stderr on pipes, in a process group of
  // its own. A failure to start shows in Transcript() and makes every Expect fail.
  explicit SerialSession(const std::vector<std::string>& argv);
  ~SerialSession();  // kills the group if the program still runs
  SerialSession(const SerialSession&) = delete;
  SerialSession& operator=(const SerialSession&) = delete;

  // True once the output holds `text` past the end of the previous match; false when the
  // program ended or `timeout` passed first.
  bool Expect(std::string_view text, std::chrono::seconds timeout);
  void Send(std::string_view text);
  // Waits for the program to exit (true) or kills it after `timeout` (false); exit_status() is
  // its status, or -1 when it did not exit normally.
  bool WaitExit(std::chrono::seconds timeout);
  int exit_status() const { return exit_status_; }
  // Everything the program printed so far: for failure messages.
  const std::string& Transcript() const { return out_; }

 private:
  bool ReadFor(std::chrono::milliseconds wait);  // false at end of output

  int pid_ = -1;
  int exit_status_ = -1;
  UniqueFd in_, out_fd_;
  std::string out_;
  size_t mark_ = 0;
};

}  // namespace kite::testing
