// hvm_start_info for PVH boots (xen/include/public/arch-x86/hvm/start_info.h).
#include "vmm/boot/pvh.h"

#include "vmm/layout.h"

namespace kite::boot {

static_assert(sizeof(HvmStartInfo) == 56);
static_assert(sizeof(HvmModlistEntry) == 32);
static_assert(sizeof(HvmMemmapEntry) == 24);

Result<GuestAddr> WritePvhStartInfo(const GuestMemory& memory, const PvhParams& p) {
  const uint64_t start = layout::kPvhStartInfoAddr;
  const uint64_t memmap = start + 64;  // sizeof(HvmStartInfo) rounded up
  const uint64_t modlist = memmap + p.memmap.size() * sizeof(HvmMemmapEntry);
  const uint32_t nr_modules = p.initrd_size > 0 ? 1 : 0;
  if (modlist + nr_modules * sizeof(HvmModlistEntry) > layout::kZeroPageAddr) {
    return Err("PVH memory map has too many entries (" + std::to_string(p.memmap.size()) + ")");
  }
  for (size_t i = 0; i < p.memmap.size(); ++i) {
    HvmMemmapEntry e{p.memmap[i].addr, p.memmap[i].size, p.memmap[i].type, 0};
    TRY(memory.WriteObj(GuestAddr(memmap + i * sizeof(e)), e));
  }
  if (nr_modules) {
    TRY(memory.WriteObj(GuestAddr(modlist), HvmModlistEntry{p.initrd.value, p.initrd_size, 0, 0}));
  }
  HvmStartInfo info{};
  info.magic = kHvmStartMagic;
  info.version = 1;
  info.nr_modules = nr_modules;
  info.modlist_paddr = nr_modules ? modlist : 0;
  info.cmdline_paddr = p.cmdline.value;
  info.rsdp_paddr = p.acpi_rsdp;
  info.memmap_paddr = memmap;
  info.memmap_entries = static_cast<uint32_t>(p.memmap.size());
  TRY(memory.WriteObj(GuestAddr(start), info));
  return GuestAddr(start);
}

}  // namespace kite::boot
