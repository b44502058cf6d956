// libFuzzer target for the guest-facing PCI side of kite, wired as src/vmm/vm_pci.cc wires it
// but with fakes where KVM would be: the root bus (devices/pci/pci_bus.cc) with the host bridge
// in slot 0, the ECAM window and ports 0xCF8-0xCFF on an MMIO and a PIO bus, virtio-pci
// functions (virtio/pci_transport.cc, devices/pci/msix.cc) with virtio-rng, virtio-blk over a
// 1 MiB RAM disk (read-only or not) or virtio-net over an in-memory backend behind them, BAR
// ranges from the VMM's AddressAllocator, and the ACPI GED's hotplug registers
// (devices/acpi_ged.cc), whose eject removes a function as the machine's hotplug thread would.
//
// The input is a program of guest accesses (FuzzedDataProvider): configuration reads and writes
// of any width through ECAM or CF8/CFC, BAR sizing and placement, reads and writes of any width
// in a function's BAR (common configuration, ISR, device configuration, notifications, MSI-X
// table and PBA), the VIRTIO_PCI_CAP_PCI_CFG window, raw MMIO and port accesses, GED registers,
// pokes into guest RAM, host hot-add and eject requests, and two shortcuts a random program
// rarely finds: Linux's probe (enumeration, BAR sizing, capability walk, MSI-X set-up, the
// virtio handshake) and a descriptor chain followed by a notification. The event loop runs
// when the program polls it.
//
// Checks beyond the sanitizers (abort with "invariant violated: ..."):
//   * configuration reads: identification, status, header type, subsystem ids, capability
//     pointer, interrupt pin and unimplemented BARs read what the function is; a function that
//     is not there, and a malformed access, read all ones; extended (ECAM) space reads 0;
//   * BAR sizing reads back the size mask (BAR 0/1: 32 KiB, 64-bit; the rest and the ROM: 0);
//   * a BAR access reaches a function only if it decodes its BAR there (memory enabled, the
//     address programmed), at the offset from the BAR's start, and wholly inside the BAR;
//   * device status never shows DRIVER_OK without FEATURES_OK; num_queues, the MSI-X vector
//     registers, ISR and Vector Control read only what they can hold;
//   * MSI-X: every message the sink is asked to send comes from a vector that is enabled and
//     unmasked, with the table's address and data as its route; every deliverable vector is
//     routed to the table's message, and none is left pending.
#include <fuzzer/FuzzedDataProvider.h>

#include <asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "base/log.h"
#include "devices/acpi_ged.h"
#include "devices/bus.h"
#include "devices/pci/address_allocator.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci_bus.h"
#include "devices/pci/pci_config.h"
#include "devices/pci/pci_config_access.h"
#include "devices/pci/pci_host_bridge.h"
#include "fuzz_guest.h"
#include "fuzz_pci_checks.h"
#include "testing/fake_irq_line.h"
#include "virtio/pci_transport.h"
#include "virtio/virtio_spec.h"
#include "vmm/layout.h"

namespace {

using namespace kite;
using namespace kite::virtio;
namespace vp = kite::virtio::virtio_pci;

constexpr uint64_t kRingBase = 0x10000;  // function i, queue q: kRingBase + i·0x10000 + q·0x4000
constexpr size_t kMaxFunctions = 4;
constexpr int kMaxQueues = 4;  // rings the fuzzer lays out per function
constexpr uint64_t kBarSize = PciTransport::kBarSize;
constexpr uint32_t kBar0Sized = static_cast<uint32_t>(~(kBarSize - 1)) | 0x4;  // 64-bit memory
constexpr uint16_t kCommandDecode = pci::kCommandMemory | pci::kCommandBusMaster;

[[noreturn]] void Fail(const char* what) {
  fuzz::PciFail(what);
}

// One virtio-pci function on the bus, with what the guest driver learnt about it.
struct Function {
  uint8_t slot = 0;
  uint64_t rings = 0;  // guest address of its ring area
  uint64_t allocated_bar = 0;
  std::shared_ptr<PciTransport> transport;
  std::shared_ptr<fuzz::CheckingSink> sink;
  fuzz::Identity identity;
  uint16_t queues = 0;
  uint16_t vectors = 0;
  uint8_t msix_cap = 0;
  uint8_t pci_cfg_cap = 0;
  uint16_t sizes[kMaxQueues] = {};
  uint16_t avail_idx[kMaxQueues] = {};
};

// The machine around the bus and the guest driving it.
class Guest {
 public:
  explicit Guest(asio::io_context* loop)
      : loop_(loop),
        mmio_("mmio"),
        pio_("pio"),
        irq_(std::make_shared<testing::FakeIrqLine>()),
        ged_(std::make_shared<AcpiGed>(irq_, [this](uint32_t slot) { ejected_.push_back(slot); })),
        bus_(&mmio_, {{layout::kPciMmio32Base, layout::kPciMmio32Size},
                      {layout::Pci64WindowBase(memory_.EndAddr()), layout::kPciMmio64Size}}),
        bars_(layout::kPciMmio32Base, layout::kPciMmio32Size),
        bridge_(fuzz::MakeIdentity(pci::kRedHatVendorId, pci::kHostBridgeDeviceId, 0,
                                   pci::kClassHostBridge, pci::kRedHatVendorId, 0x1100, false)) {
    if (!bus_.AddDevice(std::make_shared<pci::PciHostBridge>(), {}, 0) ||
        !mmio_.Register(layout::kPciEcamBase, layout::kPciEcamSize,
                        std::make_shared<pci::PciEcam>(&bus_)) ||
        !pio_.Register(layout::kPciConfigPorts, pci::kConfigPortsSize,
                       std::make_shared<pci::PciConfigPorts>(&bus_)) ||
        !mmio_.Register(layout::kGedBase, layout::kGedSize, ged_)) {
      std::abort();
    }
  }
  ~Guest() {
    while (!functions_.empty()) Unplug(functions_.back()->slot);
    Poll();
  }

