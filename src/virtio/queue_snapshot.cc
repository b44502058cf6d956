// Queue snapshot support: Save/Restore as QueueState (virtio_state.h) and Unpop, which gives
// popped-but-unused chains back to the available ring (virtio-net's receive buffers, a
// transmit chain the backend did not take) so that a quiesced device holds nothing.
//
// Restore re-runs the ring checks of Activate (G12, G13) and checks the indices (BAD_INPUTS
// F13): nothing is in flight in a saved queue, so every chain consumed from the available ring
// was returned (next_avail == next_used), and used->idx in guest memory, which only the device
// writes, must equal next_used — otherwise the memory and the state do not belong together and
// the guest would see used entries twice or never ("id 0 is not a head"). avail->idx belongs
// to the guest and is not checked here: a bad one breaks the queue at the first Pop (G3), the
// guest's own error.
//
// Threads: like the queue's other setup calls (queue.h); Save may run on any thread once the
// device is quiesced.
#include <string>

#include "virtio/queue.h"

namespace kite::virtio {
namespace {

std::string U16(uint16_t v) {
  return std::to_string(v);
}

}  // namespace

Result<QueueState> Queue::Save() const {
  if (in_flight_ != 0) {
    return Err("queue has " + U16(in_flight_) + " chains in flight (quiesce the device first)");
  }
  QueueState s;
  s.max_size = max_size_;
  s.size = size_;
  s.ready = ready_;
  s.desc_addr = desc_addr_;
  s.avail_addr = avail_addr_;
  s.used_addr = used_addr_;
  s.next_avail = next_avail_;
  s.next_used = next_used_;
  s.signalled_used = signalled_used_;
  s.signalled_used_valid = signalled_used_valid_;
  return s;
}

Result<void> Queue::Restore(const QueueState& s, const GuestMemory* memory, bool event_idx,
                            bool indirect) {
  if (s.max_size != max_size_) {
    return Err("saved queue has maximum size " + U16(s.max_size) + ", this one " + U16(max_size_));
  }
  if (ready_ || in_flight_ != 0) return Err("queue restored over an active queue");
  if (!s.ready) {
    // Never activated (or disabled again): the driver may have written any size and address
    // while setting it up, but no index can have moved. The rings are not touched.
    if (s.next_avail != 0 || s.next_used != 0 || s.signalled_used != 0 || s.signalled_used_valid) {
      return Err("a queue that is not ready has non-zero indices");
    }
    size_ = s.size;
    desc_addr_ = s.desc_addr;
    avail_addr_ = s.avail_addr;
    used_addr_ = s.used_addr;
    next_avail_ = next_used_ = signalled_used_ = 0;
    signalled_used_valid_ = false;
    return {};
  }
  Result<RingHosts> hosts = CheckLayout(memory, s.size, s.desc_addr, s.avail_addr, s.used_addr);
  if (!hosts) return std::move(hosts).error();
  if (s.next_avail != s.next_used) {
    return Err("next_avail " + U16(s.next_avail) + " != next_used " + U16(s.next_used) +
               " with nothing in flight");
  }
  Result<uint16_t> used_idx = memory->ReadObj<uint16_t>(GuestAddr(s.used_addr + 2));
  if (!used_idx) return std::move(used_idx).error();  // cannot fail: inside RAM (CheckLayout)
  if (*used_idx != s.next_used) {
    return Err("used->idx in guest memory is " + U16(*used_idx) + ", the saved next_used " +
               U16(s.next_used) + " (memory and state do not match)");
  }
  size_ = s.size;
  desc_addr_ = s.desc_addr;
  avail_addr_ = s.avail_addr;
  used_addr_ = s.used_addr;
  MakeReady(memory, *hosts, event_idx, indirect);
  next_avail_ = s.next_avail;
  next_used_ = s.next_used;
  signalled_used_ = s.signalled_used;
  signalled_used_valid_ = s.signalled_used_valid;
  return {};
}

Result<void> Queue::Unpop(uint16_t n) {
  if (!ready_) return Err("Unpop on a queue that is not ready");
  if (n > in_flight_)
    return Err("Unpop of " + U16(n) + " chains, " + U16(in_flight_) + " in flight");
  // Check all n first: nothing changes unless every one of the last n slots holds a chain that
  // is still in flight.
  for (uint16_t i = 1; i <= n; ++i) {
    uint16_t head = popped_[static_cast<uint16_t>(next_avail_ - i) & (size_ - 1)];
    if (head == kReturned || head_writable_[head] == kNotInFlight) {
      return Err("Unpop: available entry " + U16(static_cast<uint16_t>(next_avail_ - i)) +
                 " was already returned");
    }
  }
  for (uint16_t i = 1; i <= n; ++i) {
    uint16_t slot = static_cast<uint16_t>(next_avail_ - i) & (size_ - 1);
    head_writable_[popped_[slot]] = kNotInFlight;
    popped_[slot] = kReturned;
  }
  in_flight_ -= n;
  next_avail_ -= n;
  return {};
}

}  // namespace kite::virtio
