// The virtio-pci modern transport (virtio 1.2 section 4.1): configuration space with the
// virtio capabilities (4.1.4) and MSI-X, BAR 0's regions — common configuration (4.1.4.3),
// ISR (4.1.4.5), device configuration (4.1.4.6), notifications (4.1.4.4) — and MSI-X vector
// selection (4.1.5.1.2) on TransportCore.
//
// Threads: see pci_transport.h.
//
// Policy for a driver that breaks the protocol: the access is ignored (reads give 0), counted
// in protocol_errors; the core logs what says something useful.
#include "virtio/pci_transport.h"

#include <cstring>
#include <set>

#include "base/log.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

using namespace virtio_pci;

// A common configuration field: offset and natural width.
struct Field {
  uint64_t offset;
  size_t width;
};
constexpr Field kCommonFields[] = {
    {kDeviceFeatureSelect, 4}, {kDeviceFeature, 4},    {kDriverFeatureSelect, 4},
    {kDriverFeature, 4},       {kConfigMsixVector, 2}, {kNumQueues, 2},
    {kDeviceStatus, 1},        {kConfigGeneration, 1}, {kQueueSelect, 2},
    {kQueueSize, 2},           {kQueueMsixVector, 2},  {kQueueEnable, 2},
    {kQueueNotifyOff, 2},      {kQueueDesc, 8},        {kQueueDriver, 8},
    {kQueueDevice, 8}};

// The field an access of `size` bytes at `offset` addresses (a 64-bit field also as two
// 32-bit halves, 4.1.3.1); nullptr when the access is not a valid one.
const Field* FindField(uint64_t offset, size_t size) {
  for (const Field& f : kCommonFields) {
    if (f.offset == offset && f.width == size) return &f;
    if (f.width == 8 && size == 4 && (offset == f.offset || offset == f.offset + 4)) return &f;
  }
  return nullptr;
}

uint32_t ClassCode(uint32_t device_id) {
  switch (device_id) {
    case kDeviceIdNet:
      return 0x020000;  // network controller, Ethernet
    case kDeviceIdBlock:
      return 0x010000;  // mass storage, SCSI (what other VMMs give virtio-blk)
    default:
      return 0xff0000;  // unassigned class
  }
}

bool IsConfigWidth(size_t n) {
  return n == 1 || n == 2 || n == 4 || n == 8;
}

// struct virtio_pci_cap (4.1.4), with `extra` appended (notify_off_multiplier, pci_cfg_data).
std::vector<uint8_t> VirtioCap(uint8_t type, uint32_t offset, uint32_t length, size_t extra = 0) {
  std::vector<uint8_t> cap(16 + extra, 0);
  cap[0] = pci::kCapIdVendor;
  cap[2] = static_cast<uint8_t>(cap.size());
  cap[3] = type;
  cap[4] = PciTransport::kBar;
  std::memcpy(&cap[8], &offset, 4);
  std::memcpy(&cap[12], &length, 4);
  return cap;
}

bool Overlaps(uint16_t offset, size_t size, uint16_t start, size_t length) {
  return offset < start + length && start < offset + size;
}

}  // namespace

uint16_t PciTransport::NumVectors(const VirtioDevice& device) {
  size_t n = device.queue_max_sizes().size() + 1;
  return static_cast<uint16_t>(std::min<size_t>(n, pci::kMsixMaxVectors));
}

PciTransport::PciTransport(std::shared_ptr<VirtioDevice> device, TransportEnv env,
                           uint64_t bar_address, std::shared_ptr<pci::MsiSink> msi)
    : TransportCore(std::move(device), std::move(env)),
      config_(
          pci::PciIdentity{.vendor_id = kVendorId,
                           .device_id = static_cast<uint16_t>(kDeviceIdBase + device_->device_id()),
                           .revision = kRevision,
                           .class_code = ClassCode(device_->device_id()),
                           .subsystem_vendor_id = kVendorId,
                           .subsystem_id = kSubsystemId}),
      msix_(NumVectors(*device_), std::move(msi)),
      queue_vectors_(new std::atomic<uint16_t>[queues_.size()]) {
  for (size_t q = 0; q < queues_.size(); ++q) queue_vectors_[q].store(kNoVector);
  // Both can fail only on a VMM bug (a bad address or layout): the BAR then reads as absent.
  if (auto bar = config_.SetBar(kBar, {kBarSize, true, false}, bar_address); !bar) {
    KITE_LOG(Error, "%s: %s", pci_name().c_str(), bar.error().message().c_str());
  }
  AddCapabilities();
}

