// EventLoop: see event_loop.h.
#include "vmm/event_loop.h"

#include <pthread.h>
#include <signal.h>

#include <asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

namespace kite {

EventLoop::EventLoop() : work_(asio::make_work_guard(io_)) {}

EventLoop::~EventLoop() {
  Stop();
}

void EventLoop::Start(seccomp::ThreadNeeds needs) {
  if (thread_.joinable()) return;
  // Signals (SIGINT, SIGTERM, the vCPU kick) are for other threads: block them here.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  thread_ = std::thread([this, needs] {
    pthread_setname_np(pthread_self(), "kite-loop");
    seccomp::Confine(seccomp::ThreadKind::kEventLoop, needs);
    // Handlers report their errors themselves; none throws.
    io_.run();
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

bool EventLoop::RunAndWait(std::function<void()> fn) {
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto done = std::make_shared<Done>();
  asio::post(io_, [fn = std::move(fn), done] {
    fn();
    std::lock_guard lock(done->mu);
    done->done = true;
    done->cv.notify_all();
  });
  std::unique_lock lock(done->mu);
  // Polled: a Stop() meanwhile drops the handler, and nothing would wake us.
  while (!done->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return done->done; })) {
    if (io_.stopped()) return false;
  }
  return true;
}

void EventLoop::Stop() {
  work_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace kite
