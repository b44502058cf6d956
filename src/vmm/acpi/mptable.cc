// MP floating pointer and configuration table (Intel MultiProcessor Specification 1.4,
// chapter 4). Entry layouts: Table 4-1 (floating pointer), 4-2 (header), 4-4 processor,
// 4-8 bus, 4-9 I/O APIC, 4-10 I/O interrupt, 4-12 local interrupt.
#include "vmm/acpi/mptable.h"

#include "vmm/acpi/sdt.h"
#include "vmm/layout.h"

namespace kite::acpi {
namespace {

constexpr size_t kFloatingPointerSize = 16;
constexpr size_t kHeaderSize = 44;
constexpr size_t kProcessorEntrySize = 20;
constexpr size_t kSmallEntrySize = 8;  // bus, I/O APIC, I/O and local interrupt entries
constexpr uint8_t kSpecRev = 4;        // 1.4

enum EntryType : uint8_t { kProcessor = 0, kBus = 1, kIoApic = 2, kIoInterrupt = 3, kLocalInt = 4 };
enum InterruptType : uint8_t { kIntINT = 0, kIntNMI = 1, kIntExtINT = 3 };

constexpr uint8_t kCpuEnabled = 1u << 0;
constexpr uint8_t kCpuBootstrap = 1u << 1;
constexpr uint8_t kApicVersion = 0x14;     // what KVM's in-kernel LAPIC reports
constexpr uint32_t kCpuSignature = 0x600;  // family 6; Linux does not rely on it
constexpr uint32_t kCpuFeatures = 0x201;   // FPU | APIC (CPUID.1:EDX bits 0, 9)
constexpr uint8_t kIoApicEnabled = 1u << 0;

size_t EntryCount(uint32_t num_cpus) {
  return num_cpus + 1 + 1 + kMpIsaIrqs + 2;
}

size_t TableSize(uint32_t num_cpus) {
  return kHeaderSize + num_cpus * kProcessorEntrySize +
         (EntryCount(num_cpus) - num_cpus) * kSmallEntrySize;
}

// I/O or local interrupt assignment entry; flags 0 = polarity and trigger conform to the bus.
void PutInterrupt(std::vector<uint8_t>& t, size_t off, uint8_t type, uint8_t int_type,
                  uint8_t src_irq, uint8_t dst_apic, uint8_t dst_pin) {
  Put8(t, off, type);
  Put8(t, off + 1, int_type);
  Put16(t, off + 2, 0);
  Put8(t, off + 4, kMpIsaBusId);
  Put8(t, off + 5, src_irq);
  Put8(t, off + 6, dst_apic);
  Put8(t, off + 7, dst_pin);
}

void PutEntries(std::vector<uint8_t>& t, size_t off, uint32_t num_cpus) {
  const uint8_t ioapic_id = static_cast<uint8_t>(num_cpus);
  for (uint32_t i = 0; i < num_cpus; ++i, off += kProcessorEntrySize) {
    Put8(t, off, kProcessor);
    Put8(t, off + 1, static_cast<uint8_t>(i));  // local APIC ID = vCPU index
    Put8(t, off + 2, kApicVersion);
    Put8(t, off + 3, kCpuEnabled | (i == 0 ? kCpuBootstrap : 0));
    Put32(t, off + 4, kCpuSignature);
    Put32(t, off + 8, kCpuFeatures);
  }
  Put8(t, off, kBus);
  Put8(t, off + 1, kMpIsaBusId);
  PutChars(t, off + 2, "ISA   ");
  off += kSmallEntrySize;
  Put8(t, off, kIoApic);
  Put8(t, off + 1, ioapic_id);
  Put8(t, off + 2, kApicVersion);
  Put8(t, off + 3, kIoApicEnabled);
  Put32(t, off + 4, static_cast<uint32_t>(layout::kIoapicAddr));
  off += kSmallEntrySize;
  for (uint8_t irq = 0; irq < kMpIsaIrqs; ++irq, off += kSmallEntrySize) {
    PutInterrupt(t, off, kIoInterrupt, kIntINT, irq, ioapic_id, irq);
  }
  PutInterrupt(t, off, kLocalInt, kIntExtINT, 0, 0xff, 0);                 // LINT0 of all LAPICs
  PutInterrupt(t, off + kSmallEntrySize, kLocalInt, kIntNMI, 0, 0xff, 1);  // LINT1
}

}  // namespace

Result<std::vector<uint8_t>> BuildMpTable(uint32_t num_cpus, uint64_t base_addr) {
  if (num_cpus == 0 || num_cpus > kMpMaxCpus) {
    return Err("MP table: " + std::to_string(num_cpus) + " vCPUs; expected 1 to " +
               std::to_string(kMpMaxCpus));
  }
  const size_t table_size = TableSize(num_cpus);
  const uint64_t table_addr = base_addr + kFloatingPointerSize;
  if (table_addr + table_size > 0xffffffff) return Err("MP table must lie below 4 GiB");
  std::vector<uint8_t> out(kFloatingPointerSize + table_size, 0);

  // Floating pointer: "_MP_", table address, length in 16-byte units, revision, checksum,
  // feature bytes all 0 (a configuration table is present; virtual-wire mode, no IMCR).
  PutChars(out, 0, "_MP_");
  Put32(out, 4, static_cast<uint32_t>(table_addr));
  Put8(out, 8, 1);
  Put8(out, 9, kSpecRev);
  Put8(out, 10, Checksum(std::span(out).first(kFloatingPointerSize)));

  // Configuration table, built in its own buffer so that its checksum covers exactly it.
  std::vector<uint8_t> t(table_size, 0);
  PutChars(t, 0, "PCMP");
  Put16(t, 4, static_cast<uint16_t>(table_size));
  Put8(t, 6, kSpecRev);
  PutChars(t, 8, "KITE    ");       // OEM ID (8)
  PutChars(t, 16, "KITEVMM     ");  // product ID (12)
  Put16(t, 34, static_cast<uint16_t>(EntryCount(num_cpus)));
  Put32(t, 36, static_cast<uint32_t>(layout::kLapicAddr));
  PutEntries(t, kHeaderSize, num_cpus);
  Put8(t, 7, Checksum(t));
  std::copy(t.begin(), t.end(), out.begin() + kFloatingPointerSize);
  return out;
}

Result<void> WriteMpTable(const GuestMemory& memory, uint32_t num_cpus) {
  std::vector<uint8_t> bytes = TRY(BuildMpTable(num_cpus, layout::kMpTableAddr));
  if (layout::kMpTableAddr + bytes.size() > layout::kBiosAreaStart) {
    return Err("MP table: " + std::to_string(bytes.size()) + " bytes reach the BIOS area");
  }
  TRY_CTX(memory.Write(GuestAddr(layout::kMpTableAddr), bytes.data(), bytes.size()),
          "writing the MP table");
  return {};
}

}  // namespace kite::acpi
