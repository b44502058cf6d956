// QmpServer: see qmp_server.h.
#include "vmm/control/qmp_server.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "base/log.h"
#include "base/seccomp.h"
#include "base/unique_fd.h"
#include "vmm/control/qmp_connection.h"
#include "vmm/control/qmp_protocol.h"

namespace kite::qmp {
namespace {

using Job = std::function<void(bool cancelled)>;

// The command thread: runs slow commands one at a time, in submission order.
class CommandWorker {
 public:
  void Start() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "kite-api-cmd");
      seccomp::Confine(seccomp::ThreadKind::kApiCommand);
      Run();
    });
  }
  void Submit(Job job) {
    {
      std::lock_guard lock(mutex_);
      if (!stopping_) {
        jobs_.push_back(std::move(job));
        cv_.notify_one();
        return;
      }
    }
    job(true);  // the server is stopping: answer at once
  }
  // Lets the running job finish, cancels the queued ones, joins.
  void Stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      bool cancelled = stopping_;
      lock.unlock();
      job(cancelled);
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

Result<sockaddr_un> SocketAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Err("--api-sock '" + path + "': a socket path must have 1 to " +
               std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  path.copy(addr.sun_path, path.size());
  return addr;
}

// The effective uid of the peer of a connected Unix socket, or -1.
int64_t PeerUid(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
  return cred.uid;
}

}  // namespace

Result<void> PrepareSocketPath(const std::string& path) {
  sockaddr_un addr = TRY(SocketAddress(path));
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return SysErr("--api-sock " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Err("--api-sock " + path + " exists and is not a socket; not replacing it");
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return SysErr("socket");
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    return Err("--api-sock " + path + " is in use: another process serves it");
  }
  if (errno != ECONNREFUSED) return SysErr("--api-sock " + path + ": probing the old socket");
  // Nobody listens: a stale socket from a kite that did not clean up.
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return SysErr("--api-sock " + path + ": removing the stale socket");
  }
  return {};
}

struct QmpServer::Impl {
  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{
      asio::make_work_guard(io)};
  asio::local::stream_protocol::acceptor acceptor{io};
  asio::steady_timer retry_timer{io};
  asio::steady_timer stop_timer{io};
  std::thread thread;
  CommandWorker worker;
  std::map<Connection*, std::shared_ptr<Connection>> connections;  // io thread only
  bool stopping = false;                                           // io thread only
  uint64_t subscription = 0;
  bool subscribed = false;
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;
  bool stopped = false;
};

QmpServer::QmpServer(Machine& machine, std::string path, ServerOptions options)
    : machine_(machine),
      path_(std::move(path)),
      options_(std::move(options)),
      impl_(std::make_unique<Impl>()) {}

QmpServer::~QmpServer() {
  Stop();
}

