// VirtioNet's receive path (virtio 1.2 section 5.1.6.3 and 5.1.6.4): frames from the backend
// into the guest's receive queue. See net.cc for the device as a whole.
//
// Two ways in:
//   * Direct (a backend with ReadFrame: the tap). On the backend's on_readable, RunRx reads
//     frames itself, up to kRxBudget per run, each with one readv of
//       [our 12-byte header copy | the held chains' room after the first one's header | spill]
//     so the frame goes from the kernel straight into guest memory. The device cannot know a
//     frame's size before reading it, so with MRG_RXBUF it first pops chains until they hold
//     the length it expects (rx_expect_: the recent frames' size, jumping up at once, decaying
//     slowly), and `spill` — a 64 KiB host buffer, larger than any frame — takes whatever does
//     not fit. A frame that spilled is finished by popping more chains and copying only the
//     spilled part after the part already in place (rx_copied counts these); if the queue has
//     no more buffers the frame waits (its head in chains that are held, not returned) until
//     the RX kick; if even the whole queue could not hold it, it is dropped (G24). Without
//     MRG_RXBUF one chain per frame: a frame that spills past its chain is dropped and the chain
//     kept for the next frame (G24). Either way nothing is written outside the descriptors and
//     no chain is returned with a partial frame. A read that fills even the spill buffer was
//     cut (the tap returns the room's size then) and is dropped, as is a read shorter than the
//     header. Once the frame is placed: the checked header with num_buffers goes into the
//     first chain, the chains it filled are returned, the rest stay held for the next frame.
//     While the device is not live the frames are read (all into the spill buffer) and
//     dropped, so the host side keeps draining.
//   * FrameSink (libslirp, and tests' fake backends): OnFrame, below: the frame is in the
//     backend's buffer and is copied into the guest (ReceiveCopyLocked).
//
// A frame's header is checked against the negotiated GUEST_* offloads and the frame dropped
// when it asks for one the driver did not accept (a backend without vnet headers gets a zeroed
// header put in front).
//
//   * Without VIRTIO_NET_F_MRG_RXBUF each frame takes one chain, num_buffers = 1. A frame
//     larger than the chain is dropped (G24) and the chain is kept for the next frame: nothing
//     is written, nothing is written past a descriptor.
//   * With MRG_RXBUF a frame is spread over as many chains as it needs, each filled
//     completely but the last; the first carries the header with num_buffers (5.1.6.4). A
//     chain with less room than the header is returned with used length 0 (the driver "MUST"
//     give at least that much) and counted as a drop. A frame that could not fit even if the
//     driver gave us the whole queue is dropped.
//   * When the queue runs out of buffers the frame is refused (the sink returns false): the
//     backend keeps it and stops reading; the popped chains are kept; the driver's next RX
//     kick calls the backend's ResumeReceive().
// (These rules are the FrameSink path's; the direct path above keeps the same outcomes.)
//
// Interrupts: the direct path raises the used-buffer interrupt once at the end of a run (with
// EVENT_IDX the transport's NeedsInterrupt() then asks the driver's used_event). Frames from a
// FrameSink arrive one by one; their interrupt is raised once per batch by a continuation
// posted to the loop. ReadFrame is called with mu_ held (like Send): it writes guest memory,
// and it never calls back into the device.
#include <sys/uio.h>

#include <algorithm>
#include <asio/post.hpp>
#include <cstring>

#include "base/log.h"
#include "virtio/net_device.h"

