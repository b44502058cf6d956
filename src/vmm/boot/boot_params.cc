// The e820 map and the command line: the parts of the zero page that do not depend on the
// kernel format. boot_params itself is filled in by the ELF and bzImage loaders.
#include "vmm/boot/boot_params.h"

#include <algorithm>
#include <cstddef>

#include "vmm/layout.h"

namespace kite::boot {

static_assert(sizeof(SetupHeader) == 0x26c - 0x1f1);
static_assert(offsetof(SetupHeader, header) == 0x202 - 0x1f1);
static_assert(offsetof(SetupHeader, type_of_loader) == 0x210 - 0x1f1);
static_assert(offsetof(SetupHeader, cmd_line_ptr) == 0x228 - 0x1f1);
static_assert(offsetof(SetupHeader, xloadflags) == 0x236 - 0x1f1);
static_assert(offsetof(SetupHeader, pref_address) == 0x258 - 0x1f1);
static_assert(offsetof(SetupHeader, init_size) == 0x260 - 0x1f1);
static_assert(sizeof(E820Entry) == 20);
static_assert(sizeof(BootParams) == 4096);
static_assert(offsetof(BootParams, acpi_rsdp_addr) == 0x070);
static_assert(offsetof(BootParams, ext_ramdisk_image) == 0x0c0);
static_assert(offsetof(BootParams, e820_entries) == 0x1e8);
static_assert(offsetof(BootParams, hdr) == 0x1f1);
static_assert(offsetof(BootParams, e820_table) == 0x2d0);

namespace {

// Appends RAM for [begin, end) minus the reserved windows below 4 GiB.
void AddRam(uint64_t begin, uint64_t end, std::vector<E820Entry>& out) {
  struct Hole {
    uint64_t begin, end;
  };
  constexpr Hole kHoles[] = {{layout::kEbdaStart, layout::kHighMemStart},
                             {layout::kMmioHoleStart, layout::kMmioHoleEnd}};
  for (const Hole& hole : kHoles) {
    if (begin >= end) return;
    if (end <= hole.begin || begin >= hole.end) continue;
    if (begin < hole.begin) out.push_back({begin, hole.begin - begin, kE820Ram});
    begin = std::max(begin, hole.end);
  }
  if (begin < end) out.push_back({begin, end - begin, kE820Ram});
}

}  // namespace

Result<std::vector<E820Entry>> BuildE820(std::span<const MemoryRegion> regions) {
  std::vector<E820Entry> map;
  for (const MemoryRegion& r : regions) {
    AddRam(r.guest_base.value, r.guest_base.value + r.size, map);
  }
  map.push_back({layout::kEbdaStart, layout::kHighMemStart - layout::kEbdaStart, kE820Reserved});
  std::sort(map.begin(), map.end(),
            [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
  if (map.size() > kE820MaxEntries) {
    return Err("guest memory has too many regions for the e820 map (" + std::to_string(map.size()) +
               " > " + std::to_string(kE820MaxEntries) + ")");
  }
  return map;
}

BootParams BuildZeroPage(const ZeroPageParams& p) {
  BootParams bp{};
  if (p.kernel_hdr != nullptr) {
    bp.hdr = *p.kernel_hdr;  // the protocol asks the loader to start from the file's header
    bp.hdr.setup_data = 0;   // a loader-owned field: never pass on what the file says
  } else {
    bp.hdr.boot_flag = kBootFlag;
    bp.hdr.header = kHdrSMagic;
    bp.hdr.kernel_alignment = 0x1000000;
    bp.hdr.cmdline_size = kLinuxCmdlineSize;
  }
  bp.hdr.type_of_loader = kLoaderTypeUndefined;
  bp.hdr.cmd_line_ptr = static_cast<uint32_t>(p.cmdline.value);
  bp.ext_cmd_line_ptr = static_cast<uint32_t>(p.cmdline.value >> 32);
  bp.hdr.ramdisk_image = static_cast<uint32_t>(p.initrd.value);
  bp.ext_ramdisk_image = static_cast<uint32_t>(p.initrd.value >> 32);
  bp.hdr.ramdisk_size = static_cast<uint32_t>(p.initrd_size);
  bp.ext_ramdisk_size = static_cast<uint32_t>(p.initrd_size >> 32);
  bp.acpi_rsdp_addr = p.acpi_rsdp;
  size_t n = std::min(p.e820.size(), kE820MaxEntries);
  for (size_t i = 0; i < n; ++i) bp.e820_table[i] = p.e820[i];
  bp.e820_entries = static_cast<uint8_t>(n);
  return bp;
}

Result<void> CheckCmdline(std::string_view cmdline, uint64_t max_len) {
  if (cmdline.find('\0') != std::string_view::npos) {
    return Err("kernel command line contains a NUL byte at offset " +
               std::to_string(cmdline.find('\0')));
  }
  uint64_t limit = std::min(max_len, layout::kCmdlineMax - 1);
  if (cmdline.size() > limit) {
    return Err("kernel command line is " + std::to_string(cmdline.size()) +
               " bytes; the kernel accepts at most " + std::to_string(limit));
  }
  return {};
}

Result<GuestAddr> WriteCmdline(const GuestMemory& memory, std::string_view cmdline) {
  TRY(CheckCmdline(cmdline, layout::kCmdlineMax - 1));
  GuestAddr addr(layout::kCmdlineAddr);
  TRY_CTX(memory.Write(addr, cmdline.data(), cmdline.size()), "writing the command line");
  TRY_CTX(memory.WriteObj<uint8_t>(addr + cmdline.size(), 0), "writing the command line");
  return addr;
}

}  // namespace kite::boot
