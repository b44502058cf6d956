// QMP dispatch for one connection: capabilities negotiation, command lookup, argument and
// state checks, and execution of fast commands in place. A slow command comes back as a job
// for the command thread; the job re-checks the run state when it runs (another client's
// command may have changed it) and returns the reply line.
//
// Threads: one Dispatcher per connection, used by one thread at a time (the socket thread).
// A job may run on any thread; it holds the Machine, not the Dispatcher.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "kite/kite.h"
#include "vmm/control/qmp_framer.h"

namespace kite::qmp {

struct Outcome {
  std::string reply;                  // the reply line ("...\r\n"), when finished here
  std::function<std::string()> slow;  // or: run this, off the socket thread; it gives the reply
};

class Dispatcher {
 public:
  explicit Dispatcher(Machine* machine) : machine_(machine) {}

  // A frame from the Framer: a framing error becomes a GenericError reply.
  Outcome Handle(const Frame& frame);
  Outcome Handle(std::string_view text);
  // qmp_capabilities succeeded: commands run and events are sent.
  bool negotiated() const { return negotiated_; }

 private:
  Machine* machine_;
  bool negotiated_ = false;
};

// Runs a framed stream through Framer and Dispatcher with slow commands inline, returning
// every line the client would receive. For tests and the fuzzer.
std::string RunInline(Machine* machine, std::string_view input, FramerLimits limits = {});

}  // namespace kite::qmp
