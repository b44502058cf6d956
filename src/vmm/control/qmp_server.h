// QmpServer: kite's QMP control socket (--api-sock; docs/CONTROL.md). A Unix stream socket,
// mode 0600, served by its own thread ("kite-api", an asio io_context) over kite::Machine:
//
//   auto server = kite::qmp::QmpServer::Start(machine, "vm.sock");
//   ... machine.Start(); machine.Wait(); ...
//   (*server)->Stop();  // flushes what is queued (quit's reply), removes the socket file
//
// The socket file: a stale one (nobody answers: ECONNREFUSED) is replaced; a live one (another
// kite serves it) is refused; anything that is not a socket is refused and never deleted.
// Only clients with kite's own effective uid are served (SO_PEERCRED; BAD_INPUTS.md C14):
// not even root gets in when kite runs as another user, as with QEMU's and Firecracker's
// socket modes. Beyond max_clients, a connection gets one GenericError line and is closed (C6).
//
// Threads: Start/Stop from the owning thread. Fast commands (queries) run on "kite-api"; slow
// ones (stop, cont, system_*, quit, x-vm-snapshot-save) run one at a time on "kite-api-cmd", so
// a snapshot never holds up another client's query-status. Machine events are posted to
// "kite-api" and sent to every negotiated client; the VM never waits for a client.
#pragma once

#include <asio/local/stream_protocol.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "kite/kite.h"
#include "vmm/control/qmp_framer.h"

namespace kite::qmp {

struct ServerOptions {
  size_t max_clients = 16;
  // Closes a client that has not negotiated, or has left a message incomplete, for this long.
  std::chrono::milliseconds idle_timeout{10000};
  size_t max_output = 4 << 20;  // unsent bytes to one client before it is dropped
  FramerLimits limits;          // message size and nesting depth
  // Served besides kite's own effective uid: the uid that started a jailed kite (vmm/jail.h),
  // which then runs as another user. -1: nobody else.
  int64_t also_allowed_uid = -1;
  // For tests: runs on the command thread before each slow command.
  std::function<void()> before_slow_command;
};

class QmpServer {
 public:
  static Result<std::unique_ptr<QmpServer>> Start(Machine& machine, const std::string& path,
                                                  ServerOptions options = {});
  ~QmpServer();  // Stop()
  QmpServer(const QmpServer&) = delete;
  QmpServer& operator=(const QmpServer&) = delete;

  // Finishes the slow command in progress (later ones are answered with an error), sends what
  // is queued (at most ~1 s), closes every connection, removes the socket file. Idempotent.
  void Stop();
  // Sends an event to every negotiated client (what the Machine subscription calls). Any thread.
  void InjectEvent(const Event& event);
  // Open client connections (for tests and stats). Any thread.
  size_t ClientCount() const { return client_count_.load(); }
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  QmpServer(Machine& machine, std::string path, ServerOptions options);
  Result<void> Listen();
  void Accept();                                                    // io thread
  void AddConnection(asio::local::stream_protocol::socket socket);  // io thread

  Machine& machine_;
  std::string path_;
  ServerOptions options_;
  std::atomic<size_t> client_count_{0};
  std::unique_ptr<Impl> impl_;
};

// The socket file policy, before bind (exposed for tests): nothing there is fine; a socket
// nobody answers on is removed; a live socket or a non-socket is an error.
Result<void> PrepareSocketPath(const std::string& path);

}  // namespace kite::qmp
