// Queue: the device side of one split virtqueue (virtio 1.2 section 2.7), with indirect
// descriptors and event index. Every index, address and length the guest supplies is checked
// before use (BAD_INPUTS.md G1-G15):
//
//   * ring addresses are checked once, when the queue is activated (alignment, inside one
//     guest RAM region, no overlap between the three areas) — G12, G13;
//   * a popped chain is walked completely before the device sees any of it: head and next
//     indices in range, at most `size` hops (loops end there), each buffer inside guest RAM
//     (split per memory region, never a host pointer across regions), lengths summed with
//     overflow checks and capped, indirect tables well formed and never nested — G1, G2, G6-G11;
//   * the available ring may not run ahead of the used ring by more than `size`, a head index
//     must be < size, and a head may not be made available while it is still in flight — G3-G5.
//
// Policy: a malformed *chain* (bad descriptor, bad buffer) is returned to the guest at once with
// used length 0 and counted in `stats().bad_chains`; the device never sees it. A malformed
// *ring* (G3, G4, G5) breaks the queue: Pop() returns kBroken from then on and the device marks
// itself DEVICE_NEEDS_RESET. Zero-length descriptors (G7) are skipped: they contribute no
// buffer and are not an error.
//
// The queue keeps a copy of nothing the guest can change later: a DescriptorChain holds host
// iovecs computed from the descriptors as they were read once (G15).
//
// Threads: one thread at a time (the event loop). Setup (the Set* calls) happens on a vCPU
// thread under the transport's lock while the queue is not ready.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "virtio/virtio_spec.h"
#include "virtio/virtio_state.h"
#include "vmm/guest_memory.h"

namespace kite::virtio {

// Limits that bound the work and memory one chain may cost.
inline constexpr uint32_t kMaxChainBytes = 64u << 20;  // total of readable + writable bytes (G10)
inline constexpr uint32_t kMaxChainSegments = 1024;    // iovecs after splitting per region

// A validated descriptor chain: its head index and its buffers as host iovecs, the
// driver-to-device ("readable") ones first, then the device-to-driver ("writable") ones, as the
// spec requires of a chain (a readable descriptor after a writable one makes the chain bad).
class DescriptorChain {
 public:
  uint16_t head() const { return head_; }
  std::span<const iovec> readable() const { return {iov_.data(), readable_count_}; }
  std::span<const iovec> writable() const {
    return {iov_.data() + readable_count_, iov_.size() - readable_count_};
  }
  uint32_t readable_bytes() const { return readable_bytes_; }
  uint32_t writable_bytes() const { return writable_bytes_; }

 private:
  friend class Queue;
  void Clear() {
    iov_.clear();
    readable_count_ = 0;
    readable_bytes_ = writable_bytes_ = 0;
  }
  uint16_t head_ = 0;
  std::vector<iovec> iov_;  // reused between pops: no allocation per chain once warm
  size_t readable_count_ = 0;
  uint32_t readable_bytes_ = 0;
  uint32_t writable_bytes_ = 0;
};

// Reads the readable part of a chain as one byte stream.
class ChainReader {
 public:
  explicit ChainReader(const DescriptorChain& chain) : iov_(chain.readable()) {}
  explicit ChainReader(std::span<const iovec> iov) : iov_(iov) {}
  // Copies exactly `len` bytes; false (and nothing consumed) when fewer remain.
  bool Read(void* dst, size_t len);
  template <typename T>
  bool ReadObj(T* out) {
    return Read(out, sizeof(T));
  }
  // Consumes `len` bytes without copying, appending iovecs that cover them to `out` (for
  // zero-copy I/O). False (nothing consumed, `out` unchanged) when fewer remain.
  bool Take(size_t len, std::vector<iovec>* out);
  bool Skip(size_t len);
  size_t remaining() const;

 private:
  std::span<const iovec> iov_;
  size_t index_ = 0;   // current iovec
  size_t offset_ = 0;  // into iov_[index_]
};

// Writes the writable part of a chain as one byte stream.
class ChainWriter {
 public:
  explicit ChainWriter(const DescriptorChain& chain) : iov_(chain.writable()) {}
  explicit ChainWriter(std::span<const iovec> iov) : iov_(iov) {}
  // Copies exactly `len` bytes; false (nothing written) when less room remains.
  bool Write(const void* src, size_t len);
  template <typename T>
  bool WriteObj(const T& value) {
    return Write(&value, sizeof(T));
  }
  // Like ChainReader::Take, for the device to fill in place.
  bool Take(size_t len, std::vector<iovec>* out);
  bool Skip(size_t len);
  size_t remaining() const;
  size_t written() const { return written_; }

 private:
  std::span<const iovec> iov_;
  size_t index_ = 0;
  size_t offset_ = 0;
  size_t written_ = 0;
};

struct QueueStats {
  uint64_t chains = 0;         // chains handed to the device
  uint64_t bad_chains = 0;     // chains returned with used length 0 (G1, G2, G6-G11)
  uint64_t notifications = 0;  // Pop() calls that found work after a kick (informational)
  uint64_t interrupts = 0;     // NeedsInterrupt() == true
  uint64_t suppressed = 0;     // NeedsInterrupt() == false thanks to flags or event index
};

class Queue {
 public:
  explicit Queue(uint16_t max_size);

