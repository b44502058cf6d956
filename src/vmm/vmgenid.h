// Virtual Machine Generation ID (Microsoft, "Virtual Machine Generation ID"): a 128-bit
// id in guest memory that changes whenever the VM may be a copy of an earlier one (restored
// from a snapshot, cloned). A guest that sees it change must not reuse what it derived from
// the old state — above all its RNG: every clone of one snapshot starts with the same pool.
//
// The id lives at layout::kVmGenIdAddr (a page reserved in e820, nothing else there). The
// DSDT's \_SB.VGEN ("VMGENCTR", vmm/acpi/dsdt.cc) returns that address from ADDR; Linux's
// drivers/virt/vmgenid.c reads the id at probe, and on Notify (VGEN, 0x80) — sent by the GED's
// _EVT for kGedEventVmGenId (devices/acpi_ged.h) — reads it again and, when it changed,
// reseeds (add_vmfork_randomness). So a restore writes a new id, then triggers that event.
//
// The VMM writes the id only while it builds or restores the VM and before it raises the GED
// event, so a guest reading it never races a write.
#pragma once

#include <array>
#include <cstdint>

#include "base/result.h"
#include "vmm/guest_memory.h"

namespace kite {

using VmGenId = std::array<uint8_t, 16>;

// A fresh id: a random RFC 4122 version-4 GUID (122 random bits from getrandom(2)), in the
// byte order the spec and Windows use for a GUID in memory: the first three fields
// little-endian, so the version nibble is the high nibble of byte 7 and the variant bits
// (10xx) the top of byte 8, as Linux's generate_random_guid() lays it out.
VmGenId NewVmGenId();

// Writes / reads the id at layout::kVmGenIdAddr. Fails when guest RAM does not cover it.
Result<void> WriteVmGenId(const GuestMemory& memory, const VmGenId& id);
Result<VmGenId> ReadVmGenId(const GuestMemory& memory);

}  // namespace kite