  // Host: a function of `kind` in the lowest free slot, its BAR allocated (not decoded yet).
  void HotAdd(uint8_t kind, bool announce) {
    if (functions_.size() >= kMaxFunctions) return;
    auto device = fuzz::MakeVirtioDevice(kind, loop_);
    if (!device) std::abort();
    auto f = std::make_unique<Function>();
    auto bar = bars_.Allocate(kBarSize, kBarSize);
    if (!bar) std::abort();
    f->allocated_bar = *bar;
    f->sink = std::make_shared<fuzz::CheckingSink>();
    f->transport = std::make_shared<PciTransport>(
        *device, TransportEnv{loop_, nullptr, &memory_.memory()}, *bar, f->sink);
    uint32_t id = (*device)->device_id();
    f->identity =
        fuzz::MakeIdentity(vp::kVendorId, static_cast<uint16_t>(vp::kDeviceIdBase + id),
                           vp::kRevision, fuzz::ClassOf(id), vp::kVendorId, vp::kSubsystemId, true);
    f->queues = static_cast<uint16_t>(f->transport->num_queues());
    f->vectors = PciTransport::NumVectors(**device);
    FindCapabilities(*f);
    for (size_t i = 0; i < kMaxFunctions; ++i) {  // a ring area no other function uses
      uint64_t rings = kRingBase + i * 0x10000;
      bool used = false;
      for (const auto& other : functions_) used |= other->rings == rings;
      if (!used) f->rings = rings;
    }
    auto slot =
        bus_.AddDevice(std::make_shared<fuzz::CheckedFunction>(f->transport, &access_addr_));
    if (!slot) std::abort();
    f->slot = *slot;
    functions_.push_back(std::move(f));
    if (announce) ged_->SetSlotPresent(*slot, true);
  }

  void Unplug(uint8_t slot) {
    for (auto it = functions_.begin(); it != functions_.end(); ++it) {
      if ((*it)->slot != slot) continue;
      (*it)->transport->Shutdown();
      if (!bus_.RemoveDevice(slot)) std::abort();
      bars_.Free((*it)->allocated_bar);
      functions_.erase(it);
      return;
    }
  }

  void Poll() {
    loop_->restart();
    loop_->poll();
    Verify();
  }

  // --- Configuration space ---

  bool UseEcam(FuzzedDataProvider& in) { return in.ConsumeBool(); }

  uint64_t ConfigRead(bool ecam, uint8_t dev, uint8_t fn, uint16_t reg, size_t width) {
    uint8_t bytes[8];
    std::memset(bytes, 0, sizeof(bytes));
    if (ecam) {
      mmio_.Read(EcamAddress(dev, fn, reg), {bytes, width});
    } else {
      SelectPorts(dev, fn, reg);
      pio_.Read(layout::kPciConfigPorts + 4 + (reg & 3), {bytes, width});
    }
    uint64_t value = 0;
    std::memcpy(&value, bytes, width);
    CheckConfigRead(dev, fn, ecam ? reg : reg & 0xff, {bytes, width});
    Verify();
    return value;
  }
  void ConfigWrite(bool ecam, uint8_t dev, uint8_t fn, uint16_t reg, size_t width, uint64_t v) {
    uint8_t bytes[8];
    std::memcpy(bytes, &v, sizeof(bytes));
    if (ecam) {
      mmio_.Write(EcamAddress(dev, fn, reg), {bytes, width});
    } else {
      SelectPorts(dev, fn, reg);
      pio_.Write(layout::kPciConfigPorts + 4 + (reg & 3), {bytes, width});
    }
    Verify();
  }

