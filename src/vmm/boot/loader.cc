// LoadKernel: detects the kernel format, checks everything (kernel headers, command line,
// initrd placement) before writing anything, then loads the kernel and initrd and writes the
// command line and boot_params or hvm_start_info.
#include "vmm/boot/loader.h"

#include <array>
#include <optional>
#include <variant>

#include "vmm/boot/boot_params.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/elf.h"
#include "vmm/boot/initrd.h"
#include "vmm/boot/kernel_file.h"
#include "vmm/boot/pvh.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

using Kernel = std::variant<ElfKernel, BzImageKernel>;

Result<Kernel> ParseKernel(const KernelFile& file, const GuestMemory& memory) {
  std::array<uint8_t, 0x206> head{};
  std::span<uint8_t> got(head.data(), std::min<uint64_t>(head.size(), file.size()));
  TRY(file.ReadAt(0, got));
  if (HasElfMagic(got)) return Kernel(TRY(ParseElf(file, memory)));
  if (HasBzImageMagic(got)) return Kernel(TRY(ParseBzImage(file, memory)));
  return Err(file.name() +
             ": invalid kernel image: not an ELF or bzImage (no ELF magic, no \"HdrS\" at 0x202)");
}

struct Initrd {
  std::optional<KernelFile> file;
  GuestAddr addr;
  uint64_t size = 0;
};

Result<Initrd> PrepareInitrd(const GuestMemory& memory, const KernelSpec& spec,
                             const InitrdLimits& limits) {
  Initrd initrd;
  if (spec.initrd_path.empty()) return initrd;
  initrd.file = TRY(KernelFile::Open(spec.initrd_path, "initrd"));
  initrd.size = initrd.file->size();
  initrd.addr = TRY_CTX(PlaceInitrd(memory.regions(), initrd.size, limits), initrd.file->name());
  return initrd;
}

// The entry mode and the limits the kernel sets for the command line and the initrd.
struct Decision {
  BootPlan plan;
  uint64_t cmdline_max = kLinuxCmdlineSize;
  InitrdLimits initrd_limits{.lowest = 0, .addr_max = UINT32_MAX};
};

Decision Decide(const Kernel& kernel, const KernelSpec& spec) {
  Decision d;
  if (const auto* elf = std::get_if<ElfKernel>(&kernel)) {
    bool pvh = elf->pvh_entry.has_value() && spec.prefer_pvh;
    d.plan.mode = pvh ? EntryMode::kPvh : EntryMode::kLinux64;
    d.plan.entry = pvh ? *elf->pvh_entry : elf->entry;
    d.plan.kernel_kind = pvh ? "ELF vmlinux (PVH)" : "ELF vmlinux";
    d.plan.kernel_end = elf->end;
  } else {
    const auto& bz = std::get<BzImageKernel>(kernel);
    d.plan.mode = EntryMode::kLinux64;
    d.plan.entry = GuestAddr(bz.load_addr + kBzImage64BitEntryOffset);
    d.plan.kernel_kind = "bzImage";
    d.plan.kernel_end = bz.kernel_end;
    d.cmdline_max = bz.hdr.cmdline_size;
    d.initrd_limits.addr_max = bz.hdr.initrd_addr_max;
  }
  d.initrd_limits.lowest = d.plan.kernel_end;
  return d;
}

Result<void> LoadImages(const GuestMemory& memory, const KernelFile& file, const Kernel& kernel,
                        const Initrd& initrd) {
  if (const auto* elf = std::get_if<ElfKernel>(&kernel)) {
    TRY(LoadSegments(file, memory, elf->segments));
  } else {
    TRY(LoadBzImage(file, memory, std::get<BzImageKernel>(kernel)));
  }
  if (initrd.file) TRY(initrd.file->CopyToGuest(memory, initrd.addr, 0, initrd.size));
  return {};
}

// Writes hvm_start_info (PVH) or boot_params (64-bit entry); returns its address.
Result<GuestAddr> WriteBootInfo(const GuestMemory& memory, const Kernel& kernel, EntryMode mode,
                                const KernelSpec& spec, const Initrd& initrd) {
  std::vector<E820Entry> e820 = TRY(BuildE820(memory.regions()));
  GuestAddr cmdline = TRY(WriteCmdline(memory, spec.cmdline));
  if (mode == EntryMode::kPvh) {
    return WritePvhStartInfo(memory, {.cmdline = cmdline,
                                      .initrd = initrd.addr,
                                      .initrd_size = initrd.size,
                                      .acpi_rsdp = spec.acpi_rsdp,
                                      .memmap = e820});
  }
  const auto* bz = std::get_if<BzImageKernel>(&kernel);
  BootParams bp = BuildZeroPage({.kernel_hdr = bz != nullptr ? &bz->hdr : nullptr,
                                 .cmdline = cmdline,
                                 .initrd = initrd.addr,
                                 .initrd_size = initrd.size,
                                 .acpi_rsdp = spec.acpi_rsdp,
                                 .e820 = e820});
  TRY_CTX(memory.WriteObj(GuestAddr(layout::kZeroPageAddr), bp), "writing boot_params");
  return GuestAddr(layout::kZeroPageAddr);
}

}  // namespace

Result<BootPlan> LoadKernel(const GuestMemory& memory, const KernelSpec& spec) {
  KernelFile file = TRY(KernelFile::Open(spec.kernel_path, "kernel"));
  Kernel kernel = TRY(ParseKernel(file, memory));
  Decision d = Decide(kernel, spec);
  TRY(CheckCmdline(spec.cmdline, d.cmdline_max));
  Initrd initrd = TRY(PrepareInitrd(memory, spec, d.initrd_limits));
  TRY(BuildE820(memory.regions()));  // the map must fit before anything is written

  // Everything is checked: from here on only writes into ranges known to be RAM.
  TRY(LoadImages(memory, file, kernel, initrd));
  d.plan.initrd_addr = initrd.addr;
  d.plan.initrd_size = initrd.size;
  d.plan.boot_info = TRY(WriteBootInfo(memory, kernel, d.plan.mode, spec, initrd));
  return d.plan;
}

}  // namespace kite::boot
