// FuzzNetBackend: an in-memory NetBackend for the fuzzers (virtio_net_fuzzer, virtio_mmio_fuzzer)
// that behaves like the real ones where the device can tell: a FrameSink backend (libslirp's
// way) holds a refused frame until ResumeReceive; a direct one (the tap's way) has ReadFrame
// scatter a frame into the caller's iovecs and return the iovecs' total for a frame that does
// not fit. Frames the fuzzer injects wait in a queue. Every sent frame's vnet header is checked
// against what the device promises the backend (a validated copy: net_header.h).
//
// Threads: everything on the fuzzer's thread, which also polls the device's event loop.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "virtio/net_backend.h"
#include "virtio/net_header.h"

namespace kite::fuzz {

struct FuzzNetState {
  bool vnet = true;
  bool direct = false;
  uint64_t offloads = virtio::kNetOffloadFeatures;
  uint64_t negotiated = 0;
  bool full = false;  // Send returns false (the backend is busy) while set
  std::deque<std::vector<uint8_t>> frames;
  virtio::NetBackend::FrameSink sink;
  std::function<void()> on_readable;
  std::function<void()> on_writable;
  bool reader_waiting = false;  // direct: ReadFrame said nullopt, on_readable is due
  bool sink_refused = false;    // FrameSink: the front frame was refused, wait for a resume
  uint64_t sent = 0;
};

class FuzzNetBackend final : public virtio::NetBackend {
 public:
  explicit FuzzNetBackend(std::shared_ptr<FuzzNetState> s) : s_(std::move(s)) {}

  bool has_vnet_header() const override { return s_->vnet; }
  uint64_t offload_features() const override { return s_->offloads; }
  Result<void> SetOffloads(uint64_t features) override {
    s_->negotiated = features;
    return {};
  }
  Result<bool> Send(std::span<const iovec> iov) override {
    if (s_->full) return false;
    size_t total = 0;
    for (const iovec& v : iov) total += v.iov_len;
    if (s_->vnet) CheckSentHeader(iov, total);
    ++s_->sent;
    return true;
  }
  void StartReceive(FrameSink sink, std::function<void()> on_writable) override {
    s_->sink = std::move(sink);
    s_->on_writable = std::move(on_writable);
  }
  void ResumeReceive() override {
    s_->sink_refused = false;
    Pump();
  }
  void Stop() override {
    s_->sink = nullptr;
    s_->on_readable = nullptr;
    s_->on_writable = nullptr;
  }
  bool can_read_direct() const override { return s_->direct; }
  void StartDirectReceive(std::function<void()> on_readable,
                          std::function<void()> on_writable) override {
    s_->on_readable = std::move(on_readable);
    s_->on_writable = std::move(on_writable);
    s_->reader_waiting = true;
  }
  Result<std::optional<size_t>> ReadFrame(std::span<const iovec> iov) override {
    if (s_->frames.empty()) {
      s_->reader_waiting = true;
      return std::optional<size_t>();
    }
    std::vector<uint8_t> frame = std::move(s_->frames.front());
    s_->frames.pop_front();
    size_t done = 0;
    for (const iovec& v : iov) {
      size_t n = std::min(v.iov_len, frame.size() - done);
      if (n) std::memcpy(v.iov_base, frame.data() + done, n);
      done += n;
      if (done == frame.size()) break;
    }
    if (done < frame.size()) {  // cut: the tap reports the room it was given
      done = 0;
      for (const iovec& v : iov) done += v.iov_len;
    }
    return std::optional<size_t>(done);
  }
  std::string description() const override { return "fuzz"; }
  virtio::NetBackendCounters counters() const override { return {}; }

  // A frame arrives from the network side: offered to the device now if it is listening.
  static void Inject(FuzzNetState& s, std::vector<uint8_t> frame) {
    s.frames.push_back(std::move(frame));
    if (s.frames.size() > 64) s.frames.pop_front();
    if (s.on_readable && s.reader_waiting) {
      s.reader_waiting = false;
      auto readable = s.on_readable;
      readable();
    } else if (s.sink && !s.sink_refused) {
      Pump(s);
    }
  }
  // The backend has room again.
  static void Writable(FuzzNetState& s) {
    s.full = false;
    if (s.on_writable) {
      auto writable = s.on_writable;
      writable();
    }
  }

 private:
  void Pump() { Pump(*s_); }
  static void Pump(FuzzNetState& s) {
    while (s.sink && !s.sink_refused && !s.frames.empty()) {
      std::vector<uint8_t> frame = s.frames.front();
      auto sink = s.sink;
      if (!sink(frame)) {
        s.sink_refused = true;
        return;
      }
      if (!s.frames.empty()) s.frames.pop_front();
    }
  }

  // What CheckTxHeader promised: only NEEDS_CSUM may be set, its offsets inside the frame, and
  // segmentation only of a negotiated kind with a size and a checksum.
  void CheckSentHeader(std::span<const iovec> iov, size_t total) const {
    virtio::net::Header h{};
    if (iov.empty() || iov[0].iov_len != sizeof(h) || total < sizeof(h)) Die("header iovec");
    std::memcpy(&h, iov[0].iov_base, sizeof(h));
    size_t frame = total - sizeof(h);
    if (h.flags & ~virtio::net::kHdrFlagNeedsCsum) Die("flags beyond NEEDS_CSUM");
    if (h.flags & virtio::net::kHdrFlagNeedsCsum) {
      if (!(s_->negotiated & virtio::FeatureBit(virtio::net::kFeatureCsum))) Die("csum");
      if (size_t{h.csum_start} + h.csum_offset + 2 > frame) Die("csum offsets");
    }
    if (h.gso_type != virtio::net::kGsoNone) {
      int bit = h.gso_type == virtio::net::kGsoTcpv4   ? virtio::net::kFeatureHostTso4
                : h.gso_type == virtio::net::kGsoTcpv6 ? virtio::net::kFeatureHostTso6
                                                       : -1;
      if (bit < 0 || !(s_->negotiated & virtio::FeatureBit(bit))) Die("gso type");
      if (h.gso_size == 0 || !(h.flags & virtio::net::kHdrFlagNeedsCsum)) Die("gso fields");
    }
  }
  [[noreturn]] static void Die(const char* what) {
    std::fprintf(stderr, "fuzz net backend: the device sent a bad header: %s\n", what);
    std::abort();
  }

  std::shared_ptr<FuzzNetState> s_;
};

}  // namespace kite::fuzz