  // A configuration access to a chosen function and register (some interesting, some any).
  void ConfigAccess(FuzzedDataProvider& in, bool write) {
    bool ecam = UseEcam(in);
    uint8_t dev = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint8_t>(0, 4)
                                   : in.ConsumeIntegralInRange<uint8_t>(0, 31);
    uint8_t fn =
        in.ConsumeIntegralInRange(0, 7) == 7 ? in.ConsumeIntegralInRange<uint8_t>(0, 7) : 0;
    Function* f = At(dev);
    uint16_t reg = 0;
    switch (in.ConsumeIntegralInRange(0, 4)) {
      case 0:
        reg = in.ConsumeIntegralInRange<uint16_t>(0, 0xfff);
        break;
      case 1:
        reg = f && f->msix_cap ? f->msix_cap + in.ConsumeIntegralInRange(0, 11) : pci::kCommand;
        break;
      case 2:
        reg = f && f->pci_cfg_cap ? f->pci_cfg_cap + in.ConsumeIntegralInRange(0, 19) : pci::kBar0;
        break;
      default:
        reg = in.ConsumeIntegralInRange<uint16_t>(0, 0xff);
        break;
    }
    size_t width = in.ConsumeBool() ? size_t{1} << in.ConsumeIntegralInRange(0, 2)
                                    : in.ConsumeIntegralInRange<size_t>(1, 8);
    if (write) {
      ConfigWrite(ecam, dev, fn, reg, width, in.ConsumeIntegral<uint64_t>());
    } else {
      (void)ConfigRead(ecam, dev, fn, reg, width);
    }
  }

  // Linux's BAR sizing (pci_read_base): all ones, read back the size bits, the old value back.
  void SizeBar(FuzzedDataProvider& in) {
    bool ecam = UseEcam(in);
    uint8_t dev = in.ConsumeIntegralInRange<uint8_t>(0, 5);
    int bar = in.ConsumeIntegralInRange(0, pci::kNumBars);  // kNumBars: the ROM BAR
    uint16_t reg = bar == pci::kNumBars ? pci::kRomBar : pci::kBar0 + 4 * bar;
    bool quiet = in.ConsumeBool();  // memory decoding off while sizing, as Linux does
    uint16_t command = static_cast<uint16_t>(ConfigRead(ecam, dev, 0, pci::kCommand, 2));
    if (quiet) ConfigWrite(ecam, dev, 0, pci::kCommand, 2, command & ~kCommandDecode);
    uint32_t old = static_cast<uint32_t>(ConfigRead(ecam, dev, 0, reg, 4));
    ConfigWrite(ecam, dev, 0, reg, 4, 0xffffffff);
    auto size = static_cast<uint32_t>(ConfigRead(ecam, dev, 0, reg, 4));
    uint32_t expected = 0;
    if (dev != 0 && At(dev) == nullptr) {
      expected = 0xffffffff;
    } else if (dev != 0 && bar == 0) {
      expected = kBar0Sized;
    } else if (dev != 0 && bar == 1) {
      expected = 0xffffffff;
    }
    if (size != expected) Fail("BAR sizing read back something else than the size mask");
    ConfigWrite(ecam, dev, 0, reg, 4, old);
    if (quiet) ConfigWrite(ecam, dev, 0, pci::kCommand, 2, command);
  }

  // The OS places BAR 0 and enables decoding: where kite put it, anywhere in a window, over
  // another function's BAR or the ECAM window, or anywhere at all.
  void PlaceBar(FuzzedDataProvider& in) {
    Function* f = Pick(in);
    if (f == nullptr) return;
    bool ecam = UseEcam(in);
    uint64_t address = 0;
    switch (in.ConsumeIntegralInRange(0, 5)) {
      case 0:
        address =
            layout::kPciMmio32Base +
            in.ConsumeIntegralInRange<uint64_t>(0, layout::kPciMmio32Size / kBarSize) * kBarSize;
        break;
      case 1:
        address = layout::Pci64WindowBase(memory_.EndAddr()) +
                  in.ConsumeIntegralInRange<uint64_t>(0, 0xffff) * kBarSize;
        break;
      case 2:
        address =
            functions_[in.ConsumeIntegralInRange<size_t>(0, functions_.size() - 1)]->allocated_bar;
        break;
      case 3:
        address = in.ConsumeIntegral<uint64_t>();
        break;
      default:
        address = f->allocated_bar;
        break;
    }
    ConfigWrite(ecam, f->slot, 0, pci::kBar0, 4, address & 0xffffffff);
    ConfigWrite(ecam, f->slot, 0, pci::kBar0 + 4, 4, address >> 32);
    uint16_t command = in.ConsumeBool() ? kCommandDecode : in.ConsumeIntegral<uint16_t>();
    ConfigWrite(ecam, f->slot, 0, pci::kCommand, 2, command);
  }