namespace kite::virtio {
namespace {

constexpr uint32_t kRxBudget = 64;  // frames per direct run before yielding the loop
// Room the held chains must have before a mergeable direct read: the largest frame.
constexpr size_t kMaxRxFrame = net::kMaxFrameWithHeader;

}  // namespace

bool VirtioNet::OnFrame(std::span<const uint8_t> frame) {
  std::function<void(const std::string&)> mark_broken;
  RxVerdict verdict;
  {
    std::lock_guard lock(mu_);
    if (quiesced_) {  // the backend keeps the frame until Unquiesce() resumes it
      rx_waiting_ = true;
      return false;
    }
    // Over the rate limit: the backend keeps the frame until the limiter's wake resumes it.
    // (Frames for a device that is not live or whose link is down are dropped, not limited.)
    size_t header = backend_->has_vnet_header() ? kNetHeaderSize : 0;
    size_t bytes = frame.size() - std::min(frame.size(), header);
    bool limited = rx_queue_ != nullptr && LinkUpLocked();
    if (limited && !rx_throttle_.Admit(bytes, rx_wake_)) {
      rx_throttled_ = true;
      throttled_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    verdict = ReceiveCopyLocked(frame);
    // No room: the backend offers the frame again later; it is charged then, not twice.
    if (limited && verdict == RxVerdict::kNoRoom) rx_throttle_.Refund(bytes);
    if (verdict == RxVerdict::kBroken)
      BreakLocked("the guest broke the receive queue", &mark_broken);
    // Delivered frames, and chains returned with length 0 on the way, want an interrupt.
    if (verdict != RxVerdict::kBroken) ScheduleRxSignalLocked();
  }
  if (mark_broken) mark_broken("virtio-net: malformed receive ring");
  return verdict != RxVerdict::kNoRoom;
}

VirtioNet::RxVerdict VirtioNet::ReceiveCopyLocked(std::span<const uint8_t> frame) {
  // Not live, RX queue not enabled, broken, or the link set down (set_link): dropped.
  if (rx_queue_ == nullptr || !LinkUpLocked()) {
    drops_.fetch_add(1, std::memory_order_relaxed);
    return RxVerdict::kDropped;
  }
  net::Header hdr{};
  std::span<const uint8_t> payload = frame;
  if (backend_->has_vnet_header()) {
    if (frame.size() < kNetHeaderSize) {
      drops_.fetch_add(1, std::memory_order_relaxed);
      return RxVerdict::kDropped;
    }
    std::memcpy(&hdr, frame.data(), kNetHeaderSize);
    payload = frame.subspan(kNetHeaderSize);
  }
  if (!CheckRxHeader(&hdr, features_)) {
    KITE_LOG_RATELIMITED(Debug, "virtio-net: RX frame with offloads the guest refused");
    drops_.fetch_add(1, std::memory_order_relaxed);
    return RxVerdict::kDropped;
  }
  RxVerdict verdict = DeliverLocked(hdr, payload);
  switch (verdict) {
    case RxVerdict::kDelivered:
      requests_.fetch_add(1, std::memory_order_relaxed);
      rx_bytes_.fetch_add(payload.size(), std::memory_order_relaxed);
      rx_copied_.fetch_add(1, std::memory_order_relaxed);
      break;
    case RxVerdict::kDropped:
      drops_.fetch_add(1, std::memory_order_relaxed);
      break;
    case RxVerdict::kNoRoom:
      rx_waiting_ = true;
      break;
    case RxVerdict::kBroken:
      break;
  }
  return verdict;
}

VirtioNet::RxVerdict VirtioNet::DeliverLocked(net::Header hdr, std::span<const uint8_t> payload) {
  size_t needed = kNetHeaderSize + payload.size();
  bool mergeable = (features_ & FeatureBit(net::kFeatureMrgRxbuf)) != 0;
  RxVerdict gathered = GatherRxLocked(needed, mergeable);
  if (gathered != RxVerdict::kDelivered) return gathered;
  if (!mergeable) {
    if (rx_chains_.front().writable_bytes() < needed) {
      KITE_LOG_RATELIMITED(Debug, "virtio-net: %zu-byte frame dropped: %u-byte RX buffer (G24)",
                           needed, rx_chains_.front().writable_bytes());
      return RxVerdict::kDropped;  // the chain stays for the next frame
    }
    hdr.num_buffers = 1;
    WriteRxLocked(hdr, payload, 1);
    return RxVerdict::kDelivered;
  }
  size_t chains = 0;
  for (size_t room = 0; room < needed; ++chains) room += rx_chains_[chains].writable_bytes();
  hdr.num_buffers = static_cast<uint16_t>(chains);
  WriteRxLocked(hdr, payload, chains);
  return RxVerdict::kDelivered;
}

VirtioNet::RxVerdict VirtioNet::GatherRxLocked(size_t needed, bool mergeable) {
  while (rx_chains_.empty() || (mergeable && rx_room_ < needed)) {
    if (rx_spare_.empty()) rx_spare_.emplace_back();
    DescriptorChain& chain = rx_spare_.back();
    Queue::PopResult pop = rx_queue_->Pop(&chain);
    if (pop == Queue::PopResult::kBroken) return RxVerdict::kBroken;
    if (pop == Queue::PopResult::kEmpty) {
      // Even the whole queue would not hold this frame: waiting would wait forever.
      if (rx_queue_->in_flight() >= rx_queue_->size()) return RxVerdict::kDropped;
      return RxVerdict::kNoRoom;
    }
    if (chain.writable_bytes() < kNetHeaderSize) {
      KITE_LOG_RATELIMITED(Debug, "virtio-net: RX chain %u smaller than the header", chain.head());
      drops_.fetch_add(1, std::memory_order_relaxed);
      rx_queue_->PushUsed(chain.head(), 0);
      rx_signal_needed_ = true;
      continue;
    }
    rx_room_ += chain.writable_bytes();
    rx_chains_.push_back(std::move(chain));
    rx_spare_.pop_back();
  }
  return RxVerdict::kDelivered;
}

void VirtioNet::WriteRxLocked(net::Header hdr, std::span<const uint8_t> payload, size_t chains) {
  size_t done = 0;
  for (size_t i = 0; i < chains; ++i) {
    DescriptorChain& chain = rx_chains_.front();
    ChainWriter writer(chain);
    if (i == 0) (void)writer.WriteObj(hdr);  // every held chain has room for the header
    size_t n = std::min(writer.remaining(), payload.size() - done);
    (void)writer.Write(payload.data() + done, n);
    done += n;
    rx_queue_->PushUsed(chain.head(), static_cast<uint32_t>(writer.written()));
    rx_room_ -= chain.writable_bytes();
    rx_spare_.push_back(std::move(chain));
    rx_chains_.pop_front();
  }
  rx_signal_needed_ = true;
}

void VirtioNet::ScheduleRxSignalLocked() {
  if (!rx_signal_needed_ || rx_signal_posted_) return;
  rx_signal_posted_ = true;
  std::weak_ptr<VirtioNet> weak = weak_from_this();
  uint64_t generation = generation_;
  asio::post(*loop_, [weak, generation] {
    auto self = weak.lock();
    if (!self) return;
    std::lock_guard lock(self->mu_);
    self->rx_signal_posted_ = false;
    if (generation != self->generation_ || self->rx_queue_ == nullptr) return;
    if (!self->rx_signal_needed_) return;
    self->rx_signal_needed_ = false;
    if (self->active_.signal_used) self->active_.signal_used(kRxQueue);
  });
}

// --- Direct receive ---

void VirtioNet::RunRx() {
  std::function<void(const std::string&)> mark_broken;
  bool more = false;
  {
    std::lock_guard lock(mu_);
    if (rx_gone_ || rx_waiting_) return;  // waiting: the RX kick calls us again
    if (quiesced_) {
      rx_waiting_ = true;  // Unquiesce() calls us again
      return;
    }
    for (uint32_t frames = 0;; ++frames) {
      if (frames == kRxBudget) {
        more = true;
        break;
      }
      RxStep step = rx_pending_len_ != 0 ? PlaceLocked() : ReadLocked();
      if (step == RxStep::kNext) continue;
      if (step == RxStep::kGone) rx_gone_ = true;
      if (step == RxStep::kBroken) BreakLocked("the guest broke the receive queue", &mark_broken);
      break;
    }
    // One interrupt for the whole run (frames, and chains returned empty on the way).
    if (rx_signal_needed_ && rx_queue_ != nullptr) {
      rx_signal_needed_ = false;
      if (active_.signal_used) active_.signal_used(kRxQueue);
    }
  }
  if (mark_broken) mark_broken("virtio-net: malformed receive ring");
  if (more) {
    std::weak_ptr<VirtioNet> weak = weak_from_this();
    asio::post(*loop_, [weak] {
      if (auto self = weak.lock()) self->RunRx();
    });
  }
}

VirtioNet::RxStep VirtioNet::ReadLocked() {
  bool live = rx_queue_ != nullptr && LinkUpLocked();
  bool mergeable = (features_ & FeatureBit(net::kFeatureMrgRxbuf)) != 0;
  // Over the rate limit: the frame stays in the tap until the limiter's wake. Its length is
  // known only once read: one byte is asked for now, the rest charged after the read.
  if (live && !rx_throttle_.Admit(1, rx_wake_)) {
    rx_throttled_ = true;
    throttled_.fetch_add(1, std::memory_order_relaxed);
    return RxStep::kThrottled;
  }
  if (live) {
    // Hold chains for the frame we expect; short (queue empty, or all of it held) is fine:
    // what does not fit spills into rx_buffer_.
    size_t want = mergeable ? std::min(rx_expect_, kMaxRxFrame) : 1;
    if (GatherRxLocked(want, mergeable) == RxVerdict::kBroken) return RxStep::kBroken;
  }
  size_t in_guest = live ? BuildRxIovLocked(mergeable) : 0;
  if (!live) {
    rx_iov_.clear();
    rx_iov_.push_back({&rx_header_, kNetHeaderSize});
  }
  rx_iov_.push_back({rx_buffer_.data(), rx_buffer_.size()});
  Result<std::optional<size_t>> read = backend_->ReadFrame(rx_iov_);
  if (!read) return RxStep::kGone;
  if (!read->has_value()) {
    if (live) rx_throttle_.Refund(1);  // no frame: the operation did not happen
    return RxStep::kEmpty;
  }
  size_t len = **read;
  if (!live || len < kNetHeaderSize || len >= kNetHeaderSize + in_guest + rx_buffer_.size()) {
    // Link down, shorter than the header, or it filled even the spill buffer, which is larger
    // than any frame: cut (the tap returns the room's size for a cut frame).
    drops_.fetch_add(1, std::memory_order_relaxed);
    return RxStep::kNext;
  }
  if (!CheckRxHeader(&rx_header_, features_)) {
    KITE_LOG_RATELIMITED(Debug, "virtio-net: RX frame with offloads the guest refused");
    drops_.fetch_add(1, std::memory_order_relaxed);
    return RxStep::kNext;
  }
  rx_throttle_.Charge(len - kNetHeaderSize - std::min<size_t>(len - kNetHeaderSize, 1));
  // Expect frames like the recent ones: jump up at once, decay slowly.
  rx_expect_ = len >= rx_expect_ ? len : rx_expect_ - (rx_expect_ - len) / 16;
  rx_pending_len_ = len;
  rx_pending_in_guest_ = std::min(len - kNetHeaderSize, in_guest);
  return PlaceLocked();
}

size_t VirtioNet::BuildRxIovLocked(bool mergeable) {
  rx_iov_.clear();
  rx_iov_.push_back({&rx_header_, kNetHeaderSize});
  size_t room = 0;  // payload bytes the chains take (the first chain's header slot excluded)
  size_t want = std::min(rx_expect_, kMaxRxFrame) - kNetHeaderSize;
  for (size_t i = 0; i < rx_chains_.size(); ++i) {
    std::span<const iovec> pieces = rx_chains_[i].writable();
    if (rx_iov_.size() + pieces.size() + 1 > IOV_MAX) break;  // + 1: the spill buffer
    size_t skip = i == 0 ? kNetHeaderSize : 0;  // the first chain's header comes from rx_header_
    for (const iovec& piece : pieces) {
      size_t cut = std::min(skip, piece.iov_len);
      skip -= cut;
      if (piece.iov_len == cut) continue;
      rx_iov_.push_back({static_cast<uint8_t*>(piece.iov_base) + cut, piece.iov_len - cut});
    }
    room += rx_chains_[i].writable_bytes() - (i == 0 ? kNetHeaderSize : 0);
    if (!mergeable || room >= want) break;
  }
  return room;
}

VirtioNet::RxStep VirtioNet::PlaceLocked() {
  size_t len = rx_pending_len_;
  size_t spilled = len - kNetHeaderSize - rx_pending_in_guest_;
  bool mergeable = (features_ & FeatureBit(net::kFeatureMrgRxbuf)) != 0;
  // Read straight into the guest. A frame with no payload (only the header) takes no room in
  // the held chains, so it can arrive while none is held: it waits for one like any other.
  if (spilled == 0 && !rx_chains_.empty()) return CompleteRxLocked(mergeable);
  // The rest of the frame is in rx_buffer_: it needs more room. Without MRG_RXBUF a frame that
  // spilled past its chain does not fit (G24): dropped, the chain stays for the next frame.
  bool overflowed_chain = !mergeable && rx_pending_in_guest_ != 0;
  RxVerdict gathered = overflowed_chain ? RxVerdict::kDropped : GatherRxLocked(len, mergeable);
  if (gathered == RxVerdict::kDelivered && !mergeable &&
      rx_chains_.front().writable_bytes() < len) {
    gathered = RxVerdict::kDropped;
  }
  switch (gathered) {
    case RxVerdict::kBroken:
      rx_pending_len_ = 0;
      return RxStep::kBroken;
    case RxVerdict::kNoRoom:
      rx_waiting_ = true;  // the chains holding the head stay held, unreturned
      return RxStep::kWait;
    case RxVerdict::kDropped:
      KITE_LOG_RATELIMITED(Debug, "virtio-net: %zu-byte frame dropped: RX buffers too small (G24)",
                           len);
      drops_.fetch_add(1, std::memory_order_relaxed);
      rx_pending_len_ = 0;
      return RxStep::kNext;
    case RxVerdict::kDelivered:
      break;
  }
  // Copy the spilled bytes where the frame's byte stream continues: after the in-place part.
  size_t skip = kNetHeaderSize + rx_pending_in_guest_;
  const uint8_t* src = rx_buffer_.data();
  for (size_t i = 0; spilled != 0; ++i) {
    ChainWriter writer(rx_chains_[i]);
    size_t cut = std::min<size_t>(skip, rx_chains_[i].writable_bytes());
    skip -= cut;
    (void)writer.Skip(cut);
    size_t n = std::min(writer.remaining(), spilled);
    (void)writer.Write(src, n);
    src += n;
    spilled -= n;
  }
  rx_copied_.fetch_add(1, std::memory_order_relaxed);
  return CompleteRxLocked(mergeable);
}

VirtioNet::RxStep VirtioNet::CompleteRxLocked(bool mergeable) {
  // The frame's bytes fill the held chains in order, each completely but the last.
  size_t len = rx_pending_len_;
  rx_pending_len_ = 0;
  size_t chains = 1;
  if (mergeable) {
    for (size_t room = rx_chains_[0].writable_bytes(); room < len; ++chains) {
      room += rx_chains_[chains].writable_bytes();
    }
  }
  rx_header_.num_buffers = static_cast<uint16_t>(chains);
  (void)ChainWriter(rx_chains_.front()).WriteObj(rx_header_);  // held chains have room for it
  size_t left = len;
  for (size_t i = 0; i < chains; ++i) {
    DescriptorChain& chain = rx_chains_.front();
    size_t n = std::min<size_t>(chain.writable_bytes(), left);
    left -= n;
    rx_queue_->PushUsed(chain.head(), static_cast<uint32_t>(n));
    rx_room_ -= chain.writable_bytes();
    rx_spare_.push_back(std::move(chain));
    rx_chains_.pop_front();
  }
  rx_signal_needed_ = true;
  requests_.fetch_add(1, std::memory_order_relaxed);
  rx_bytes_.fetch_add(len - kNetHeaderSize, std::memory_order_relaxed);
  return RxStep::kNext;
}

}  // namespace kite::virtio