PciTransport::~PciTransport() {
  Shutdown();
}

void PciTransport::AddCapabilities() {
  auto add = [this](const std::vector<uint8_t>& body, std::vector<uint8_t> writable = {}) {
    Result<uint8_t> offset = config_.AddCapability(body, writable);
    if (!offset) KITE_LOG(Error, "%s: %s", pci_name().c_str(), offset.error().message().c_str());
    return offset ? *offset : uint8_t{0};
  };
  msix_cap_ = add(msix_.Capability(kBar, kMsixTableOffset, kBar, kMsixPbaOffset),
                  pci::Msix::CapabilityWriteMask());
  add(VirtioCap(kCapCommonCfg, kCommonOffset, kCommonCfgSize));
  std::vector<uint8_t> notify = VirtioCap(
      kCapNotifyCfg, kNotifyOffset, static_cast<uint32_t>(queues_.size() * kNotifyMultiplier), 4);
  std::memcpy(&notify[16], &kNotifyMultiplier, 4);
  add(notify);
  add(VirtioCap(kCapIsrCfg, kIsrOffset, 1));
  add(VirtioCap(kCapDeviceCfg, kDeviceCfgOffset, kDeviceCfgSize));
  // VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and pci_cfg_data are the driver's to write.
  std::vector<uint8_t> window_mask(20, 0);
  window_mask[4] = 0xff;
  for (int i = 8; i < 20; ++i) window_mask[i] = 0xff;
  pci_cfg_cap_ = add(VirtioCap(kCapPciCfg, 0, 0, 4), window_mask);
}

std::string PciTransport::pci_name() const {
  return device_->name() + " (virtio-pci)";
}

uint16_t PciTransport::queue_vector(uint16_t queue) const {
  return queue < queues_.size() ? queue_vectors_[queue].load(std::memory_order_acquire) : kNoVector;
}

// 4.1.5.1.2: a vector the table does not have cannot be mapped; it reads back as NO_VECTOR.
uint16_t PciTransport::CheckVector(uint16_t vector) const {
  return vector < msix_.vectors() ? vector : kNoVector;
}

// --- Configuration space ---

void PciTransport::ConfigRead(uint16_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  if (pci_cfg_cap_ && Overlaps(offset, data.size(), pci_cfg_cap_ + 16, 4)) {
    PciCfgWindowLocked(false);
  }
  if (!config_.Read(offset, data)) ProtocolError();
}

void PciTransport::ConfigWrite(uint16_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  if (!config_.Write(offset, data)) {
    ProtocolError();
    return;
  }
  if (msix_cap_ && Overlaps(offset, data.size(), msix_cap_ + 2, 2)) {
    msix_.WriteControl(static_cast<uint16_t>(config_.Get(msix_cap_ + 2, 2)));
  }
  if (pci_cfg_cap_ && Overlaps(offset, data.size(), pci_cfg_cap_ + 16, 4)) {
    PciCfgWindowLocked(true);
  }
}

// 4.1.4.7: pci_cfg_data is a window of `length` bytes at `offset` of BAR `bar`.
void PciTransport::PciCfgWindowLocked(bool write) {
  uint32_t bar = config_.Get(pci_cfg_cap_ + 4, 1);
  uint32_t offset = config_.Get(pci_cfg_cap_ + 8, 4);
  uint32_t length = config_.Get(pci_cfg_cap_ + 12, 4);
  if (bar != kBar || (length != 1 && length != 2 && length != 4) || offset % length != 0 ||
      offset >= kBarSize) {
    if (write) ProtocolError();
    return;
  }
  uint8_t buffer[4] = {};
  std::span<uint8_t> data(buffer, length);
  if (write) {
    for (uint32_t i = 0; i < length; ++i)
      buffer[i] = static_cast<uint8_t>(config_.Get(pci_cfg_cap_ + 16 + i, 1));
    BarAccessLocked(offset, data, true);
  } else {
    BarAccessLocked(offset, data, false);
    for (uint32_t i = 0; i < length; ++i) config_.Set(pci_cfg_cap_ + 16 + i, 1, buffer[i]);
  }
}

std::vector<pci::BarMapping> PciTransport::MappedBars() {
  std::lock_guard lock(mu_);
  std::optional<uint64_t> address = config_.bar_address(kBar);
  if (!config_.memory_enabled() || !address || *address == 0) return {};
  return {{kBar, *address, kBarSize}};
}

