// The virtio-mmio version 2 transport (virtio 1.2 section 4.2): the register file of 4.2.2 on
// TransportCore, which does the status state machine of 3.1.1 / 4.2.3.1, queue setup
// (4.2.3.2), notifications and interrupts (4.2.3.3, 4.2.3.4).
//
// Threads (see mmio_transport.h): Read/Write run on vCPU threads and take the core's mu_ for
// the whole access.
//
// Policy for a driver that breaks the protocol: the access is ignored (reads give 0), counted
// in protocol_errors and, where it says something useful, logged rate-limited.
#include "virtio/mmio_transport.h"

#include <cstring>

#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

using namespace mmio;

uint64_t SetLow(uint64_t v, uint32_t low) {
  return (v & ~uint64_t{0xffffffff}) | low;
}
uint64_t SetHigh(uint64_t v, uint32_t high) {
  return (v & 0xffffffff) | (uint64_t{high} << 32);
}

bool IsConfigWidth(size_t n) {
  return n == 1 || n == 2 || n == 4 || n == 8;
}

}  // namespace

MmioTransport::MmioTransport(std::shared_ptr<VirtioDevice> device, TransportEnv env)
    : TransportCore(std::move(device), std::move(env)) {}

MmioTransport::~MmioTransport() {
  Shutdown();
}

void MmioTransport::Read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  if (offset >= kConfig) {
    if (IsConfigWidth(data.size())) {
      device_->ReadConfig(offset - kConfig, data);
      return;
    }
  } else if (data.size() == 4 && offset % 4 == 0) {
    uint32_t value = ReadRegister(offset);
    std::memcpy(data.data(), &value, 4);
    return;
  }
  // 4.2.2.2: control registers take 32-bit aligned accesses only.
  std::memset(data.data(), 0, data.size());
  ProtocolError();
}

void MmioTransport::Write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  if (shut_down_) return;
  if (offset >= kConfig) {
    if (IsConfigWidth(data.size())) {
      device_->WriteConfig(offset - kConfig, data);
      return;
    }
  } else if (data.size() == 4 && offset % 4 == 0) {
    uint32_t value;
    std::memcpy(&value, data.data(), 4);
    WriteRegister(offset, value);
    return;
  }
  ProtocolError();
}

// 4.2.2: the readable registers. Write-only and reserved ones read as 0.
uint32_t MmioTransport::ReadRegister(uint64_t offset) {
  Queue* queue = SelectedQueueLocked();
  switch (offset) {
    case kMagicValue:
      return kMagic;
    case kVersion:
      return kVersion2;
    case kDeviceId:
      return device_->device_id();
    case kVendorId:
      return kVendor;
    case kDeviceFeatures:
      return DeviceFeatureWordLocked();
    case kQueueNumMax:
      return queue ? queue->max_size() : 0;  // "0x0 if the queue is not available" (G14)
    case kQueueReady:
      return queue && queue->ready() ? 1 : 0;
    case kInterruptStatus:
      return interrupt_status();
    case kStatus:
      return status();
    case kShmLenLow:
    case kShmLenHigh:
      return 0xffffffff;  // "a length of -1": no shared memory region, whatever ShmSel says
    case kConfigGeneration:
      return config_generation();
    default:
      return 0;
  }
}

void MmioTransport::WriteRegister(uint64_t offset, uint32_t value) {
  switch (offset) {
    case kDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case kDriverFeatures:
      WriteDriverFeatureWordLocked(value);
      return;
    case kDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case kQueueSel:
      queue_sel_ = value;  // out of range selects nothing (G14)
      return;
    case kQueueNotify:
      // Without an ioeventfd the kick lands here; serve it on the loop, never on a vCPU.
      if (value >= queues_.size() || env_.loop == nullptr) {
        ProtocolError();  // G14
        return;
      }
      PostNotify(static_cast<uint16_t>(value));
      return;
    case kInterruptAck:
      TakeInterruptStatus(value);
      return;
    case kStatus:
      WriteStatusLocked(value);
      return;
    case kQueueNum:
    case kQueueReady:
    case kQueueDescLow:
    case kQueueDescHigh:
    case kQueueDriverLow:
    case kQueueDriverHigh:
    case kQueueDeviceLow:
    case kQueueDeviceHigh:
      WriteQueueRegister(offset, value);
      return;
    case kShmSel:
      return;  // no shared memory regions: every selection reads a length of -1
    default:
      ProtocolError();  // read-only, reserved, or QueueReset (VIRTIO_F_RING_RESET not offered)
      return;
  }
}

// 4.2.3.2: queue setup, through the core (before DRIVER_OK, queue not ready).
void MmioTransport::WriteQueueRegister(uint64_t offset, uint32_t value) {
  if (offset == kQueueReady) {
    WriteQueueEnableLocked(value);
    return;
  }
  Queue* queue = QueueForSetupLocked();
  if (queue == nullptr) return;
  switch (offset) {
    case kQueueNum:
      // A size that does not fit 16 bits must not wrap into a valid one: 0 is refused (G13).
      queue->set_size(value <= 0xffff ? static_cast<uint16_t>(value) : 0);
      return;
    case kQueueDescLow:
      return queue->set_desc_addr(SetLow(queue->desc_addr(), value));
    case kQueueDescHigh:
      return queue->set_desc_addr(SetHigh(queue->desc_addr(), value));
    case kQueueDriverLow:
      return queue->set_avail_addr(SetLow(queue->avail_addr(), value));
    case kQueueDriverHigh:
      return queue->set_avail_addr(SetHigh(queue->avail_addr(), value));
    case kQueueDeviceLow:
      return queue->set_used_addr(SetLow(queue->used_addr(), value));
    case kQueueDeviceHigh:
      return queue->set_used_addr(SetHigh(queue->used_addr(), value));
  }
}

// 4.2.3.4: one pulse per raised interrupt, whatever its cause (one line for all queues).
void MmioTransport::DeliverInterrupt(uint32_t bits, uint16_t queue) {
  (void)bits, (void)queue;
  if (env_.irq) env_.irq->Pulse();
}

}  // namespace kite::virtio
