// VirtioNet's receive path (virtio 1.2 section 5.1.6.3 and 5.1.6.4): frames from the backend
// into the guest's receive queue. See net.cc for the device as a whole.
//
// A frame arrives from the backend (with its vnet header when the backend has one, otherwise
// the device puts a zeroed header in front). The header is checked against the negotiated
// GUEST_* offloads and the frame dropped when it asks for one the driver did not accept.
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
//
// Interrupts: frames arrive one by one from the backend; the used-buffer interrupt is raised
// once per batch by a continuation posted to the loop.
#include <asio/post.hpp>
#include <cstring>

#include "base/log.h"
#include "virtio/net_device.h"

namespace kite::virtio {

bool VirtioNet::OnFrame(std::span<const uint8_t> frame) {
  std::function<void(const std::string&)> mark_broken;
  RxVerdict verdict;
  {
    std::lock_guard lock(mu_);
    if (rx_queue_ == nullptr) {  // not live, RX queue not enabled, or broken: link is "down"
      drops_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    net::Header hdr{};
    std::span<const uint8_t> payload = frame;
    if (backend_->has_vnet_header()) {
      if (frame.size() < kNetHeaderSize) {
        drops_.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
      std::memcpy(&hdr, frame.data(), kNetHeaderSize);
      payload = frame.subspan(kNetHeaderSize);
    }
    if (!CheckRxHeader(&hdr, features_)) {
      KITE_LOG_RATELIMITED(Debug, "virtio-net: RX frame with offloads the guest refused");
      drops_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    verdict = DeliverLocked(hdr, payload);
    switch (verdict) {
      case RxVerdict::kDelivered:
        requests_.fetch_add(1, std::memory_order_relaxed);
        rx_bytes_.fetch_add(payload.size(), std::memory_order_relaxed);
        break;
      case RxVerdict::kDropped:
        drops_.fetch_add(1, std::memory_order_relaxed);
        break;
      case RxVerdict::kNoRoom:
        rx_waiting_ = true;
        break;
      case RxVerdict::kBroken:
        BreakLocked("the guest broke the receive queue", &mark_broken);
        break;
    }
    // Delivered frames, and chains returned with length 0 on the way, want an interrupt.
    if (verdict != RxVerdict::kBroken) ScheduleRxSignalLocked();
  }
  if (mark_broken) mark_broken("virtio-net: malformed receive ring");
  return verdict != RxVerdict::kNoRoom;
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

}  // namespace kite::virtio
