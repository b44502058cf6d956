// bzImage parsing and loading, per Documentation/arch/x86/boot.rst ("The Linux/x86 Boot
// Protocol"): the setup header at 0x1f1, setup_sects (0 means 4), protocol versions, and the
// 64-bit entry at the protected-mode part's load address + 0x200.
#include "vmm/boot/bzimage.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "base/units.h"
#include "vmm/boot/hex.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

constexpr uint64_t kMaxPrefAddress = 1ull << 40;

std::string ProtocolString(uint16_t version) {
  return std::to_string(version >> 8) + "." + (((version & 0xff) < 10) ? "0" : "") +
         std::to_string(version & 0xff);
}

// Reads the setup header: up to 0x202 + the byte at 0x201 (its end, per the protocol).
Result<SetupHeader> ReadSetupHeader(const KernelFile& file) {
  uint8_t jump_len = 0;
  if (file.size() < 0x206) return Err(file.name() + ": too short for a bzImage setup header");
  TRY(file.ReadAt(0x201, {&jump_len, 1}));
  uint64_t end = std::min<uint64_t>(0x202 + jump_len, kSetupHeaderOffset + sizeof(SetupHeader));
  end = std::min(end, file.size());
  if (end < offsetof(SetupHeader, cmdline_size) + 4 + kSetupHeaderOffset) {
    return Err(file.name() + ": bzImage setup header ends at " + Hex(end) +
               ", too short for boot protocol 2.12 fields");
  }
  SetupHeader hdr{};
  TRY(file.ReadAt(kSetupHeaderOffset, {reinterpret_cast<uint8_t*>(&hdr),
                                       static_cast<size_t>(end - kSetupHeaderOffset)}));
  return hdr;
}

Result<void> CheckProtocol(const KernelFile& file, const SetupHeader& hdr) {
  const std::string& f = file.name();
  if (hdr.boot_flag != kBootFlag) {
    return Err(f + ": bzImage boot_flag is " + Hex(hdr.boot_flag) + ", expected 0xaa55");
  }
  if (hdr.version < kMinBzImageProtocol) {
    return Err(f + ": bzImage boot protocol " + ProtocolString(hdr.version) +
               " is too old (kite needs 2.12+ for the 64-bit entry point)");
  }
  if (!(hdr.loadflags & kLoadedHigh)) {
    return Err(f +
               ": bzImage loadflags lack LOADED_HIGH (a zImage loaded at 0x10000 is "
               "not supported)");
  }
  if (!(hdr.xloadflags & kXlfKernel64)) {
    return Err(f + ": bzImage xloadflags lack XLF_KERNEL_64 (no 64-bit entry point)");
  }
  if (hdr.code32_start < layout::kHighMemStart) {
    return Err(f + ": bzImage code32_start " + Hex(hdr.code32_start) + " is below 1 MiB");
  }
  return {};
}

}  // namespace

bool HasBzImageMagic(std::span<const uint8_t> head) {
  uint32_t magic = 0;
  if (head.size() < 0x206) return false;
  std::memcpy(&magic, head.data() + 0x202, 4);
  return magic == kHdrSMagic;
}

Result<BzImageKernel> ParseBzImage(const KernelFile& file, const GuestMemory& memory) {
  BzImageKernel k;
  k.hdr = TRY(ReadSetupHeader(file));
  if (k.hdr.header != kHdrSMagic) return Err(file.name() + ": no \"HdrS\" at offset 0x202");
  TRY(CheckProtocol(file, k.hdr));
  uint64_t sects = k.hdr.setup_sects == 0 ? 4 : k.hdr.setup_sects;
  k.setup_size = (sects + 1) * 512;
  if (k.setup_size >= file.size()) {
    return Err(file.name() + ": bzImage setup_sects " + std::to_string(k.hdr.setup_sects) +
               " (setup code " + std::to_string(k.setup_size) + " bytes) leaves no kernel in a " +
               std::to_string(file.size()) + "-byte file");
  }
  k.load_addr = k.hdr.code32_start;
  k.payload_size = file.size() - k.setup_size;
  // The kernel decompresses itself at max(load address, pref_address) (aligned) and needs
  // init_size bytes there before it reads the memory map.
  if (k.hdr.pref_address > kMaxPrefAddress) {
    return Err(file.name() + ": bzImage pref_address " + Hex(k.hdr.pref_address) + " is beyond " +
               Hex(kMaxPrefAddress));
  }
  // A copy: std::max takes references, and the packed header's field is misaligned.
  const uint64_t pref_address = k.hdr.pref_address;
  uint64_t runtime_start = std::max(k.load_addr, pref_address);
  if (k.hdr.kernel_alignment > 1 && (k.hdr.kernel_alignment & (k.hdr.kernel_alignment - 1)) == 0) {
    uint64_t mask = k.hdr.kernel_alignment - 1;
    runtime_start = (runtime_start + mask) & ~mask;
  }
  k.kernel_end = std::max(k.load_addr + k.payload_size, runtime_start + k.hdr.init_size);
  if (!memory.IsValidRange(GuestAddr(k.load_addr), k.kernel_end - k.load_addr)) {
    return Err(file.name() + ": the kernel needs guest RAM [" + Hex(k.load_addr) + ", " +
               Hex(k.kernel_end) + ") (code32_start, pref_address, init_size), but RAM is " +
               FormatSize(memory.total_size()));
  }
  return k;
}

Result<void> LoadBzImage(const KernelFile& file, const GuestMemory& memory,
                         const BzImageKernel& kernel) {
  return file.CopyToGuest(memory, GuestAddr(kernel.load_addr), kernel.setup_size,
                          kernel.payload_size);
}

}  // namespace kite::boot