  // VIRTIO_PCI_CAP_PCI_CFG (4.1.4.7): bar, offset, length, then pci_cfg_data.
  void PciCfgWindow(FuzzedDataProvider& in) {
    Function* f = Pick(in);
    if (f == nullptr || f->pci_cfg_cap == 0) return;
    bool ecam = UseEcam(in);
    uint16_t cap = f->pci_cfg_cap;
    uint32_t length =
        in.ConsumeBool() ? 1u << in.ConsumeIntegralInRange(0, 2) : in.ConsumeIntegral<uint32_t>();
    ConfigWrite(ecam, f->slot, 0, cap + 4, 1, in.ConsumeIntegralInRange(0, 7) == 7 ? 1 : 0);
    ConfigWrite(ecam, f->slot, 0, cap + 8, 4, BarOffset(in, *f));
    ConfigWrite(ecam, f->slot, 0, cap + 12, 4, length);
    size_t width = size_t{1} << in.ConsumeIntegralInRange(0, 2);
    uint16_t data =
        static_cast<uint16_t>(cap + 16 + in.ConsumeIntegralInRange(0, 3) / width * width);
    if (in.ConsumeBool()) {
      ConfigWrite(ecam, f->slot, 0, data, width, in.ConsumeIntegral<uint32_t>());
    } else {
      (void)ConfigRead(ecam, f->slot, 0, data, width);
    }
  }

  // --- BAR 0 and other MMIO ---

  uint64_t Mmio(uint64_t addr, size_t width, bool write, uint64_t value) {
    uint8_t bytes[8];
    std::memcpy(bytes, &value, sizeof(bytes));
    access_addr_ = addr;
    if (write) {
      mmio_.Write(addr, {bytes, width});
    } else {
      mmio_.Read(addr, {bytes, width});
    }
    Verify();
    uint64_t v = 0;
    std::memcpy(&v, bytes, width);
    return v;
  }

  // An access inside (or just around) a function's BAR, where the guest believes it is.
  void BarAccess(FuzzedDataProvider& in) {
    Function* f = Pick(in);
    if (f == nullptr) return;
    uint64_t offset = BarOffset(in, *f);
    size_t width =
        in.ConsumeBool() ? NaturalWidth(offset) : in.ConsumeIntegralInRange<size_t>(1, 8);
    bool write = in.ConsumeBool();
    (void)Mmio(BarBase(*f) + offset, width, write, in.ConsumeIntegral<uint64_t>());
  }

  // Anywhere near what the guest knows: ECAM, the GED, the windows, or any address.
  void RawMmio(FuzzedDataProvider& in) {
    uint64_t addr = 0;
    switch (in.ConsumeIntegralInRange(0, 3)) {
      case 0:
        addr = layout::kPciEcamBase - 8 + in.ConsumeIntegralInRange<uint64_t>(0, 0x100010);
        break;
      case 1:
        addr = layout::kGedBase + in.ConsumeIntegralInRange<uint64_t>(0, 0x107);
        break;
      case 2:
        addr = layout::kPciMmio32Base + in.ConsumeIntegralInRange<uint64_t>(0, 0x100000);
        break;
      default:
        addr = in.ConsumeIntegral<uint64_t>();
        break;
    }
    size_t width = in.ConsumeIntegralInRange<size_t>(1, 8);
    bool write = in.ConsumeBool();
    (void)Mmio(addr, width, write, in.ConsumeIntegral<uint64_t>());
  }

  void RawPio(FuzzedDataProvider& in) {
    uint64_t port = layout::kPciConfigPorts + in.ConsumeIntegralInRange(0, 8);
    size_t width = in.ConsumeIntegralInRange<size_t>(1, 4);
    uint8_t bytes[4];
    uint32_t value = in.ConsumeIntegral<uint32_t>();
    std::memcpy(bytes, &value, 4);
    if (in.ConsumeBool()) {
      pio_.Write(port, {bytes, width});
    } else {
      pio_.Read(port, {bytes, width});
    }
    Verify();
  }

