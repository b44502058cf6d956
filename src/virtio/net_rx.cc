// VirtioNet's receive path (virtio 1.2 section 5.1.6.3 and 5.1.6.4): frames from the backend
// into the guest's receive queue. See net.cc for the device as a whole.
//
// Two ways in:
//   * Direct (a backend with ReadFrame: the tap). On the backend's on_readable, RunRx reads
//     frames itself, up to kRxBudget per run, each with one readv of
//       [our 12-byte header copy | the held chains' room after the first one's header | spill]
//     so the frame goes from the kernel straight into guest memory. The device cannot know a
//     frame's size before reading it, so with MRG_RXBUF it first pops chains until they hold
//     the length it expects (p.rx_expect: the recent frames' size, jumping up at once, decaying
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

bool VirtioNet::OnFrame(NetPair& p, std::span<const uint8_t> frame) {
  std::function<void(const std::string&)> mark_broken;
  RxVerdict verdict;
  {
    std::lock_guard lock(mu_);
    if (quiesced_) {  // the backend keeps the frame until Unquiesce() resumes it
      p.rx_waiting = true;
      return false;
    }
    // Over the rate limit: the backend keeps the frame until the limiter's wake resumes it.
    // (Frames for a device that is not live or whose link is down are dropped, not limited.)
    size_t header = p.backend->has_vnet_header() ? kNetHeaderSize : 0;
    size_t bytes = frame.size() - std::min(frame.size(), header);
    bool limited = p.rx_queue != nullptr && LinkUpLocked();
    if (limited && !rx_throttle_.Admit(bytes, rx_wake_)) {
      p.rx_throttled = true;
      throttled_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    verdict = ReceiveCopyLocked(p, frame);
    // No room: the backend offers the frame again later; it is charged then, not twice.
    if (limited && verdict == RxVerdict::kNoRoom) rx_throttle_.Refund(bytes);
    if (verdict == RxVerdict::kBroken)
      BreakLocked("the guest broke the receive queue", &mark_broken);
    // Delivered frames, and chains returned with length 0 on the way, want an interrupt.
    if (verdict != RxVerdict::kBroken) ScheduleRxSignalLocked(p);
  }
  if (mark_broken) mark_broken("virtio-net: malformed receive ring");
  return verdict != RxVerdict::kNoRoom;
}

VirtioNet::RxVerdict VirtioNet::ReceiveCopyLocked(NetPair& p, std::span<const uint8_t> frame) {
  // Not live, RX queue not enabled, broken, or the link set down (set_link): dropped.
  if (p.rx_queue == nullptr || !LinkUpLocked()) {
    drops_.fetch_add(1, std::memory_order_relaxed);
    return RxVerdict::kDropped;
  }
  net::Header hdr{};
  std::span<const uint8_t> payload = frame;
  if (p.backend->has_vnet_header()) {
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
  if (!FilterAcceptsLocked(payload.first(std::min<size_t>(payload.size(), 6)))) {
    return RxVerdict::kDropped;  // counted in rx_filtered, not a drop
  }
  RxVerdict verdict = DeliverLocked(p, hdr, payload);
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
      p.rx_waiting = true;
      break;
    case RxVerdict::kBroken:
      break;
  }
  return verdict;
}

VirtioNet::RxVerdict VirtioNet::DeliverLocked(NetPair& p, net::Header hdr,
                                              std::span<const uint8_t> payload) {
  size_t needed = kNetHeaderSize + payload.size();
  bool mergeable = (features_ & FeatureBit(net::kFeatureMrgRxbuf)) != 0;
  RxVerdict gathered = GatherRxLocked(p, needed, mergeable);
  if (gathered != RxVerdict::kDelivered) return gathered;
  if (!mergeable) {
    if (p.rx_chains.front().writable_bytes() < needed) {
      KITE_LOG_RATELIMITED(Debug, "virtio-net: %zu-byte frame dropped: %u-byte RX buffer (G24)",
                           needed, p.rx_chains.front().writable_bytes());
      return RxVerdict::kDropped;  // the chain stays for the next frame
    }
    hdr.num_buffers = 1;
    WriteRxLocked(p, hdr, payload, 1);
    return RxVerdict::kDelivered;
  }
  size_t chains = 0;
  for (size_t room = 0; room < needed; ++chains) room += p.rx_chains[chains].writable_bytes();
  hdr.num_buffers = static_cast<uint16_t>(chains);
  WriteRxLocked(p, hdr, payload, chains);
  return RxVerdict::kDelivered;
}

VirtioNet::RxVerdict VirtioNet::GatherRxLocked(NetPair& p, size_t needed, bool mergeable) {
  while (p.rx_chains.empty() || (mergeable && p.rx_room < needed)) {
    if (p.rx_spare.empty()) p.rx_spare.emplace_back();
    DescriptorChain& chain = p.rx_spare.back();
    Queue::PopResult pop = p.rx_queue->Pop(&chain);
    if (pop == Queue::PopResult::kBroken) return RxVerdict::kBroken;
    if (pop == Queue::PopResult::kEmpty) {
      // Even the whole queue would not hold this frame: waiting would wait forever.
      if (p.rx_queue->in_flight() >= p.rx_queue->size()) return RxVerdict::kDropped;
      return RxVerdict::kNoRoom;
    }
    if (chain.writable_bytes() < kNetHeaderSize) {
      KITE_LOG_RATELIMITED(Debug, "virtio-net: RX chain %u smaller than the header", chain.head());
      drops_.fetch_add(1, std::memory_order_relaxed);
      p.rx_queue->PushUsed(chain.head(), 0);
      p.rx_signal_needed = true;
      continue;
    }
    p.rx_room += chain.writable_bytes();
    p.rx_chains.push_back(std::move(chain));
    p.rx_spare.pop_back();
  }
  return RxVerdict::kDelivered;
}

void VirtioNet::WriteRxLocked(NetPair& p, net::Header hdr, std::span<const uint8_t> payload,
                              size_t chains) {
  size_t done = 0;
  for (size_t i = 0; i < chains; ++i) {
    DescriptorChain& chain = p.rx_chains.front();
    ChainWriter writer(chain);
    if (i == 0) (void)writer.WriteObj(hdr);  // every held chain has room for the header
    size_t n = std::min(writer.remaining(), payload.size() - done);
    (void)writer.Write(payload.data() + done, n);
    done += n;
    p.rx_queue->PushUsed(chain.head(), static_cast<uint32_t>(writer.written()));
    p.rx_room -= chain.writable_bytes();
    p.rx_spare.push_back(std::move(chain));
    p.rx_chains.pop_front();
  }
  p.rx_signal_needed = true;
}

void VirtioNet::ScheduleRxSignalLocked(NetPair& p) {
  if (!p.rx_signal_needed || p.rx_signal_posted) return;
  p.rx_signal_posted = true;
  std::weak_ptr<VirtioNet> weak = weak_from_this();
  uint64_t generation = generation_;
  asio::post(*loop_, [weak, generation, pair = p.index] {
    auto self = weak.lock();
    if (!self) return;
    std::lock_guard lock(self->mu_);
    NetPair& p = *self->pairs_[pair];
    p.rx_signal_posted = false;
    if (generation != self->generation_ || p.rx_queue == nullptr) return;
    if (!p.rx_signal_needed) return;
    p.rx_signal_needed = false;
    if (self->active_.signal_used) self->active_.signal_used(p.rx_index());
  });
}

bool VirtioNet::FilterAcceptsLocked(std::span<const uint8_t> dest) {
  if (RxFilterAccepts(ctrl_.filter, ctrl_.mac, dest)) return true;
  rx_filtered_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

// --- Direct receive ---

void VirtioNet::RunRx(NetPair& p) {
  std::function<void(const std::string&)> mark_broken;
  bool more = false;
  {
    std::lock_guard lock(mu_);
    if (p.rx_gone || p.rx_waiting) return;  // waiting: the RX kick calls us again
    if (quiesced_) {
      p.rx_waiting = true;  // Unquiesce() calls us again
      return;
    }
    for (uint32_t frames = 0;; ++frames) {
      if (frames == kRxBudget) {
        more = true;
        break;
      }
      RxStep step = p.rx_pending_len != 0 ? PlaceLocked(p) : ReadLocked(p);
      if (step == RxStep::kNext) continue;
      if (step == RxStep::kGone) p.rx_gone = true;
      if (step == RxStep::kBroken) BreakLocked("the guest broke the receive queue", &mark_broken);
      break;
    }
    // One interrupt for the whole run (frames, and chains returned empty on the way).
    if (p.rx_signal_needed && p.rx_queue != nullptr) {
      p.rx_signal_needed = false;
      if (active_.signal_used) active_.signal_used(p.rx_index());
    }
  }
  if (mark_broken) mark_broken("virtio-net: malformed receive ring");
  if (more) {
    PostPair(p.index, &VirtioNet::RunRx);
  }
}

VirtioNet::RxStep VirtioNet::ReadLocked(NetPair& p) {
  bool live = p.rx_queue != nullptr && LinkUpLocked();
  bool mergeable = (features_ & FeatureBit(net::kFeatureMrgRxbuf)) != 0;
  // Over the rate limit: the frame stays in the tap until the limiter's wake. Its length is
  // known only once read: one byte is asked for now, the rest charged after the read.
  if (live && !rx_throttle_.Admit(1, rx_wake_)) {
    p.rx_throttled = true;
    throttled_.fetch_add(1, std::memory_order_relaxed);
    return RxStep::kThrottled;
  }
  if (live) {
    // Hold chains for the frame we expect; short (queue empty, or all of it held) is fine:
    // what does not fit spills into p.rx_buffer.
    size_t want = mergeable ? std::min(p.rx_expect, kMaxRxFrame) : 1;
    if (GatherRxLocked(p, want, mergeable) == RxVerdict::kBroken) return RxStep::kBroken;
  }
  size_t in_guest = live ? BuildRxIovLocked(p, mergeable) : 0;
  if (!live) {
    p.rx_iov.clear();
    p.rx_iov.push_back({&p.rx_header, kNetHeaderSize});
  }
  p.rx_iov.push_back({p.rx_buffer.data(), p.rx_buffer.size()});
  Result<std::optional<size_t>> read = p.backend->ReadFrame(p.rx_iov);
  if (!read) return RxStep::kGone;
  if (!read->has_value()) {
    if (live) rx_throttle_.Refund(1);  // no frame: the operation did not happen
    return RxStep::kEmpty;
  }
  size_t len = **read;
  if (!live || len < kNetHeaderSize || len >= kNetHeaderSize + in_guest + p.rx_buffer.size()) {
    // Link down, shorter than the header, or it filled even the spill buffer, which is larger
    // than any frame: cut (the tap returns the room's size for a cut frame).
    drops_.fetch_add(1, std::memory_order_relaxed);
    return RxStep::kNext;
  }
  if (!CheckRxHeader(&p.rx_header, features_)) {
    KITE_LOG_RATELIMITED(Debug, "virtio-net: RX frame with offloads the guest refused");
    drops_.fetch_add(1, std::memory_order_relaxed);
    return RxStep::kNext;
  }
  // The receive filter: the destination MAC is the payload's first bytes, wherever the read
  // put them. A refused frame's bytes stay in the held chains, which the next frame overwrites.
  uint8_t dest[6];
  size_t dest_len = std::min<size_t>(sizeof(dest), len - kNetHeaderSize);
  size_t copied = 0;
  for (size_t i = 1; i < p.rx_iov.size() && copied < dest_len; ++i) {
    size_t n = std::min(p.rx_iov[i].iov_len, dest_len - copied);
    std::memcpy(dest + copied, p.rx_iov[i].iov_base, n);
    copied += n;
  }
  if (!FilterAcceptsLocked({dest, dest_len})) return RxStep::kNext;
  rx_throttle_.Charge(len - kNetHeaderSize - std::min<size_t>(len - kNetHeaderSize, 1));
  // Expect frames like the recent ones: jump up at once, decay slowly.
  p.rx_expect = len >= p.rx_expect ? len : p.rx_expect - (p.rx_expect - len) / 16;
  p.rx_pending_len = len;
  p.rx_pending_in_guest = std::min(len - kNetHeaderSize, in_guest);
  return PlaceLocked(p);
}

size_t VirtioNet::BuildRxIovLocked(NetPair& p, bool mergeable) {
  p.rx_iov.clear();
  p.rx_iov.push_back({&p.rx_header, kNetHeaderSize});
  size_t room = 0;  // payload bytes the chains take (the first chain's header slot excluded)
  size_t want = std::min(p.rx_expect, kMaxRxFrame) - kNetHeaderSize;
  for (size_t i = 0; i < p.rx_chains.size(); ++i) {
    std::span<const iovec> pieces = p.rx_chains[i].writable();
    if (p.rx_iov.size() + pieces.size() + 1 > IOV_MAX) break;  // + 1: the spill buffer
    size_t skip = i == 0 ? kNetHeaderSize : 0;  // the first chain's header comes from p.rx_header
    for (const iovec& piece : pieces) {
      size_t cut = std::min(skip, piece.iov_len);
      skip -= cut;
      if (piece.iov_len == cut) continue;
      p.rx_iov.push_back({static_cast<uint8_t*>(piece.iov_base) + cut, piece.iov_len - cut});
    }
    room += p.rx_chains[i].writable_bytes() - (i == 0 ? kNetHeaderSize : 0);
    if (!mergeable || room >= want) break;
  }
  return room;
}

VirtioNet::RxStep VirtioNet::PlaceLocked(NetPair& p) {
  size_t len = p.rx_pending_len;
  if (p.rx_queue == nullptr) {  // broken, or its pair no longer in use, while the frame waited
    p.rx_pending_len = 0;
    drops_.fetch_add(1, std::memory_order_relaxed);
    return RxStep::kNext;
  }
  size_t spilled = len - kNetHeaderSize - p.rx_pending_in_guest;
  bool mergeable = (features_ & FeatureBit(net::kFeatureMrgRxbuf)) != 0;
  // Read straight into the guest. A frame with no payload (only the header) takes no room in
  // the held chains, so it can arrive while none is held: it waits for one like any other.
  if (spilled == 0 && !p.rx_chains.empty()) return CompleteRxLocked(p, mergeable);
  // The rest of the frame is in p.rx_buffer: it needs more room. Without MRG_RXBUF a frame that
  // spilled past its chain does not fit (G24): dropped, the chain stays for the next frame.
  bool overflowed_chain = !mergeable && p.rx_pending_in_guest != 0;
  RxVerdict gathered = overflowed_chain ? RxVerdict::kDropped : GatherRxLocked(p, len, mergeable);
  if (gathered == RxVerdict::kDelivered && !mergeable &&
      p.rx_chains.front().writable_bytes() < len) {
    gathered = RxVerdict::kDropped;
  }
  switch (gathered) {
    case RxVerdict::kBroken:
      p.rx_pending_len = 0;
      return RxStep::kBroken;
    case RxVerdict::kNoRoom:
      p.rx_waiting = true;  // the chains holding the head stay held, unreturned
      return RxStep::kWait;
    case RxVerdict::kDropped:
      KITE_LOG_RATELIMITED(Debug, "virtio-net: %zu-byte frame dropped: RX buffers too small (G24)",
                           len);
      drops_.fetch_add(1, std::memory_order_relaxed);
      p.rx_pending_len = 0;
      return RxStep::kNext;
    case RxVerdict::kDelivered:
      break;
  }
  // Copy the spilled bytes where the frame's byte stream continues: after the in-place part.
  size_t skip = kNetHeaderSize + p.rx_pending_in_guest;
  const uint8_t* src = p.rx_buffer.data();
  for (size_t i = 0; spilled != 0; ++i) {
    ChainWriter writer(p.rx_chains[i]);
    size_t cut = std::min<size_t>(skip, p.rx_chains[i].writable_bytes());
    skip -= cut;
    (void)writer.Skip(cut);
    size_t n = std::min(writer.remaining(), spilled);
    (void)writer.Write(src, n);
    src += n;
    spilled -= n;
  }
  rx_copied_.fetch_add(1, std::memory_order_relaxed);
  return CompleteRxLocked(p, mergeable);
}

VirtioNet::RxStep VirtioNet::CompleteRxLocked(NetPair& p, bool mergeable) {
  // The frame's bytes fill the held chains in order, each completely but the last.
  size_t len = p.rx_pending_len;
  p.rx_pending_len = 0;
  size_t chains = 1;
  if (mergeable) {
    for (size_t room = p.rx_chains[0].writable_bytes(); room < len; ++chains) {
      room += p.rx_chains[chains].writable_bytes();
    }
  }
  p.rx_header.num_buffers = static_cast<uint16_t>(chains);
  (void)ChainWriter(p.rx_chains.front()).WriteObj(p.rx_header);  // held chains have room for it
  size_t left = len;
  for (size_t i = 0; i < chains; ++i) {
    DescriptorChain& chain = p.rx_chains.front();
    size_t n = std::min<size_t>(chain.writable_bytes(), left);
    left -= n;
    p.rx_queue->PushUsed(chain.head(), static_cast<uint32_t>(n));
    p.rx_room -= chain.writable_bytes();
    p.rx_spare.push_back(std::move(chain));
    p.rx_chains.pop_front();
  }
  p.rx_signal_needed = true;
  requests_.fetch_add(1, std::memory_order_relaxed);
  rx_bytes_.fetch_add(len - kNetHeaderSize, std::memory_order_relaxed);
  return RxStep::kNext;
}

}  // namespace kite::virtio
