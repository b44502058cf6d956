// EventLoop: the VM's one event loop thread (an asio io_context). It runs what must not run
// on a vCPU thread: virtqueue processing after a kick (ioeventfd), disk completions, network
// backends (tap readiness, slirp timers). Nothing on it blocks on I/O.
//
// Threads: Start/Stop from the thread that owns the Vm; context() may be used from any thread
// (asio::post is thread-safe). Objects bound to the context must be destroyed before the loop.
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <functional>
#include <optional>
#include <thread>

#include "base/result.h"
#include "base/seccomp.h"

namespace kite {

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();  // Stop()
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  asio::io_context& context() { return io_; }
  // Starts the thread (named "kite-loop"), confined as an event loop with `needs`. Idempotent.
  void Start(seccomp::ThreadNeeds needs = {});
  // Stops the loop and joins the thread; handlers not yet run are dropped. Idempotent.
  void Stop();
  // Runs `fn` on the loop thread and waits for it (from any other thread). false when the loop
  // stopped first: `fn` then never runs and is destroyed with the loop.
  bool RunAndWait(std::function<void()> fn);

 private:
  asio::io_context io_{1};  // one thread: handlers never run concurrently
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
};

}  // namespace kite