  // MSI-X: a table field, a mask bit, or Message Control (enable, function mask).
  void MsixAccess(FuzzedDataProvider& in) {
    Function* f = Pick(in);
    if (f == nullptr) return;
    if (in.ConsumeBool()) {
      uint16_t control = in.ConsumeIntegral<uint16_t>() & 0xc000;
      ConfigWrite(UseEcam(in), f->slot, 0, f->msix_cap + 2, 2, control);
      return;
    }
    uint64_t vector = in.ConsumeIntegralInRange<uint64_t>(0, f->vectors);
    uint64_t field = in.ConsumeIntegralInRange(0, 3) * 4;
    uint64_t value = 0;
    switch (field) {
      case 0:
        value =
            in.ConsumeBool() ? layout::kLapicAddr | vector << 12 : in.ConsumeIntegral<uint32_t>();
        break;
      case 12:
        value = in.ConsumeIntegral<uint8_t>() & 1;
        break;
      default:
        value = in.ConsumeIntegral<uint32_t>();
        break;
    }
    size_t width = in.ConsumeIntegralInRange(0, 3) == 3 ? 8 : 4;
    if (width == 8) value |= uint64_t{in.ConsumeIntegral<uint32_t>()} << 32;
    (void)Mmio(BarBase(*f) + PciTransport::kMsixTableOffset + 16 * vector + field, width,
               in.ConsumeIntegralInRange(0, 3) != 0, value);
  }

  // --- The GED's hotplug registers, and the host side of hotplug ---

  void Hotplug(FuzzedDataProvider& in) {
    switch (in.ConsumeIntegralInRange(0, 4)) {
      case 0: {  // the guest's _EJ0
        uint32_t slot =
            in.ConsumeBool() ? in.ConsumeIntegralInRange(0, 5) : in.ConsumeIntegral<uint32_t>();
        (void)Mmio(layout::kGedBase + kGedSlotEjectOffset, 4, true, slot);
        break;
      }
      case 1: {  // the guest's _EVT and _STA reads
        uint64_t reg = 4 * in.ConsumeIntegralInRange(0, 4);
        (void)Mmio(layout::kGedBase + reg, size_t{1} << in.ConsumeIntegralInRange(0, 2), false, 0);
        break;
      }
      case 2:
        HotAdd(in.ConsumeIntegral<uint8_t>(), true);
        break;
      case 3:
        if (Function* f = Pick(in)) ged_->RequestSlotEject(f->slot);
        break;
      default:
        if (Function* f = Pick(in)) Unplug(f->slot);  // a host removal without the guest
        break;
    }
    // The machine's hotplug thread takes ejected devices out after the vCPU's access.
    std::vector<uint32_t> ejected;
    ejected.swap(ejected_);
    for (uint32_t slot : ejected) {
      if (slot < pci::kSlots) Unplug(static_cast<uint8_t>(slot));
    }
    Verify();
  }

  // --- Shortcuts ---

  // Linux's probe: vendor id, BAR sizing and placement, decoding on, the capability list,
  // MSI-X (one vector per queue and one for configuration), then the virtio handshake through
  // common configuration.
  void Probe(FuzzedDataProvider& in) {
    Function* f = Pick(in);
    if (f == nullptr) return;
    bool ecam = UseEcam(in);
    uint8_t dev = f->slot;
    (void)ConfigRead(ecam, dev, 0, pci::kVendorId, 4);
    for (uint16_t reg : {pci::kBar0, static_cast<uint16_t>(pci::kBar0 + 4)}) {
      ConfigWrite(ecam, dev, 0, reg, 4, 0xffffffff);
      (void)ConfigRead(ecam, dev, 0, reg, 4);
    }
    uint64_t bar =
        in.ConsumeIntegralInRange(0, 7) == 7 ? in.ConsumeIntegral<uint64_t>() : f->allocated_bar;
    ConfigWrite(ecam, dev, 0, pci::kBar0, 4, bar & 0xffffffff);
    ConfigWrite(ecam, dev, 0, pci::kBar0 + 4, 4, bar >> 32);
    ConfigWrite(ecam, dev, 0, pci::kCommand, 2, kCommandDecode);
    for (uint16_t
             at = static_cast<uint16_t>(ConfigRead(ecam, dev, 0, pci::kCapabilitiesPointer, 1)),
             hops = 0;
         at != 0 && at < pci::kConfigSize && hops < 48; ++hops) {
      (void)ConfigRead(ecam, dev, 0, at, 4);
      if (ConfigRead(ecam, dev, 0, at, 1) == pci::kCapIdVendor) {
        (void)ConfigRead(ecam, dev, 0, at + 8, 4);
        (void)ConfigRead(ecam, dev, 0, at + 12, 4);
      }
      at = static_cast<uint16_t>(ConfigRead(ecam, dev, 0, at + 1, 1));
    }
    uint64_t base = BarBase(*f);
    uint16_t control = pci::kMsixControlEnable | pci::kMsixControlFunctionMask;
    ConfigWrite(ecam, dev, 0, f->msix_cap + 2, 2, control);
    for (uint16_t v = 0; v < f->vectors; ++v) {
      uint64_t entry = base + PciTransport::kMsixTableOffset + 16 * v;
      Write32(entry, static_cast<uint32_t>(layout::kLapicAddr | v << 12));
      Write32(entry + 4, 0);
      Write32(entry + 8, 0x40 + v);
      Write32(entry + 12, 0);
    }
    ConfigWrite(ecam, dev, 0, f->msix_cap + 2, 2, pci::kMsixControlEnable);
    Handshake(in, *f, base);
  }

