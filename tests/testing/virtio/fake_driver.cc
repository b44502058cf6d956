// FakeDriver: the driver side of a split virtqueue for tests (see fake_driver.h). Memory is two
// anonymous mappings wrapped by GuestMemory::FromRegions: [0, low) and [low + hole, +high).
// Layout of the low region: 4 KiB unused (so no ring sits at guest address 0), then the
// descriptor table, the available ring and the used ring, each 4 KiB-aligned, then the bump
// allocator's buffers. Misuse by a test (out of descriptors, allocation past the low region,
// access outside RAM) aborts with a message: it is a bug in the test, not guest input.
#include "testing/virtio/fake_driver.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>

namespace kite::testing {
namespace {

using virtio::Descriptor;
using virtio::UsedElement;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kRingStart = kPage;

uint64_t AlignUp(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "FakeDriver: %s\n", what);
  std::abort();
}

uint8_t* MapOrDie(size_t len) {
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) Die("mmap failed");
  return static_cast<uint8_t*>(p);
}

}  // namespace

FakeDriver::FakeDriver(FakeDriverOptions options) : options_(options) {
  uint16_t qs = options_.queue_size;
  if (qs == 0) Die("queue_size 0");
  std::vector<MemoryRegion> regions;
  mappings_.push_back(MapOrDie(options_.low_size));
  mapping_sizes_.push_back(options_.low_size);
  regions.push_back({GuestAddr(0), options_.low_size, mappings_.back()});
  if (options_.high_size > 0) {
    mappings_.push_back(MapOrDie(options_.high_size));
    mapping_sizes_.push_back(options_.high_size);
    regions.push_back({GuestAddr(HighAddr()), options_.high_size, mappings_.back()});
  }
  // Private anonymous mappings: a device may give pages back (virtio-balloon's Discard).
  auto memory = GuestMemory::FromRegions(std::move(regions), /*private_anonymous=*/true);
  if (!memory) Die(memory.error().message().c_str());
  memory_ = std::move(*memory);
  ring_base_ = kRingStart;
  next_alloc_ = AlignUp(used_addr() + 6 + 8ull * qs, kPage);
  if (next_alloc_ > options_.low_size) Die("low region too small for the rings");
  InitRings();
}

FakeDriver::FakeDriver(FakeDriver* owner, uint16_t queue_size) : options_(owner->options_) {
  if (queue_size == 0) Die("queue_size 0");
  while (owner->owner_ != nullptr) owner = owner->owner_;
  owner_ = owner;
  options_.queue_size = queue_size;
  ring_base_ = AlignUp(owner->next_alloc_, kPage);
  owner->next_alloc_ = AlignUp(used_addr() + 6 + 8ull * queue_size, kPage);
  if (owner->next_alloc_ > options_.low_size) Die("low region too small for the rings");
  InitRings();
}

void FakeDriver::InitRings() {
  for (int i = options_.queue_size - 1; i >= 0; --i) free_desc_.push_back(static_cast<uint16_t>(i));
  chain_descs_.resize(options_.queue_size);
}

FakeDriver::~FakeDriver() {
  memory_ = GuestMemory();
  for (size_t i = 0; i < mappings_.size(); ++i) ::munmap(mappings_[i], mapping_sizes_[i]);
}

uint64_t FakeDriver::desc_addr() const {
  return ring_base_;
}
uint64_t FakeDriver::avail_addr() const {
  return AlignUp(desc_addr() + 16ull * options_.queue_size, kPage);
}
uint64_t FakeDriver::used_addr() const {
  return AlignUp(avail_addr() + 6 + 2ull * options_.queue_size, kPage);
}

void FakeDriver::Configure(virtio::Queue* queue) const {
  queue->set_size(options_.queue_size);
  queue->set_desc_addr(desc_addr());
  queue->set_avail_addr(avail_addr());
  queue->set_used_addr(used_addr());
}

uint64_t FakeDriver::Alloc(uint32_t len) {
  if (owner_ != nullptr) return owner_->Alloc(len);
  uint64_t addr = next_alloc_;
  if (len > options_.low_size - addr) Die("Alloc past the end of the low region");
  next_alloc_ = AlignUp(addr + len, 16);
  return addr;
}

uint64_t FakeDriver::HighAddr(uint64_t offset) const {
  return options_.low_size + options_.hole_size + offset;
}
uint64_t FakeDriver::HoleAddr() const {
  return options_.low_size;
}
uint64_t FakeDriver::EndAddr() const {
  return HighAddr(options_.high_size);
}

void FakeDriver::WriteBytes(uint64_t addr, const void* data, size_t len) {
  if (!memory().Write(GuestAddr(addr), data, len)) Die("WriteBytes outside RAM");
}

