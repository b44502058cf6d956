// Split virtqueue, device side (virtio 1.2 section 2.7): ring setup checks, popping and
// validating descriptor chains (direct and indirect), the used ring, interrupt suppression
// (VRING_AVAIL_F_NO_INTERRUPT and event index), and the byte-stream reader/writer over a chain.
// See queue.h for the policy on malformed chains and rings (BAD_INPUTS.md G1-G15).
//
// Threads: Activate/Reset and the setters on a vCPU thread under the transport's lock while the
// queue is not ready; Pop/PushUsed/NeedsInterrupt on the event loop. The rings themselves are
// shared with the guest's vCPUs at all times, so every ring field is read exactly once into a
// local before it is checked, and the fences below order our accesses against the driver's.
#include "virtio/queue.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "base/log.h"
#include "base/units.h"

namespace kite::virtio {
namespace {

// Ring layout (2.7.6, 2.7.8): avail = {flags, idx, ring[size], used_event},
// used = {flags, idx, ring[size] of UsedElement, avail_event}.
constexpr uint64_t kRingHeader = 4;
uint64_t DescTableBytes(uint16_t size) {
  return 16ull * size;
}
uint64_t AvailRingBytes(uint16_t size) {
  return 6ull + 2ull * size;
}
uint64_t UsedRingBytes(uint16_t size) {
  return 6ull + 8ull * size;
}

// Ring fields are accessed with memcpy: the host mapping of a region need not be aligned the way
// the guest address is (memory from FromRegions), and memcpy of 2 or 4 bytes is one load/store.
uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
void Store16(uint8_t* p, uint16_t v) {
  std::memcpy(p, &v, sizeof(v));
}

bool Overlaps(uint64_t a, uint64_t a_len, uint64_t b, uint64_t b_len) {
  return a < b + b_len && b < a + a_len;  // no overflow: each range was checked inside RAM
}

// Whether at least `len` bytes remain in `iov` from position (index, offset).
bool HasAtLeast(std::span<const iovec> iov, size_t index, size_t offset, size_t len) {
  for (; index < iov.size(); ++index, offset = 0) {
    size_t here = iov[index].iov_len - offset;
    if (here >= len) return true;
    len -= here;
  }
  return len == 0;
}

size_t Remaining(std::span<const iovec> iov, size_t index, size_t offset) {
  size_t total = 0;
  for (; index < iov.size(); ++index, offset = 0) total += iov[index].iov_len - offset;
  return total;
}

// Advances (index, offset) by `len` bytes, which the caller checked are there, calling
// fn(host pointer, n) for each non-empty piece.
template <typename Fn>
void Consume(std::span<const iovec> iov, size_t* index, size_t* offset, size_t len, Fn&& fn) {
  while (len > 0) {
    const iovec& v = iov[*index];
    size_t n = std::min(len, v.iov_len - *offset);
    if (n > 0) fn(static_cast<uint8_t*>(v.iov_base) + *offset, n);
    *offset += n;
    len -= n;
    if (*offset == v.iov_len) {
      ++*index;
      *offset = 0;
    }
  }
}

}  // namespace

Queue::Queue(uint16_t max_size) : max_size_(max_size), size_(max_size) {}

Result<void> Queue::Activate(const GuestMemory* memory, bool event_idx, bool indirect) {
  Result<RingHosts> hosts = CheckLayout(memory, size_, desc_addr_, avail_addr_, used_addr_);
  if (!hosts) return std::move(hosts).error();
  MakeReady(memory, *hosts, event_idx, indirect);
  signalled_used_ = next_used_;
  signalled_used_valid_ = false;  // the first decision always interrupts
  return {};
}

Result<Queue::RingHosts> Queue::CheckLayout(const GuestMemory* memory, uint16_t size, uint64_t desc,
                                            uint64_t avail, uint64_t used) const {
  // G13: a size of 0 or not a power of two, or above the maximum, is refused before anything
  // divides or masks by it.
  if (size == 0 || (size & (size - 1)) != 0 || size > max_size_) {
    return Err("queue size " + std::to_string(size) + " is not a power of two in 1.." +
               std::to_string(max_size_));
  }
  if (memory == nullptr) return Err("queue activated without guest memory");
  // G12 (2.7 table "Virtqueue Part / Alignment / Size"): each area aligned and inside one RAM
  // region; then they may not overlap one another.
  struct Area {
    const char* name;
    uint64_t addr;
    uint64_t align;
    uint64_t len;
  };
  const Area areas[] = {{"descriptor table", desc, 16, DescTableBytes(size)},
                        {"available ring", avail, 2, AvailRingBytes(size)},
                        {"used ring", used, 4, UsedRingBytes(size)}};
  uint8_t* host[3];
  for (int i = 0; i < 3; ++i) {
    const Area& a = areas[i];
    if (a.addr % a.align != 0) {
      return Err(std::string(a.name) + " at 0x" + ToHex(a.addr) + " is not " +
                 std::to_string(a.align) + "-byte aligned");
    }
    std::span<uint8_t> slice = memory->Slice(GuestAddr(a.addr), a.len);
    if (slice.empty()) {
      return Err(std::string(a.name) + " [0x" + ToHex(a.addr) + ", +" + std::to_string(a.len) +
                 ") is not inside guest RAM");
    }
    host[i] = slice.data();
  }
  for (int i = 0; i < 3; ++i) {
    for (int j = i + 1; j < 3; ++j) {
      if (Overlaps(areas[i].addr, areas[i].len, areas[j].addr, areas[j].len)) {
        return Err(std::string(areas[i].name) + " overlaps the " + areas[j].name);
      }
    }
  }
  return RingHosts{host[0], host[1], host[2]};
}

// Keeps the host views of the rings (checked by CheckLayout) and makes the queue ready with
// nothing in flight.
void Queue::MakeReady(const GuestMemory* memory, const RingHosts& hosts, bool event_idx,
                      bool indirect) {
  memory_ = memory;
  desc_host_ = hosts.desc;
  avail_host_ = hosts.avail;
  used_host_ = hosts.used;
  event_idx_ = event_idx;
  indirect_ = indirect;
  head_writable_.assign(size_, kNotInFlight);
  popped_.assign(size_, kReturned);
  in_flight_ = 0;
  broken_ = false;
  last_pop_empty_ = true;
  ready_ = true;
}

void Queue::Reset() {
  size_ = max_size_;
  desc_addr_ = avail_addr_ = used_addr_ = 0;
  ready_ = broken_ = event_idx_ = indirect_ = false;
  memory_ = nullptr;
  desc_host_ = avail_host_ = used_host_ = nullptr;
  next_avail_ = next_used_ = signalled_used_ = 0;
  signalled_used_valid_ = false;
  in_flight_ = 0;
  head_writable_.clear();
  popped_.clear();
  last_pop_empty_ = true;
}

Queue::PopResult Queue::Pop(DescriptorChain* chain) {
  if (broken_) return PopResult::kBroken;
  if (!ready_) return PopResult::kEmpty;
  // Each pass consumes one avail entry or re-arms the event index. A driver that keeps
  // publishing malformed chains while we walk them cannot keep us here: after `size` + 1 passes
  // we return, and the next kick (or the device's next batch) continues (G34).
  for (uint32_t pass = 0; pass <= size_; ++pass) {
    uint16_t avail_idx = Load16(avail_host_ + 2);
    // 2.7.13 (supplying buffers): read avail->idx before the ring entries it publishes (pairs with
    // the driver's write barrier between filling ring[] and bumping idx).
    std::atomic_thread_fence(std::memory_order_acquire);
    uint16_t pending = static_cast<uint16_t>(avail_idx - next_avail_);
    if (pending == 0) {
      if (!event_idx_ || !RearmAvailEvent()) {
        last_pop_empty_ = true;
        return PopResult::kEmpty;
      }
      continue;  // the driver added work while we re-armed: look again
    }
    // G3: the driver can have at most `size` chains outstanding (popped and not yet used, plus
    // published and not yet popped); more means avail->idx is garbage.
    if (uint32_t{pending} + in_flight_ > size_) {
      return Break("avail->idx " + std::to_string(avail_idx) + " is " + std::to_string(pending) +
                   " ahead with " + std::to_string(in_flight_) + " in flight, queue size " +
                   std::to_string(size_));
    }
    uint16_t head = Load16(avail_host_ + kRingHeader + 2u * (next_avail_ & (size_ - 1)));
    if (head >= size_) {  // G5
      return Break("head index " + std::to_string(head) + " >= queue size");
    }
    if (head_writable_[head] != kNotInFlight) {  // G4
      return Break("head index " + std::to_string(head) + " made available while in flight");
    }
    uint16_t slot = next_avail_ & (size_ - 1);
    ++next_avail_;
    if (const char* why = WalkChain(head, chain)) {
      popped_[slot] = kReturned;
      ++stats_.bad_chains;
      KITE_LOG_RATELIMITED(Warn, "virtqueue: chain at head %u returned unused: %s", head, why);
      WriteUsed(head, 0);
      continue;
    }
    head_writable_[head] = chain->writable_bytes_;
    popped_[slot] = head;
    ++in_flight_;
    ++stats_.chains;
    if (last_pop_empty_) ++stats_.notifications;
    last_pop_empty_ = false;
    return PopResult::kChain;
  }
  return PopResult::kEmpty;
}

bool Queue::RearmAvailEvent() {
  // 2.7.10 (available buffer notification suppression, event index): ask the driver to kick when it
  // publishes entry `next_avail_`.
  Store16(used_host_ + kRingHeader + 8u * size_, next_avail_);
  // Full fence: the avail_event store must be visible before we read avail->idx again, or the
  // driver may read the old avail_event, skip its kick, and we sleep on a non-empty ring.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return Load16(avail_host_ + 2) != next_avail_;
}

Queue::PopResult Queue::Break(const std::string& why) {
  broken_ = true;
  KITE_LOG_RATELIMITED(Warn, "virtqueue broken: %s", why.c_str());
  return PopResult::kBroken;
}

void Queue::PushUsed(uint16_t head, uint32_t len) {
  if (!ready_ || head >= size_ || head_writable_[head] == kNotInFlight) {
    // A device bug (double completion, or a completion after Reset): never touch the ring.
    KITE_LOG_RATELIMITED(Warn, "virtqueue: PushUsed of head %u that is not in flight", head);
    return;
  }
  uint32_t clamped = len < head_writable_[head] ? len : head_writable_[head];
  head_writable_[head] = kNotInFlight;
  --in_flight_;
  WriteUsed(head, clamped);
}

void Queue::WriteUsed(uint16_t head, uint32_t len) {
  UsedElement elem{head, len};
  std::memcpy(used_host_ + kRingHeader + 8u * (next_used_ & (size_ - 1)), &elem, sizeof(elem));
  ++next_used_;
  // 2.7.8 (used ring): the used element (and the buffer contents the device wrote before it) must
  // be visible before the driver can see the new used->idx.
  std::atomic_thread_fence(std::memory_order_release);
  Store16(used_host_ + 2, next_used_);
}

bool Queue::NeedsInterrupt() {
  if (!ready_) return false;
  if (signalled_used_ == next_used_) return false;  // nothing new since the last decision
  // Full fence: our used->idx store must be visible before we read the driver's suppression
  // fields; otherwise the driver might re-enable interrupts after seeing the old idx while we
  // read the old "suppressed" value, and the completion would never be signalled.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool need;
  if (event_idx_) {
    // 2.7.7 (used buffer notification suppression): interrupt when used->idx passes used_event,
    // i.e. the vring_need_event() test (new_idx - event - 1) < (new_idx - old_idx) in 16-bit
    // arithmetic, which handles wrap.
    uint16_t used_event = Load16(avail_host_ + kRingHeader + 2u * size_);
    uint16_t old_idx = signalled_used_;
    need = !signalled_used_valid_ || static_cast<uint16_t>(next_used_ - used_event - 1) <
                                         static_cast<uint16_t>(next_used_ - old_idx);
  } else {
    need = (Load16(avail_host_) & kAvailFlagNoInterrupt) == 0;
  }
  signalled_used_ = next_used_;
  signalled_used_valid_ = true;
  ++(need ? stats_.interrupts : stats_.suppressed);
  return need;
}

// --- Chain validation (G1, G2, G6-G11). Returns nullptr when valid, else the reason. ---

const char* Queue::WalkChain(uint16_t head, DescriptorChain* chain) {
  chain->Clear();
  chain->head_ = head;
  uint16_t index = head;
  for (uint32_t hops = 0;; ++hops) {
    // G1: a chain has at most `size` descriptors (2.7.5.2), so one more hop means a loop.
    if (hops == size_) return "chain longer than the queue size (a loop?)";
    Descriptor desc;  // read once: the guest may rewrite it after we looked (G15)
    std::memcpy(&desc, desc_host_ + sizeof(Descriptor) * index, sizeof(desc));
    if (desc.flags & kDescFlagIndirect) return WalkIndirect(desc, chain);
    if (const char* why = AddBuffer(desc, chain)) return why;
    if (!(desc.flags & kDescFlagNext)) return nullptr;
    if (desc.next >= size_) return "next index >= queue size";  // G2
    index = desc.next;
  }
}

const char* Queue::WalkIndirect(const Descriptor& desc, DescriptorChain* chain) {
  // G11 (2.7.5.3, indirect descriptors): only when negotiated; "A driver MUST NOT set both
  // VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT"; the table is a whole number of descriptors.
  if (!indirect_) return "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
  if (desc.flags & kDescFlagNext) return "indirect descriptor with NEXT";
  if (desc.len == 0 || desc.len % sizeof(Descriptor) != 0) {
    return "indirect table length not a non-zero multiple of 16";
  }
  std::span<const uint8_t> table = memory_->Slice(GuestAddr(desc.addr), desc.len);
  if (table.empty()) return "indirect table outside guest RAM";
  uint32_t entries = desc.len / sizeof(Descriptor);
  uint32_t max_hops = std::min(entries, kMaxChainSegments);
  uint32_t index = 0;  // 2.7.5.3: the chain starts at entry 0 of the table
  for (uint32_t hops = 0;; ++hops) {
    if (hops == max_hops) return "indirect chain longer than its table (a loop?)";
    Descriptor d;
    std::memcpy(&d, table.data() + sizeof(Descriptor) * index, sizeof(d));
    // 2.7.5.3: an indirect table holds plain descriptors; a nested table is refused (G11).
    if (d.flags & kDescFlagIndirect) return "indirect descriptor inside an indirect table";
    if (const char* why = AddBuffer(d, chain)) return why;
    if (!(d.flags & kDescFlagNext)) return nullptr;
    if (d.next >= entries) return "indirect next index outside the table";
    index = d.next;
  }
}

const MemoryRegion* Queue::FindRegion(uint64_t addr) const {
  for (const MemoryRegion& r : memory_->regions()) {
    if (addr >= r.guest_base.value && addr - r.guest_base.value < r.size) return &r;
  }
  return nullptr;
}

const char* Queue::AddBuffer(const Descriptor& desc, DescriptorChain* chain) {
  if (desc.len == 0) return nullptr;  // G7: a zero-length buffer holds nothing; skipped
  bool writable = desc.flags & kDescFlagWrite;
  // 2.7.4 (message framing): "The driver MUST place any device-writable descriptor elements after
  // any device-readable descriptor elements."
  if (!writable && chain->iov_.size() > chain->readable_count_) {
    return "readable descriptor after a writable one";
  }
  if (desc.addr + desc.len < desc.addr) return "buffer address + length overflows";  // G6
  uint64_t total = uint64_t{chain->readable_bytes_} + chain->writable_bytes_ + desc.len;
  if (total > max_chain_bytes_) return "chain larger than the queue's cap";  // G6, G10
  // G8/G9: every byte inside RAM; a buffer is split where one region ends and the next begins
  // at the following guest address, never one host range across two mappings.
  uint64_t addr = desc.addr;
  uint64_t left = desc.len;
  while (left > 0) {
    const MemoryRegion* r = FindRegion(addr);
    if (r == nullptr) return "buffer outside guest RAM";
    if (chain->iov_.size() == kMaxChainSegments) return "more than kMaxChainSegments buffers";
    uint64_t off = addr - r->guest_base.value;
    uint64_t n = std::min(left, r->size - off);
    chain->iov_.push_back({r->host + off, static_cast<size_t>(n)});
    addr += n;
    left -= n;
  }
  if (writable) {
    chain->writable_bytes_ += desc.len;
  } else {
    chain->readable_bytes_ += desc.len;
    chain->readable_count_ = chain->iov_.size();
  }
  return nullptr;
}

// --- Byte streams over a chain. ---

bool ChainReader::Read(void* dst, size_t len) {
  if (!HasAtLeast(iov_, index_, offset_, len)) return false;
  auto* out = static_cast<uint8_t*>(dst);
  Consume(iov_, &index_, &offset_, len, [&out](uint8_t* p, size_t n) {
    std::memcpy(out, p, n);
    out += n;
  });
  return true;
}

bool ChainReader::Take(size_t len, std::vector<iovec>* out) {
  if (!HasAtLeast(iov_, index_, offset_, len)) return false;
  Consume(iov_, &index_, &offset_, len, [out](uint8_t* p, size_t n) { out->push_back({p, n}); });
  return true;
}

bool ChainReader::Skip(size_t len) {
  if (!HasAtLeast(iov_, index_, offset_, len)) return false;
  Consume(iov_, &index_, &offset_, len, [](uint8_t*, size_t) {});
  return true;
}

size_t ChainReader::remaining() const {
  return Remaining(iov_, index_, offset_);
}

bool ChainWriter::Write(const void* src, size_t len) {
  if (!HasAtLeast(iov_, index_, offset_, len)) return false;
  const auto* in = static_cast<const uint8_t*>(src);
  Consume(iov_, &index_, &offset_, len, [&in](uint8_t* p, size_t n) {
    std::memcpy(p, in, n);
    in += n;
  });
  written_ += len;
  return true;
}

bool ChainWriter::Take(size_t len, std::vector<iovec>* out) {
  if (!HasAtLeast(iov_, index_, offset_, len)) return false;
  Consume(iov_, &index_, &offset_, len, [out](uint8_t* p, size_t n) { out->push_back({p, n}); });
  written_ += len;
  return true;
}

bool ChainWriter::Skip(size_t len) {
  if (!HasAtLeast(iov_, index_, offset_, len)) return false;
  Consume(iov_, &index_, &offset_, len, [](uint8_t*, size_t) {});
  written_ += len;
  return true;
}

size_t ChainWriter::remaining() const {
  return Remaining(iov_, index_, offset_);
}

}  // namespace kite::virtio
