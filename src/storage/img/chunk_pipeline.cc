// ChunkPipeline implementation: one thread per request in flight, a shared cursor handing out
// chunks in disk order, and a ticket (the sequence number of the next chunk to finish) that
// keeps Finish in order. See chunk_pipeline.h.
#include "storage/img/chunk_pipeline.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

namespace kite::img {
namespace {

class Pipeline {
 public:
  Pipeline(ChunkJob& job, const PipelineOptions& options, Progress& progress)
      : job_(job),
        options_(options),
        progress_(progress),
        workers_(std::clamp(options.requests, 1, kMaxRequests)) {}

  Result<void> Run() {
    std::vector<std::thread> workers;
    for (int i = 1; i < workers_; ++i) workers.emplace_back([this] { Worker(); });
    Worker();  // the calling thread is one of the workers
    for (std::thread& t : workers) t.join();
    if (error_) return std::move(*error_);
    return {};
  }

 private:
  // Plans the next chunk into `chunk`; false when the walk is over (done, stopped, failed).
  bool Claim(Chunk& chunk, uint64_t& seq) {
    std::lock_guard lock(mu_);
    if (stopped_ || cursor_ >= options_.size) return false;
    chunk.offset = cursor_;
    chunk.kind = 0;
    uint64_t rest = options_.size - cursor_;
    Result<void> planned = job_.Plan(chunk, std::min(options_.chunk_size, rest), rest);
    if (planned && (chunk.length == 0 || chunk.length > rest)) {
      planned = Err("block status returned a bad extent at offset " + std::to_string(cursor_));
    }
    if (!planned) {
      StopLocked(std::move(planned).error());
      return false;
    }
    cursor_ += chunk.length;
    seq = next_seq_++;
    return true;
  }

  void StopLocked(std::optional<Error> error) {
    if (error && !error_) error_ = std::move(error);
    stopped_ = true;
    for (std::condition_variable& turn : turns_) turn.notify_all();
  }

  // In order: waits until `seq` is the next chunk to finish; false when the walk stopped.
  bool WaitTurn(uint64_t seq) {
    if (!options_.in_order) return true;
    std::unique_lock lock(mu_);
    turns_[seq % workers_].wait(lock, [&] { return stopped_ || finished_seq_ == seq; });
    return !stopped_;
  }

  void Done(const Chunk& chunk, Result<bool> finished) {
    std::lock_guard lock(mu_);
    if (!finished) return StopLocked(std::move(finished).error());
    progress_.Advance(chunk.length);
    ++finished_seq_;
    if (!*finished) return StopLocked(std::nullopt);
    turns_[finished_seq_ % workers_].notify_one();  // the only waiter for that turn
  }

  void Worker() {
    Chunk chunk;
    uint64_t seq = 0;
    while (Claim(chunk, seq)) {
      Result<void> worked = job_.Work(chunk);
      if (!worked) {
        std::lock_guard lock(mu_);
        return StopLocked(std::move(worked).error());
      }
      if (!WaitTurn(seq)) return;
      Done(chunk, job_.Finish(chunk));
    }
  }

  ChunkJob& job_;
  const PipelineOptions& options_;
  Progress& progress_;
  const int workers_;
  std::mutex mu_;
  // At most one chunk per worker is in flight, so chunk `seq` waits on turns_[seq % workers_]
  // alone: a finished chunk wakes just the next one.
  std::condition_variable turns_[kMaxRequests];
  uint64_t cursor_ = 0;         // under mu_: where the next chunk starts
  uint64_t next_seq_ = 0;       // under mu_: sequence number of the next chunk planned
  uint64_t finished_seq_ = 0;   // under mu_: in order, the chunk whose Finish runs next
  bool stopped_ = false;        // under mu_
  std::optional<Error> error_;  // under mu_: the first error
};

}  // namespace

Result<storage::Extent> StatusCursor::At(uint64_t offset, uint64_t max_length) {
  uint64_t end = cached_.offset + cached_.length;
  if (offset < cached_.offset || offset >= end) {
    cached_ = TRY(image_.BlockStatus(offset, image_.size() - offset));
    if (cached_.length == 0) return Err(image_.path() + ": block status returned an empty extent");
    end = cached_.offset + cached_.length;
  }
  storage::Extent e = cached_;
  e.offset = offset;
  e.length = std::min(max_length, end - offset);
  if (e.host_offset) *e.host_offset += offset - cached_.offset;
  return e;
}

Result<void> RunPipeline(ChunkJob& job, const PipelineOptions& options, Progress& progress) {
  Pipeline pipeline(job, options, progress);
  return pipeline.Run();
}

}  // namespace kite::img