  // A chain of up to four descriptors in a queue the probe set up, then its notification.
  void Chain(FuzzedDataProvider& in) {
    Function* f = Pick(in);
    if (f == nullptr) return;
    int q = in.ConsumeIntegralInRange(0, kMaxQueues - 1);
    if (f->sizes[q] == 0) return;
    fuzz::WriteChain(in, memory_, f->rings + 0x4000 * q, f->sizes[q], &f->avail_idx[q]);
    (void)Mmio(BarBase(*f) + PciTransport::kNotifyOffset + PciTransport::kNotifyMultiplier * q, 2,
               true, static_cast<uint64_t>(q));
    Poll();
  }

  // Acknowledges what happened: ISR (read-to-clear), the PBA.
  void Acknowledge(FuzzedDataProvider& in) {
    Poll();
    Function* f = Pick(in);
    if (f == nullptr) return;
    (void)Mmio(BarBase(*f) + PciTransport::kIsrOffset, 1, false, 0);
    (void)Mmio(BarBase(*f) + PciTransport::kMsixPbaOffset, 8, false, 0);
  }

  void Poke(FuzzedDataProvider& in) { fuzz::PokeRam(in, memory_); }

 private:
  static uint64_t EcamAddress(uint8_t dev, uint8_t fn, uint16_t reg) {
    return layout::kPciEcamBase + (uint64_t{dev} << 15 | uint64_t{fn} << 12 | reg);
  }
  void SelectPorts(uint8_t dev, uint8_t fn, uint16_t reg) {
    uint32_t address = 1u << 31 | uint32_t{dev} << 11 | uint32_t{fn} << 8 | (reg & 0xfc);
    pio_.Write(layout::kPciConfigPorts, {reinterpret_cast<const uint8_t*>(&address), 4});
  }

  Function* At(uint8_t slot) {
    for (auto& f : functions_) {
      if (f->slot == slot) return f.get();
    }
    return nullptr;
  }
  Function* Pick(FuzzedDataProvider& in) {
    if (functions_.empty()) return nullptr;
    return functions_[in.ConsumeIntegralInRange<size_t>(0, functions_.size() - 1)].get();
  }

  // What a configuration read must return (see the header comment).
  void CheckConfigRead(uint8_t dev, uint8_t fn, uint16_t reg, std::span<const uint8_t> data) {
    size_t n = data.size();
    const fuzz::Identity* id = fn != 0    ? nullptr
                               : dev == 0 ? &bridge_
                               : At(dev)  ? &At(dev)->identity
                                          : nullptr;
    bool valid = (n == 1 || n == 2 || n == 4) && reg % n == 0;
    for (size_t i = 0; i < n; ++i) {
      if (!valid || id == nullptr) {
        if (data[i] != 0xff)
          Fail("a malformed access or an absent function read other than all ones");
      } else if (reg >= pci::kConfigSize) {
        if (data[i] != 0) Fail("extended configuration space of a present function read non-zero");
      } else if (auto it = id->bytes.find(static_cast<uint16_t>(reg + i));
                 it != id->bytes.end() && it->second != data[i]) {
        Fail("a read-only configuration register read something else than the function's");
      }
    }
  }

  // Host-side walk of the capability list (as the guest would find it).
  void FindCapabilities(Function& f) {
    auto get = [&](uint16_t at) {
      uint8_t b = 0;
      f.transport->ConfigRead(at, {&b, 1});
      return b;
    };
    for (uint8_t at = get(pci::kCapabilitiesPointer), hops = 0; at != 0 && hops < 48; ++hops) {
      if (get(at) == pci::kCapIdMsix) f.msix_cap = at;
      if (get(at) == pci::kCapIdVendor && get(at + 3) == vp::kCapPciCfg) f.pci_cfg_cap = at;
      at = get(at + 1);
    }
    if (f.msix_cap == 0 || f.pci_cfg_cap == 0) std::abort();
  }