// --- BAR 0 ---

void PciTransport::BarRead(int bar, uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  if (bar != kBar) {
    std::memset(data.data(), 0xff, data.size());
    return;
  }
  BarAccessLocked(offset, data, false);
}

void PciTransport::BarWrite(int bar, uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  if (bar != kBar || shut_down_) return;
  // BarAccessLocked reads or writes through one span type; a write never modifies it.
  BarAccessLocked(offset, {const_cast<uint8_t*>(data.data()), data.size()}, true);
}

void PciTransport::BarAccessLocked(uint64_t offset, std::span<uint8_t> data, bool write) {
  size_t n = data.size();
  if (offset < kCommonCfgSize) {
    return write ? CommonWriteLocked(offset, data) : CommonReadLocked(offset, data);
  }
  if (offset >= kIsrOffset && offset < kIsrOffset + 4 && !write) {
    // 4.1.4.5.1: reading ISR status clears it.
    std::memset(data.data(), 0, n);
    if (offset == kIsrOffset) data[0] = static_cast<uint8_t>(TakeInterruptStatus(0xff) & 0xff);
    return;
  }
  if (offset >= kDeviceCfgOffset && offset - kDeviceCfgOffset < kDeviceCfgSize &&
      IsConfigWidth(n)) {
    if (write) {
      device_->WriteConfig(offset - kDeviceCfgOffset, data);
    } else {
      device_->ReadConfig(offset - kDeviceCfgOffset, data);
    }
    return;
  }
  if (offset >= kNotifyOffset && offset - kNotifyOffset < queues_.size() * kNotifyMultiplier) {
    if (write) return NotifyWrite(offset - kNotifyOffset, n);
    std::memset(data.data(), 0, n);
    return;
  }
  if (offset >= kMsixTableOffset && offset - kMsixTableOffset < msix_.table_size()) {
    return write ? msix_.TableWrite(offset - kMsixTableOffset, data)
                 : msix_.TableRead(offset - kMsixTableOffset, data);
  }
  if (offset >= kMsixPbaOffset && offset - kMsixPbaOffset < msix_.pba_size() && !write) {
    return msix_.PbaRead(offset - kMsixPbaOffset, data);
  }
  if (!write) std::memset(data.data(), 0, n);
  ProtocolError();  // a hole in the BAR, a write to ISR or the PBA
}

// 4.1.4.4: queue q's notification address is notify base + q × multiplier. Without
// NOTIFICATION_DATA the driver writes the queue index (16 bits); the address decides.
void PciTransport::NotifyWrite(uint64_t offset, size_t size) {
  if ((size != 2 && size != 4) || offset % kNotifyMultiplier != 0) {
    ProtocolError();
    return;
  }
  PostNotify(static_cast<uint16_t>(offset / kNotifyMultiplier));
}

// --- Common configuration (4.1.4.3) ---

uint64_t PciTransport::CommonValueLocked(uint64_t field) {
  Queue* queue = SelectedQueueLocked();
  switch (field) {
    case kDeviceFeatureSelect:
      return device_features_sel_;
    case kDeviceFeature:
      return DeviceFeatureWordLocked();
    case kDriverFeatureSelect:
      return driver_features_sel_;
    case kDriverFeature:
      return DriverFeatureWordLocked();
    case kConfigMsixVector:
      return msix_config_.load(std::memory_order_acquire);
    case kNumQueues:
      return queues_.size();
    case kDeviceStatus:
      return status() & 0xff;
    case kConfigGeneration:
      return config_generation() & 0xff;
    case kQueueSelect:
      return queue_sel_;
    case kQueueSize:
      return queue ? queue->size() : 0;  // 0: "the queue is unavailable" (G14)
    case kQueueMsixVector:
      return queue_vector(static_cast<uint16_t>(queue_sel_ < queues_.size() ? queue_sel_ : 0xffff));
    case kQueueEnable:
      return queue && queue->ready() ? 1 : 0;
    case kQueueNotifyOff:
      return queue ? queue_sel_ : 0;
    case kQueueDesc:
      return queue ? queue->desc_addr() : 0;
    case kQueueDriver:
      return queue ? queue->avail_addr() : 0;
    case kQueueDevice:
      return queue ? queue->used_addr() : 0;
    default:
      return 0;
  }
}