Result<std::unique_ptr<QmpServer>> QmpServer::Start(Machine& machine, const std::string& path,
                                                    ServerOptions options) {
  std::unique_ptr<QmpServer> server(new QmpServer(machine, path, std::move(options)));
  TRY(server->Listen());
  Impl& impl = *server->impl_;
  QmpServer* self = server.get();
  impl.subscription = machine.Subscribe([self](const Event& event) { self->InjectEvent(event); });
  impl.subscribed = true;
  impl.worker.Start();
  sigset_t all, old;  // signals are for other threads (see main.cc)
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  impl.thread = std::thread([self] {
    pthread_setname_np(pthread_self(), "kite-api");
    seccomp::Confine(seccomp::ThreadKind::kApiServer);
    self->impl_->io.run();
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  asio::post(impl.io, [self] { self->Accept(); });
  return server;
}

Result<void> QmpServer::Listen() {
  TRY(PrepareSocketPath(path_));
  sockaddr_un addr = TRY(SocketAddress(path_));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return SysErr("socket");
  // The file is created 0600 (umask) and made so again (chmod), so that no other user can
  // connect even for an instant.
  mode_t old_mask = ::umask(0177);
  int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0) return SysErr("--api-sock " + path_ + ": bind", bind_errno);
  struct stat st {};
  if (::chmod(path_.c_str(), 0600) != 0 || ::lstat(path_.c_str(), &st) != 0) {
    Error error = SysErr("--api-sock " + path_);
    ::unlink(path_.c_str());
    return error;
  }
  impl_->socket_dev = st.st_dev;
  impl_->socket_ino = st.st_ino;
  if (::listen(fd.get(), 64) != 0) {
    Error error = SysErr("--api-sock " + path_ + ": listen");
    ::unlink(path_.c_str());
    return error;
  }
  asio::error_code ec;
  impl_->acceptor.assign(asio::local::stream_protocol(), fd.get(), ec);
  if (ec) {
    ::unlink(path_.c_str());
    return Err("--api-sock " + path_ + ": " + ec.message());
  }
  fd.release();
  return {};
}

void QmpServer::Accept() {
  Impl& impl = *impl_;
  impl.acceptor.async_accept(
      [this](const asio::error_code& ec, asio::local::stream_protocol::socket socket) {
        Impl& impl = *impl_;
        if (impl.stopping || ec == asio::error::operation_aborted) return;
        if (ec) {
          // Out of file descriptors (C6) or a transient failure: try again shortly, no busy loop.
          KITE_LOG_RATELIMITED(Warn, "qmp: accept on %s failed: %s", path_.c_str(),
                               ec.message().c_str());
          impl.retry_timer.expires_after(std::chrono::milliseconds(100));
          impl.retry_timer.async_wait([this](const asio::error_code& e) {
            if (!e) Accept();
          });
          return;
        }
        AddConnection(std::move(socket));
        Accept();
      });
}

void QmpServer::AddConnection(asio::local::stream_protocol::socket socket) {
  Impl& impl = *impl_;
  int fd = socket.native_handle();
  int64_t uid = PeerUid(fd);
  if (uid != static_cast<int64_t>(::geteuid()) && (uid < 0 || uid != options_.also_allowed_uid)) {
    KITE_LOG_RATELIMITED(Warn, "qmp: refused a connection from uid %lld (kite runs as uid %u)",
                         static_cast<long long>(uid), ::geteuid());
    return;  // the socket closes here
  }
  if (impl.connections.size() >= options_.max_clients) {
    std::string line = ErrorLine(
        Err("Too many QMP connections (limit " + std::to_string(options_.max_clients) + ")"),
        std::nullopt);
    (void)!::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return;
  }
  Connection::Context context;
  context.io = &impl.io;
  context.machine = &machine_;
  context.options = &options_;
  context.submit = [this](Connection::Job job) { impl_->worker.Submit(std::move(job)); };
  context.on_close = [this](Connection* connection) {
    Impl& impl = *impl_;
    auto it = impl.connections.find(connection);
    if (it == impl.connections.end()) return;
    // Keep it alive until the handler that closed it has returned.
    asio::post(impl.io, [keep = std::move(it->second)] {});
    impl.connections.erase(it);
    client_count_.store(impl.connections.size());
    if (impl.stopping && impl.connections.empty()) impl.io.stop();
  };
  auto connection = std::make_shared<Connection>(std::move(context), std::move(socket));
  impl.connections[connection.get()] = connection;
  client_count_.store(impl.connections.size());
  connection->Start();
}

void QmpServer::InjectEvent(const Event& event) {
  asio::post(impl_->io, [this, line = EventLine(event)] {
    std::vector<std::shared_ptr<Connection>> targets;
    for (auto& [key, connection] : impl_->connections) targets.push_back(connection);
    for (auto& connection : targets) connection->SendEvent(line);
  });
}

void QmpServer::Stop() {
  Impl& impl = *impl_;
  if (impl.stopped) return;
  impl.stopped = true;
  if (impl.subscribed) machine_.Unsubscribe(impl.subscription);
  // 1. No new connections or requests; what was received is still answered.
  asio::post(impl.io, [this] {
    Impl& impl = *impl_;
    asio::error_code ec;
    impl.acceptor.close(ec);
    impl.retry_timer.cancel();
    std::vector<std::shared_ptr<Connection>> all;
    for (auto& [key, connection] : impl.connections) all.push_back(connection);
    for (auto& connection : all) connection->Finish();
  });
  // 2. The running slow command finishes (its reply is posted); queued ones are cancelled.
  impl.worker.Stop();
  // 3. Flush for at most a second, then stop.
  asio::post(impl.io, [this] {
    Impl& impl = *impl_;
    impl.stopping = true;
    impl.work.reset();
    if (impl.connections.empty()) {
      impl.io.stop();
      return;
    }
    impl.stop_timer.expires_after(std::chrono::seconds(1));
    impl.stop_timer.async_wait([this](const asio::error_code&) { impl_->io.stop(); });
  });
  if (impl.thread.joinable()) impl.thread.join();
  std::vector<std::shared_ptr<Connection>> left;
  for (auto& [key, connection] : impl.connections) left.push_back(connection);
  impl.connections.clear();
  for (auto& connection : left) connection->Close();
  client_count_.store(0);
  // Remove the socket file, if it is still the one this server created.
  struct stat st {};
  if (impl.socket_ino != 0 && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == impl.socket_dev &&
      st.st_ino == impl.socket_ino) {
    ::unlink(path_.c_str());
  }
}

}  // namespace kite::qmp