  // --- Setup by the transport (driver writes QueueNum, QueueDesc, ... while not ready). ---
  uint16_t max_size() const { return max_size_; }
  uint16_t size() const { return size_; }
  void set_size(uint16_t size) { size_ = size; }
  void set_desc_addr(uint64_t addr) { desc_addr_ = addr; }
  void set_avail_addr(uint64_t addr) { avail_addr_ = addr; }
  void set_used_addr(uint64_t addr) { used_addr_ = addr; }
  uint64_t desc_addr() const { return desc_addr_; }
  uint64_t avail_addr() const { return avail_addr_; }
  uint64_t used_addr() const { return used_addr_; }
  bool ready() const { return ready_; }
  // The cap on one chain's bytes (default kMaxChainBytes, G10). A device whose chains only
  // name guest memory and are never buffered (the balloon's free page reports) may raise it.
  void set_max_chain_bytes(uint32_t bytes) { max_chain_bytes_ = bytes; }

  // QueueReady = 1: checks size (power of two, 1..max_size: G13) and the three ring areas
  // (alignment 16/2/4, inside one RAM region each, no overlap: G12) and makes the queue ready.
  // The error says what was wrong; the transport then keeps the queue not ready.
  Result<void> Activate(const GuestMemory* memory, bool event_idx, bool indirect);
  // Back to the reset state: not ready, size = max_size, addresses 0, indices 0, stats kept.
  void Reset();

  // --- Snapshot (queue_snapshot.cc). On the thread that owns the queue, or on any thread once
  // the device is quiesced (nothing else touches the queue then). ---
  // The queue as plain data. An error while a chain is in flight (quiesce the device first).
  Result<QueueState> Save() const;
  // Makes the queue what `state` describes. A ready queue goes through every check of
  // Activate (size, alignment, inside RAM, no overlap) and the index checks (BAD_INPUTS F13):
  // next_avail == next_used and used->idx in guest memory == next_used. A queue that was not
  // ready must have zero indices; its rings are not touched (they may not exist). On error
  // nothing changed.
  Result<void> Restore(const QueueState& state, const GuestMemory* memory, bool event_idx,
                       bool indirect);
  // Gives back the last `n` chains Pop() returned that are still in flight (not used): their
  // heads are no longer in flight and the next Pop() returns them again (next_avail rewinds
  // by n). Refused (nothing changed) unless the last n available entries consumed are exactly
  // such chains (a malformed chain returned on the way, or a chain already used, is in the way).
  Result<void> Unpop(uint16_t n);

  // --- Processing, on the event loop. ---
  enum class PopResult { kChain, kEmpty, kBroken };
  // Pops the next valid chain into `chain` (its storage is reused). Malformed chains are
  // returned to the guest with used length 0 on the way and never reach the caller. On
  // kEmpty with event index negotiated, avail_event has been set to the next index we will
  // look at (and the ring rechecked after a fence), so the driver's next kick is not lost.
  PopResult Pop(DescriptorChain* chain);
  // Returns a chain to the driver with `len` bytes written to its writable part (len is
  // clamped to the chain's writable size). Completions may come in any order.
  void PushUsed(uint16_t head, uint32_t len);
  // Whether the driver asked for an interrupt for the used entries added since the last call
  // (VRING_AVAIL_F_NO_INTERRUPT, or used_event with event index). Call once after a batch.
  bool NeedsInterrupt();
  // Chains popped and not yet returned through PushUsed.
  uint16_t in_flight() const { return in_flight_; }
  bool broken() const { return broken_; }
  const QueueStats& stats() const { return stats_; }

 private:
  const uint16_t max_size_;
  uint16_t size_;
  uint64_t desc_addr_ = 0;
  uint64_t avail_addr_ = 0;
  uint64_t used_addr_ = 0;
  bool ready_ = false;
  bool broken_ = false;
  bool event_idx_ = false;
  bool indirect_ = false;
  const GuestMemory* memory_ = nullptr;
  uint32_t max_chain_bytes_ = kMaxChainBytes;

  uint16_t next_avail_ = 0;      // the driver's avail index we have consumed up to
  uint16_t next_used_ = 0;       // our used index
  uint16_t signalled_used_ = 0;  // used index at the last interrupt decision (event index)
  bool signalled_used_valid_ = false;
  uint16_t in_flight_ = 0;
  bool last_pop_empty_ = true;  // for stats_.notifications
  // Host views of the three ring areas, checked once in Activate().
  uint8_t* desc_host_ = nullptr;
  uint8_t* avail_host_ = nullptr;
  uint8_t* used_host_ = nullptr;
  // G4: per head index, kNotInFlight or the in-flight chain's writable bytes (to clamp used len).
  static constexpr uint32_t kNotInFlight = UINT32_MAX;
  std::vector<uint32_t> head_writable_;
  // For Unpop: per avail slot (index & (size - 1)), the head popped from it, or kReturned when
  // the chain there was malformed and returned at once.
  static constexpr uint16_t kReturned = UINT16_MAX;
  std::vector<uint16_t> popped_;
  QueueStats stats_;

  struct RingHosts {
    uint8_t* desc;
    uint8_t* avail;
    uint8_t* used;
  };
  // G12, G13: the checks of Activate for a size and three ring addresses.
  Result<RingHosts> CheckLayout(const GuestMemory* memory, uint16_t size, uint64_t desc,
                                uint64_t avail, uint64_t used) const;
  void MakeReady(const GuestMemory* memory, const RingHosts& hosts, bool event_idx, bool indirect);

  bool RearmAvailEvent();
  PopResult Break(const std::string& why);
  void WriteUsed(uint16_t head, uint32_t len);
  const char* WalkChain(uint16_t head, DescriptorChain* chain);
  const char* WalkIndirect(const Descriptor& desc, DescriptorChain* chain);
  const char* AddBuffer(const Descriptor& desc, DescriptorChain* chain);
  const MemoryRegion* FindRegion(uint64_t addr) const;
};

}  // namespace kite::virtio
