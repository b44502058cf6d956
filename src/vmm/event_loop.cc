// EventLoop: see event_loop.h.
#include "vmm/event_loop.h"

#include <pthread.h>
#include <signal.h>

namespace kite {

EventLoop::EventLoop() : work_(asio::make_work_guard(io_)) {}

EventLoop::~EventLoop() {
  Stop();
}

void EventLoop::Start() {
  if (thread_.joinable()) return;
  // Signals (SIGINT, SIGTERM, the vCPU kick) are for other threads: block them here.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kite-loop");
    // Handlers report their errors themselves; none throws.
    io_.run();
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void EventLoop::Stop() {
  work_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace kite