  // Where BAR 0 is programmed now (what the guest would read).
  uint64_t BarBase(const Function& f) const {
    uint32_t low = 0, high = 0;
    f.transport->ConfigRead(pci::kBar0, {reinterpret_cast<uint8_t*>(&low), 4});
    f.transport->ConfigRead(pci::kBar0 + 4, {reinterpret_cast<uint8_t*>(&high), 4});
    return uint64_t{high} << 32 | (low & ~0xfu);
  }

  // An offset into BAR 0: a register of one of its regions, or anything in and around it.
  static uint64_t BarOffset(FuzzedDataProvider& in, const Function& f) {
    switch (in.ConsumeIntegralInRange(0, 7)) {
      case 0:
        return in.ConsumeIntegralInRange<uint64_t>(0, vp::kCommonCfgSize + 7);
      case 1:
        return PciTransport::kIsrOffset + in.ConsumeIntegralInRange(0, 4);
      case 2:
        return PciTransport::kDeviceCfgOffset + in.ConsumeIntegralInRange(0, 0x40);
      case 3:
        return PciTransport::kNotifyOffset + in.ConsumeIntegralInRange(0, 4 * f.queues + 3);
      case 4:
        return PciTransport::kMsixTableOffset + in.ConsumeIntegralInRange(0, 16 * f.vectors + 15);
      case 5:
        return PciTransport::kMsixPbaOffset + in.ConsumeIntegralInRange(0, 15);
      case 6:
        return in.ConsumeIntegralInRange<uint64_t>(0, kBarSize + 15);
      default:
        return -in.ConsumeIntegralInRange<uint64_t>(1, 8);  // straddles the BAR's start
    }
  }
  static size_t NaturalWidth(uint64_t offset) {
    if (offset < vp::kCommonCfgSize) {
      if (offset >= vp::kQueueDesc) return 4;
      if (offset == vp::kDeviceStatus || offset == vp::kConfigGeneration) return 1;
      return offset < vp::kConfigMsixVector ? 4 : 2;
    }
    if (offset >= PciTransport::kNotifyOffset && offset < PciTransport::kMsixTableOffset) return 2;
    return offset >= PciTransport::kMsixTableOffset ? 4 : 1;
  }

  void Write8(uint64_t a, uint8_t v) { (void)Mmio(a, 1, true, v); }
  void Write16(uint64_t a, uint16_t v) { (void)Mmio(a, 2, true, v); }
  void Write32(uint64_t a, uint32_t v) { (void)Mmio(a, 4, true, v); }
  uint32_t Read32(uint64_t a) { return static_cast<uint32_t>(Mmio(a, 4, false, 0)); }

