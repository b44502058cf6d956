// libFuzzer target for the QMP control socket's input path: bytes → Framer → request parsing
// → Dispatcher → command table, with a Machine that was created but never started (in
// prelaunch) and slow commands run inline. Whatever a client sends must produce replies, never
// a crash, an unbounded allocation or deep recursion (BAD_INPUTS.md C1–C4, C7).
//
// The first input byte picks the read size (1..64 bytes), so framing across reads is exercised
// too. Checks beyond the sanitizers: every reply is one ASCII line ending in \r\n.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kite/kite.h"
#include "vmm/control/qmp_dispatcher.h"
#include "vmm/control/qmp_framer.h"

namespace {

kite::Machine* TheMachine() {
  static std::unique_ptr<kite::Machine> machine = [] {
    kite::VmConfig config;
    config.kernel = "vmlinux";
    config.serial = kite::SerialMode::kNone;
    config.name = "fuzz";
    auto created = kite::Machine::Create(config);
    if (!created) __builtin_trap();
    return std::move(*created);
  }();
  return machine.get();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t chunk = 1 + data[0] % 64;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  kite::qmp::Framer framer(kite::qmp::FramerLimits{.max_message = 4096, .max_depth = 16});
  kite::qmp::Dispatcher dispatcher(TheMachine());
  std::vector<kite::qmp::Frame> frames;
  for (size_t at = 0; at < input.size() && !framer.failed(); at += chunk) {
    frames.clear();
    framer.Feed(input.substr(at, chunk), &frames);
    for (const kite::qmp::Frame& frame : frames) {
      kite::qmp::Outcome outcome = dispatcher.Handle(frame);
      std::string reply = outcome.slow ? outcome.slow() : outcome.reply;
      // Every reply is one ASCII line ending in \r\n.
      if (reply.size() < 2 || reply.substr(reply.size() - 2) != "\r\n") __builtin_trap();
      for (unsigned char c : reply) {
        if (c >= 0x80) __builtin_trap();
      }
    }
  }
  return 0;
}