void PciTransport::CommonReadLocked(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  const Field* field = FindField(offset, data.size());
  if (field == nullptr) {
    ProtocolError();  // 4.1.3.1: natural widths only
    return;
  }
  uint64_t value = CommonValueLocked(field->offset) >> (8 * (offset - field->offset));
  std::memcpy(data.data(), &value, data.size());
}

void PciTransport::CommonWriteLocked(uint64_t offset, std::span<const uint8_t> data) {
  const Field* field = FindField(offset, data.size());
  if (field == nullptr) {
    ProtocolError();
    return;
  }
  uint64_t value = 0;
  std::memcpy(&value, data.data(), data.size());
  switch (field->offset) {
    case kDeviceFeatureSelect:
      device_features_sel_ = static_cast<uint32_t>(value);
      return;
    case kDriverFeatureSelect:
      driver_features_sel_ = static_cast<uint32_t>(value);
      return;
    case kDriverFeature:
      WriteDriverFeatureWordLocked(static_cast<uint32_t>(value));
      return;
    case kConfigMsixVector:
      msix_config_.store(CheckVector(static_cast<uint16_t>(value)), std::memory_order_release);
      return;
    case kDeviceStatus:
      WriteStatusLocked(static_cast<uint32_t>(value));
      return;
    case kQueueSelect:
      queue_sel_ = static_cast<uint32_t>(value);  // out of range selects nothing (G14)
      return;
    default:
      if (!CommonWriteQueueLocked(offset, data.size(), value)) ProtocolError();  // read-only
      return;
  }
}

// The per-queue fields of common configuration. false: not a writable queue field.
bool PciTransport::CommonWriteQueueLocked(uint64_t offset, size_t size, uint64_t value) {
  if (offset == kQueueEnable) {
    WriteQueueEnableLocked(static_cast<uint32_t>(value));
    return true;
  }
  if (offset == kQueueMsixVector) {
    if (queue_sel_ >= queues_.size()) return false;  // G14
    queue_vectors_[queue_sel_].store(CheckVector(static_cast<uint16_t>(value)),
                                     std::memory_order_release);
    return true;
  }
  bool is_address = offset >= kQueueDesc && offset < kQueueDevice + 8;
  if (offset != kQueueSize && !is_address) return false;
  Queue* queue = QueueForSetupLocked();  // counts its own refusal
  if (queue == nullptr) return true;
  if (offset == kQueueSize) {
    queue->set_size(static_cast<uint16_t>(value));
    return true;
  }
  uint64_t field = kQueueDesc + (offset - kQueueDesc) / 8 * 8;
  uint64_t current = CommonValueLocked(field);
  if (size == 4) {
    value = offset == field ? (current & ~uint64_t{0xffffffff}) | value
                            : (current & 0xffffffff) | (value << 32);
  }
  if (field == kQueueDesc) queue->set_desc_addr(value);
  if (field == kQueueDriver) queue->set_avail_addr(value);
  if (field == kQueueDevice) queue->set_used_addr(value);
  return true;
}

// --- Interrupts ---

void PciTransport::DeliverInterrupt(uint32_t bits, uint16_t queue) {
  if (!msix_.enabled() && !warned_no_msix_.exchange(true)) {
    KITE_LOG(Warn,
             "%s: the driver did not enable MSI-X; kite has no INTx, so its interrupts are "
             "dropped",
             pci_name().c_str());
  }
  if (bits & kConfigChangeBit) msix_.Notify(msix_config_.load(std::memory_order_acquire));
  if (!(bits & kUsedBufferBit)) return;
  if (queue != kAllQueues) {
    msix_.Notify(queue_vector(queue));
    return;
  }
  std::set<uint16_t> vectors;  // each vector once, however many queues share it
  for (size_t q = 0; q < queues_.size(); ++q) {
    if (queues_[q]->ready()) vectors.insert(queue_vector(static_cast<uint16_t>(q)));
  }
  for (uint16_t v : vectors) msix_.Notify(v);
}

// A device reset puts the vector registers back to NO_VECTOR. The MSI-X table and the PCI
// configuration space belong to the PCI function, which a virtio reset does not reset.
void PciTransport::ResetTransportLocked() {
  msix_config_.store(kNoVector, std::memory_order_release);
  for (size_t q = 0; q < queues_.size(); ++q) {
    queue_vectors_[q].store(kNoVector, std::memory_order_release);
  }
}

}  // namespace kite::virtio
