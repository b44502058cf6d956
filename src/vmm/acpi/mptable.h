// The Intel MultiProcessor Specification 1.4 tables, for guests booted without ACPI
// (`--no-acpi`): a floating pointer structure at layout::kMpTableAddr (inside the first KiB
// of the EBDA, where Linux looks) followed by the configuration table: one processor entry
// per vCPU (APIC ID = index, BSP = 0), an ISA bus, the IOAPIC, ISA IRQs 0-15 wired 1:1 to
// IOAPIC pins 0-15 (KVM's default GSI routing), and ExtINT/NMI on every LAPIC's LINT0/LINT1.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"
#include "vmm/guest_memory.h"

namespace kite::acpi {

inline constexpr uint32_t kMpMaxCpus = 254;  // APIC IDs 0..253, the IOAPIC takes the next
inline constexpr uint8_t kMpIsaBusId = 0;
// One I/O interrupt entry per IOAPIC pin (KVM's IOAPIC has 24), identity-mapped and on the
// ISA bus (edge, active high) as Firecracker does: the legacy IRQs 0-15 and the virtio-mmio
// lines above 15 that --no-acpi guests learn from `virtio_mmio.device=`.
inline constexpr uint32_t kMpIsaIrqs = 24;

// The floating pointer followed by the configuration table, as written at `base_addr`.
// Refuses 0 or more than kMpMaxCpus vCPUs.
Result<std::vector<uint8_t>> BuildMpTable(uint32_t num_cpus, uint64_t base_addr);

// Writes the MP table at layout::kMpTableAddr. Refuses a table reaching the BIOS area
// (layout::kBiosAreaStart).
Result<void> WriteMpTable(const GuestMemory& memory, uint32_t num_cpus);

}  // namespace kite::acpi