void FakeDriver::ReadBytes(uint64_t addr, void* data, size_t len) const {
  if (!memory().Read(GuestAddr(addr), data, len)) Die("ReadBytes outside RAM");
}

uint16_t FakeDriver::AddChain(const std::vector<FakeBuffer>& buffers) {
  if (buffers.empty()) Die("AddChain with no buffers");
  if (buffers.size() > free_desc_.size()) Die("AddChain: out of free descriptors");
  std::vector<uint16_t> descs(buffers.size());
  for (uint16_t& d : descs) {
    d = free_desc_.back();
    free_desc_.pop_back();
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    bool last = i + 1 == buffers.size();
    uint16_t flags = (buffers[i].device_writable ? virtio::kDescFlagWrite : 0) |
                     (last ? 0 : virtio::kDescFlagNext);
    SetDescriptor(descs[i], {buffers[i].addr, buffers[i].len, flags,
                             static_cast<uint16_t>(last ? 0 : descs[i + 1])});
  }
  uint16_t head = descs[0];
  chain_descs_[head] = std::move(descs);
  AddAvail(head);
  return head;
}

uint16_t FakeDriver::AddIndirectChain(const std::vector<FakeBuffer>& buffers) {
  if (buffers.empty()) Die("AddIndirectChain with no buffers");
  if (free_desc_.empty()) Die("AddIndirectChain: out of free descriptors");
  uint32_t table_len = static_cast<uint32_t>(buffers.size() * sizeof(Descriptor));
  uint64_t table = Alloc(table_len);
  for (size_t i = 0; i < buffers.size(); ++i) {
    bool last = i + 1 == buffers.size();
    uint16_t flags = (buffers[i].device_writable ? virtio::kDescFlagWrite : 0) |
                     (last ? 0 : virtio::kDescFlagNext);
    WriteObj(table + i * sizeof(Descriptor), Descriptor{buffers[i].addr, buffers[i].len, flags,
                                                        static_cast<uint16_t>(last ? 0 : i + 1)});
  }
  uint16_t head = free_desc_.back();
  free_desc_.pop_back();
  SetDescriptor(head, {table, table_len, virtio::kDescFlagIndirect, 0});
  chain_descs_[head] = {head};
  AddAvail(head);
  return head;
}

void FakeDriver::SetDescriptor(uint16_t index, const Descriptor& desc) {
  if (index >= options_.queue_size) Die("SetDescriptor index >= queue size");
  WriteObj(desc_addr() + sizeof(Descriptor) * index, desc);
}

Descriptor FakeDriver::GetDescriptor(uint16_t index) const {
  if (index >= options_.queue_size) Die("GetDescriptor index >= queue size");
  return ReadObj<Descriptor>(desc_addr() + sizeof(Descriptor) * index);
}

void FakeDriver::AddAvail(uint16_t head) {
  uint64_t slot = avail_addr() + 4 + 2ull * (avail_added_ % options_.queue_size);
  WriteObj<uint16_t>(slot, head);
  ++avail_added_;
}

void FakeDriver::Publish() {
  // A real driver puts a write barrier here (ring entries before idx); the device under test
  // runs on this thread, so program order is enough.
  SetAvailIdx(avail_added_);
}

void FakeDriver::SetAvailIdx(uint16_t idx) {
  WriteObj<uint16_t>(avail_addr() + 2, idx);
}
void FakeDriver::SetAvailFlags(uint16_t flags) {
  WriteObj<uint16_t>(avail_addr(), flags);
}
void FakeDriver::SetUsedEvent(uint16_t value) {
  WriteObj<uint16_t>(avail_addr() + 4 + 2ull * options_.queue_size, value);
}
uint16_t FakeDriver::avail_event() const {
  return ReadObj<uint16_t>(used_addr() + 4 + 8ull * options_.queue_size);
}
uint16_t FakeDriver::used_flags() const {
  return ReadObj<uint16_t>(used_addr());
}
uint16_t FakeDriver::used_idx() const {
  return ReadObj<uint16_t>(used_addr() + 2);
}

std::optional<UsedElement> FakeDriver::PopUsed() {
  if (used_idx() == last_used_) return std::nullopt;
  auto elem = ReadObj<UsedElement>(used_addr() + 4 + 8ull * (last_used_ % options_.queue_size));
  ++last_used_;
  if (elem.id < options_.queue_size) {
    for (uint16_t d : chain_descs_[elem.id]) free_desc_.push_back(d);
    chain_descs_[elem.id].clear();
  }
  return elem;
}

}  // namespace kite::testing