  // Linux's virtio_pci_modern probe and virtio_dev_probe / vp_find_vqs.
  void Handshake(FuzzedDataProvider& in, Function& f, uint64_t base) {
    auto common = [base](uint64_t field) { return base + PciTransport::kCommonOffset + field; };
    Write8(common(vp::kDeviceStatus), 0);
    Write8(common(vp::kDeviceStatus), kStatusAcknowledge);
    Write8(common(vp::kDeviceStatus), kStatusAcknowledge | kStatusDriver);
    uint64_t offered = 0;
    for (uint32_t word = 0; word < 2; ++word) {
      Write32(common(vp::kDeviceFeatureSelect), word);
      offered |= uint64_t{Read32(common(vp::kDeviceFeature))} << (32 * word);
    }
    uint64_t accept = (offered & in.ConsumeIntegral<uint64_t>()) | FeatureBit(kFeatureVersion1);
    for (uint32_t word = 0; word < 2; ++word) {
      Write32(common(vp::kDriverFeatureSelect), word);
      Write32(common(vp::kDriverFeature), static_cast<uint32_t>(accept >> (32 * word)));
    }
    Write8(common(vp::kDeviceStatus), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    (void)Mmio(common(vp::kDeviceStatus), 1, false, 0);
    for (uint16_t q = 0; q < std::min<uint16_t>(f.queues, kMaxQueues); ++q) {
      Write16(common(vp::kQueueSelect), q);
      auto max = static_cast<uint16_t>(Mmio(common(vp::kQueueSize), 2, false, 0));
      if (max == 0) break;
      auto size = std::min<uint16_t>(max, uint16_t{1} << in.ConsumeIntegralInRange(0, 8));
      f.sizes[q] = size;
      f.avail_idx[q] = 0;
      uint64_t ring = f.rings + 0x4000 * q;
      Write16(common(vp::kQueueSize), size);
      Write16(common(vp::kQueueMsixVector), static_cast<uint16_t>(q + 1));
      for (auto [field, addr] : {std::pair{vp::kQueueDesc, ring},
                                 {vp::kQueueDriver, ring + 0x1000},
                                 {vp::kQueueDevice, ring + 0x2000}}) {
        Write32(common(field), static_cast<uint32_t>(addr));
        Write32(common(field) + 4, static_cast<uint32_t>(addr >> 32));
      }
      Write16(common(vp::kQueueEnable), 1);
    }
    Write16(common(vp::kConfigMsixVector), 0);
    Write8(common(vp::kDeviceStatus),
           kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }

  // The MSI-X promises (header comment) against the table as it is now. Host-side reads:
  // the guest never sees them.
  void Verify() {
    for (auto& f : functions_) {
      uint32_t status = f->transport->status();
      if ((status & kStatusDriverOk) && !(status & kStatusFeaturesOk)) {
        Fail("DRIVER_OK without FEATURES_OK");
      }
      uint16_t control = 0;
      f->transport->ConfigRead(f->msix_cap + 2, {reinterpret_cast<uint8_t*>(&control), 2});
      bool enabled = control & pci::kMsixControlEnable;
      bool function_masked = control & pci::kMsixControlFunctionMask;
      if (enabled != f->transport->msix_enabled())
        Fail("MSI-X enable differs from Message Control");
      uint64_t pending = 0;
      f->transport->BarRead(PciTransport::kBar, PciTransport::kMsixPbaOffset,
                            {reinterpret_cast<uint8_t*>(&pending), 8});
      std::vector<bool> deliverable(f->vectors);
      for (uint16_t v = 0; v < f->vectors; ++v) {
        uint32_t e[4];
        for (int i = 0; i < 4; ++i) {
          f->transport->BarRead(PciTransport::kBar, PciTransport::kMsixTableOffset + 16 * v + 4 * i,
                                {reinterpret_cast<uint8_t*>(&e[i]), 4});
        }
        deliverable[v] = enabled && !function_masked && !(e[3] & pci::kMsixVectorMasked);
        if (!deliverable[v]) continue;
        auto route = f->sink->routes.find(v);
        if (route == f->sink->routes.end() ||
            !(route->second == pci::MsiMessage{uint64_t{e[1]} << 32 | e[0], e[2]})) {
          Fail("a deliverable MSI-X vector is not routed to its table entry's message");
        }
        if (v < 64 && (pending >> v & 1)) Fail("a deliverable MSI-X vector left pending");
      }
      for (uint16_t v : f->sink->signals) {
        if (v >= f->vectors || !deliverable[v]) Fail("an MSI-X message from a masked vector");
      }
      f->sink->signals.clear();
    }
  }

  asio::io_context* loop_;
  testing::FakeDriver memory_;  // only its guest RAM: 4 MiB, a 1 MiB hole, 4 MiB
  Bus mmio_;
  Bus pio_;
  std::shared_ptr<testing::FakeIrqLine> irq_;
  std::shared_ptr<AcpiGed> ged_;
  pci::PciBus bus_;
  pci::AddressAllocator bars_;
  fuzz::Identity bridge_;
  uint64_t access_addr_ = 0;  // the MMIO access in progress
  std::vector<uint32_t> ejected_;
  std::vector<std::unique_ptr<Function>> functions_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kite::SetLogLevel(kite::LogLevel::Off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  asio::io_context loop;
  {
    Guest guest(&loop);
    guest.HotAdd(in.ConsumeIntegral<uint8_t>(), false);  // a cold-plugged function in slot 1
    for (int steps = 0; in.remaining_bytes() > 0 && steps < 256; ++steps) {
      switch (in.ConsumeIntegralInRange(0, 13)) {
        case 0:
          guest.ConfigAccess(in, true);
          break;
        case 1:
          guest.ConfigAccess(in, false);
          break;
        case 2:
          guest.SizeBar(in);
          break;
        case 3:
          guest.PlaceBar(in);
          break;
        case 4:
          guest.PciCfgWindow(in);
          break;
        case 5:
          guest.BarAccess(in);
          break;
        case 6:
          guest.RawMmio(in);
          break;
        case 7:
          guest.RawPio(in);
          break;
        case 8:
          guest.MsixAccess(in);
          break;
        case 9:
          guest.Hotplug(in);
          break;
        case 10:
          guest.Probe(in);
          break;
        case 11:
          guest.Chain(in);
          break;
        case 12:
          guest.Poke(in);
          break;
        default:
          guest.Acknowledge(in);
          break;
      }
    }
    guest.Poll();
  }  // unplugs every function: resets the devices, waits for their in-flight I/O
  loop.restart();
  loop.poll();
  return 0;
}
