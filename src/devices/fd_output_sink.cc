// FdOutputSink: the bounded buffer and its writer thread; see fd_output_sink.h.
#include "devices/fd_output_sink.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "base/seccomp.h"

namespace kite {

// Everything the writer thread touches; kept alive by the thread itself, so the sink can be
// destroyed while a write() is still blocked. The ring is allocated uninitialised (its pages
// become resident only as output fills them) and the writer writes straight from it: the bytes
// it writes stay out of `size`'s free space until written, so producers never overwrite them,
// and the writer thread allocates nothing (no malloc arena of its own).
struct FdOutputSink::Shared {
  int fd = -1;
  UniqueFd owned;
  std::mutex mutex;
  std::condition_variable wake;     // data arrived, or stop requested
  std::condition_variable drained;  // the buffer became empty, or the writer finished
  std::unique_ptr<uint8_t[]> ring;
  size_t capacity = 0;
  size_t head = 0;  // next byte to write
  size_t size = 0;  // bytes buffered
  bool stop = false;
  bool failed = false;
  bool finished = false;
  FdOutputStats stats;
};

namespace {

// Writes all of `chunk`, waiting for the fd with poll(); false when the fd failed.
bool WriteAll(int fd, const uint8_t* data, size_t length) {
  while (length > 0) {
    ssize_t n = ::write(fd, data, length);
    if (n > 0) {
      data += n;
      length -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd, POLLOUT, 0};
      ::poll(&pfd, 1, 100);
      continue;
    }
    KITE_LOG_RATELIMITED(Warn, "serial: output stopped: write failed: %s",
                         n < 0 ? std::strerror(errno) : "wrote nothing");
    return false;
  }
  return true;
}

}  // namespace

void FdOutputSink::WriterLoop(std::shared_ptr<Shared> s) {
  // EPIPE instead of a process-killing SIGPIPE for writes from this thread.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  pthread_setname_np(pthread_self(), "kite-output");
  seccomp::Confine(seccomp::ThreadKind::kConsoleOutput);

  std::unique_lock lock(s->mutex);
  while (true) {
    s->wake.wait(lock, [&] { return s->size > 0 || s->stop; });
    if (s->size == 0) break;  // stop requested and everything written
    size_t n = std::min({s->size, s->capacity - s->head, size_t{4096}});
    const uint8_t* chunk = s->ring.get() + s->head;
    lock.unlock();
    bool ok = WriteAll(s->fd, chunk, n);
    lock.lock();
    s->head = (s->head + n) % s->capacity;
    s->size -= n;
    if (ok) {
      s->stats.written += n;
    } else {
      s->failed = true;
      s->stats.refused += s->size + n;
      s->size = 0;
      break;
    }
    if (s->size == 0) s->drained.notify_all();
  }
  s->finished = true;
  s->drained.notify_all();
}

FdOutputSink::FdOutputSink(int fd, size_t capacity, std::chrono::milliseconds drain_timeout)
    : shared_(std::make_shared<Shared>()), drain_timeout_(drain_timeout) {
  Start(fd, UniqueFd(), capacity);
}

FdOutputSink::FdOutputSink(UniqueFd fd, size_t capacity, std::chrono::milliseconds drain_timeout)
    : shared_(std::make_shared<Shared>()), drain_timeout_(drain_timeout) {
  int raw_fd = fd.get();
  Start(raw_fd, std::move(fd), capacity);
}

void FdOutputSink::Start(int fd, UniqueFd owned, size_t capacity) {
  shared_->fd = fd;
  shared_->owned = std::move(owned);
  shared_->capacity = std::max<size_t>(capacity, 1);
  shared_->ring.reset(new uint8_t[shared_->capacity]);  // uninitialised: see Shared
  std::thread(WriterLoop, shared_).detach();
}

FdOutputSink::~FdOutputSink() {
  std::unique_lock lock(shared_->mutex);
  shared_->stop = true;
  shared_->wake.notify_all();
  if (!shared_->drained.wait_for(lock, drain_timeout_, [&] { return shared_->finished; })) {
    KITE_LOG(Warn, "serial: output did not drain within %lld ms; %zu bytes abandoned",
             static_cast<long long>(drain_timeout_.count()), shared_->size);
  }
}

size_t FdOutputSink::Write(std::span<const uint8_t> bytes) {
  std::lock_guard lock(shared_->mutex);
  Shared& s = *shared_;
  if (s.failed || s.stop) {
    s.stats.refused += bytes.size();
    return 0;
  }
  bool was_empty = s.size == 0;  // the writer only sleeps on an empty buffer
  size_t n = std::min(bytes.size(), s.capacity - s.size);
  for (size_t i = 0; i < n; ++i) s.ring[(s.head + s.size + i) % s.capacity] = bytes[i];
  s.size += n;
  s.stats.refused += bytes.size() - n;
  if (n > 0 && was_empty) s.wake.notify_one();
  return n;
}

bool FdOutputSink::Flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(shared_->mutex);
  return shared_->drained.wait_for(lock, timeout,
                                   [&] { return shared_->size == 0 || shared_->finished; });
}

FdOutputStats FdOutputSink::stats() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->stats;
}

}  // namespace kite
