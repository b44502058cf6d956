// One QMP client connection of QmpServer: greeting, reads through the Framer, dispatch (fast
// commands here, slow ones handed to the command thread), replies and events queued in order,
// the idle deadline, and the output cap. docs/CONTROL.md "Limits".
//
//   - Requests are answered in order: while a slow command runs for this client nothing more is
//     read from it, so its next command waits for the previous reply.
//   - A client that has not negotiated within idle_timeout, or has left a message incomplete
//     for idle_timeout, is closed (BAD_INPUTS.md C5). Negotiated clients may idle for events.
//   - Output that the client does not read is capped (max_output): beyond it the client is
//     dropped; nothing ever waits for a client.
//   - EOF from the client: what it sent is still answered, then the connection closes.
//   - Closed mid-command (C8): the command completes on the command thread; its reply is
//     dropped when it arrives. The job holds the Connection alive until then.
//
// Threads: everything here runs on the server's io_context thread, except the slow job, which
// posts its reply back to it.
#pragma once

#include <array>
#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "vmm/control/qmp_dispatcher.h"
#include "vmm/control/qmp_framer.h"
#include "vmm/control/qmp_server.h"

namespace kite::qmp {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Runs `job` on the command thread; `cancelled` is true when the server stops first.
  using Job = std::function<void(bool cancelled)>;
  using SubmitFn = std::function<void(Job job)>;
  struct Context {
    asio::io_context* io;
    Machine* machine;
    const ServerOptions* options;
    SubmitFn submit;
    std::function<void(Connection*)> on_close;  // once, when the connection closes
  };

  Connection(Context context, asio::local::stream_protocol::socket socket);

  void Start();                             // greeting, first read, negotiation deadline
  void SendEvent(const std::string& line);  // sent only once negotiated
  void Finish();  // stop reading; close once what was received is answered and sent
  void Close();   // at once; idempotent

 private:
  void Read();
  void OnRead(const asio::error_code& ec, size_t n);
  void ProcessPending();
  void OnSlowDone(std::string reply);
  void Send(std::string line);
  void Write();
  void MaybeFinish();
  void UpdateDeadline();
  std::chrono::steady_clock::time_point Deadline() const;

  using Clock = std::chrono::steady_clock;
  Context context_;
  asio::local::stream_protocol::socket socket_;
  asio::steady_timer deadline_;
  Framer framer_;
  Dispatcher dispatcher_;
  std::deque<Frame> pending_;  // framed, not yet dispatched
  std::deque<std::string> output_;
  size_t output_bytes_ = 0;
  std::array<char, 4096> buffer_;
  Clock::time_point connected_;
  Clock::time_point partial_since_;  // when the incomplete message in the framer began
  bool reading_ = false;
  bool writing_ = false;
  bool busy_ = false;       // a slow command of this client is queued or running
  bool finishing_ = false;  // EOF, a fatal framing error, or the server stops
  bool closed_ = false;
};

}  // namespace kite::qmp
