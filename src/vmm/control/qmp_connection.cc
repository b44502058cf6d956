// One QMP client connection: see qmp_connection.h.
#include "vmm/control/qmp_connection.h"

#include <asio/post.hpp>
#include <asio/write.hpp>
#include <vector>

#include "base/log.h"
#include "vmm/control/qmp_protocol.h"

namespace kite::qmp {

Connection::Connection(Context context, asio::local::stream_protocol::socket socket)
    : context_(std::move(context)),
      socket_(std::move(socket)),
      deadline_(*context_.io),
      framer_(context_.options->limits),
      dispatcher_(context_.machine),
      connected_(Clock::now()) {}

void Connection::Start() {
  Send(GreetingLine());
  Read();
  UpdateDeadline();
}

void Connection::SendEvent(const std::string& line) {
  if (dispatcher_.negotiated()) Send(line);
}

void Connection::Finish() {
  finishing_ = true;
  asio::error_code ec;
  socket_.shutdown(asio::socket_base::shutdown_receive, ec);  // a pending read sees EOF
  MaybeFinish();
}

void Connection::Close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ec;
  socket_.shutdown(asio::socket_base::shutdown_both, ec);
  socket_.close(ec);  // pending operations complete with operation_aborted
  deadline_.cancel();
  output_.clear();
  pending_.clear();
  output_bytes_ = 0;
  if (context_.on_close) context_.on_close(this);
}

void Connection::Read() {
  // One request at a time: nothing more is read while earlier ones wait or run.
  if (closed_ || finishing_ || reading_ || busy_ || !pending_.empty()) return;
  reading_ = true;
  socket_.async_read_some(
      asio::buffer(buffer_),
      [self = shared_from_this()](const asio::error_code& ec, size_t n) { self->OnRead(ec, n); });
}

void Connection::OnRead(const asio::error_code& ec, size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    // EOF (the client may have shut down only its sending side, as socat does): answer what
    // arrived, then close. Other errors: the connection is gone.
    if (ec == asio::error::eof) {
      finishing_ = true;
      MaybeFinish();
    } else {
      Close();
    }
    return;
  }
  bool was_partial = framer_.pending();
  std::vector<Frame> frames;
  framer_.Feed(std::string_view(buffer_.data(), n), &frames);
  if (framer_.pending() && (!was_partial || !frames.empty())) partial_since_ = Clock::now();
  for (Frame& frame : frames) pending_.push_back(std::move(frame));
  if (framer_.failed()) finishing_ = true;  // message too long: answer it, then close
  ProcessPending();
}

void Connection::ProcessPending() {
  while (!closed_ && !busy_ && !pending_.empty()) {
    Frame frame = std::move(pending_.front());
    pending_.pop_front();
    Outcome outcome = dispatcher_.Handle(frame);
    if (!outcome.slow) {
      Send(std::move(outcome.reply));
      continue;
    }
    busy_ = true;
    asio::io_context* io = context_.io;
    const ServerOptions* options = context_.options;
    context_.submit([self = shared_from_this(), io, options,
                     job = std::move(outcome.slow)](bool cancelled) {
      std::string reply;
      if (cancelled) {
        reply = ErrorLine(Err("kite is shutting down: command not run"), std::nullopt);
      } else {
        if (options->before_slow_command) options->before_slow_command();
        reply = job();
      }
      asio::post(
          *io, [self, reply = std::move(reply)]() mutable { self->OnSlowDone(std::move(reply)); });
    });
  }
  UpdateDeadline();
  Read();
  MaybeFinish();
}

void Connection::OnSlowDone(std::string reply) {
  busy_ = false;
  if (closed_) return;  // the client left mid-command: the reply has nowhere to go (C8)
  Send(std::move(reply));
  // The command may have taken long; an incomplete message behind it gets a fresh allowance.
  partial_since_ = Clock::now();
  ProcessPending();
}

void Connection::Send(std::string line) {
  if (closed_ || line.empty()) return;
  output_bytes_ += line.size();
  if (output_bytes_ > context_.options->max_output) {
    KITE_LOG_RATELIMITED(Warn,
                         "qmp: dropping a client that does not read its replies "
                         "(%zu bytes unsent)",
                         output_bytes_);
    Close();
    return;
  }
  output_.push_back(std::move(line));
  Write();
}

void Connection::Write() {
  if (closed_ || writing_ || output_.empty()) return;
  writing_ = true;
  // asio sends on stream sockets with MSG_NOSIGNAL: a vanished client is EPIPE, not SIGPIPE.
  asio::async_write(socket_, asio::buffer(output_.front()),
                    [self = shared_from_this()](const asio::error_code& ec, size_t) {
                      self->writing_ = false;
                      if (self->closed_) return;
                      if (ec) {
                        self->Close();
                        return;
                      }
                      self->output_bytes_ -= self->output_.front().size();
                      self->output_.pop_front();
                      self->Write();
                      self->MaybeFinish();
                    });
}

void Connection::MaybeFinish() {
  if (finishing_ && !closed_ && !busy_ && pending_.empty() && output_.empty() && !writing_) {
    Close();
  }
}

Connection::Clock::time_point Connection::Deadline() const {
  auto timeout = context_.options->idle_timeout;
  if (!dispatcher_.negotiated()) return connected_ + timeout;
  if (framer_.pending() && !busy_) return partial_since_ + timeout;
  return Clock::time_point::max();
}

void Connection::UpdateDeadline() {
  if (closed_) return;
  Clock::time_point deadline = Deadline();
  if (deadline == Clock::time_point::max()) {
    deadline_.cancel();
    return;
  }
  deadline_.expires_at(deadline);  // cancels the previous wait
  deadline_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (ec || self->closed_) return;  // re-armed or closed
    if (Clock::now() >= self->Deadline()) {
      KITE_LOG_RATELIMITED(Info, "qmp: closing an idle client connection");
      self->Close();
    } else {
      self->UpdateDeadline();
    }
  });
}

}  // namespace kite::qmp
