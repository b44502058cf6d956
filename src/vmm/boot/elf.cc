// ELF vmlinux parsing and loading. The ELF format: System V gABI and the x86_64 psABI; the PVH
// note: xen/include/public/elfnote.h (XEN_ELFNOTE_PHYS32_ENTRY, name "Xen", a 32-bit entry
// address, emitted by Linux as a pointer-sized value).
#include "vmm/boot/elf.h"

#include <elf.h>

#include <algorithm>
#include <cstring>

#include "base/units.h"
#include "vmm/boot/hex.h"
#include "vmm/layout.h"

namespace kite::boot {
namespace {

// Checks [offset, offset + len) lies in a file of `size` bytes, without overflow.
bool InFile(uint64_t offset, uint64_t len, uint64_t size) {
  return offset <= size && len <= size - offset;
}

Result<void> CheckElfHeader(const KernelFile& file, const Elf64_Ehdr& eh) {
  const std::string& f = file.name();
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return Err(f + ": not a 64-bit ELF (EI_CLASS)");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    return Err(f + ": big-endian ELF (EI_DATA); an x86_64 kernel is little-endian");
  }
  if (eh.e_machine != EM_X86_64) {
    return Err(f + ": ELF e_machine is " + std::to_string(eh.e_machine) + ", not x86_64 (62)");
  }
  if (eh.e_type != ET_EXEC) return Err(f + ": ELF e_type is not ET_EXEC (an executable)");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return Err(f + ": ELF e_phentsize is " + std::to_string(eh.e_phentsize) + ", expected " +
               std::to_string(sizeof(Elf64_Phdr)));
  }
  if (eh.e_phnum == 0 || eh.e_phnum > kElfMaxPhnum) {
    return Err(f + ": ELF e_phnum is " + std::to_string(eh.e_phnum) + ", expected 1.." +
               std::to_string(kElfMaxPhnum));
  }
  if (eh.e_phoff < sizeof(Elf64_Ehdr) ||
      !InFile(eh.e_phoff, uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr), file.size())) {
    return Err(f + ": ELF program headers at e_phoff " + Hex(eh.e_phoff) +
               " are not inside the file after the ELF header");
  }
  return {};
}

Result<LoadSegment> CheckLoadSegment(const KernelFile& file, const GuestMemory& memory,
                                     const Elf64_Phdr& ph, size_t index) {
  std::string what = file.name() + ": ELF segment " + std::to_string(index);
  if (ph.p_filesz > ph.p_memsz) {
    return Err(what + ": p_filesz " + Hex(ph.p_filesz) + " is larger than p_memsz " +
               Hex(ph.p_memsz));
  }
  if (!InFile(ph.p_offset, ph.p_filesz, file.size())) {
    return Err(what + ": file range [" + Hex(ph.p_offset) + ", +" + Hex(ph.p_filesz) +
               ") is past the end of the file");
  }
  if (ph.p_paddr + ph.p_memsz < ph.p_paddr) {
    return Err(what + ": p_paddr " + Hex(ph.p_paddr) + " + p_memsz overflows");
  }
  if (ph.p_paddr < layout::kHighMemStart) {
    return Err(what + ": p_paddr " + Hex(ph.p_paddr) +
               " is below 1 MiB, where kite keeps the boot structures");
  }
  if (ph.p_paddr + ph.p_memsz > layout::kMmioHoleEnd) {
    return Err(what + ": [" + Hex(ph.p_paddr) + ", " + Hex(ph.p_paddr + ph.p_memsz) +
               ") reaches above 4 GiB; the boot page tables map only the first 4 GiB");
  }
  if (!memory.IsValidRange(GuestAddr(ph.p_paddr), ph.p_memsz)) {
    return Err(what + ": [" + Hex(ph.p_paddr) + ", " + Hex(ph.p_paddr + ph.p_memsz) +
               ") is not inside guest RAM (RAM ends at " + Hex(memory.end().value) + ")");
  }
  return LoadSegment{ph.p_offset, ph.p_filesz, GuestAddr(ph.p_paddr), ph.p_memsz};
}

// Walks the notes of one PT_NOTE segment; returns the PVH entry if the Xen note is there.
Result<std::optional<uint64_t>> FindPvhEntry(const KernelFile& file, const Elf64_Phdr& ph) {
  const std::string what = file.name() + ": ELF note segment";
  if (ph.p_filesz > kElfMaxNoteSize || !InFile(ph.p_offset, ph.p_filesz, file.size())) {
    return Err(what + " at " + Hex(ph.p_offset) + " (" + std::to_string(ph.p_filesz) +
               " bytes) is too large or past the end of the file");
  }
  std::vector<uint8_t> notes(ph.p_filesz);
  TRY(file.ReadAt(ph.p_offset, notes));
  auto align4 = [](uint64_t n) { return (n + 3) & ~uint64_t{3}; };
  uint64_t pos = 0;
  while (notes.size() - pos >= sizeof(Elf64_Nhdr)) {
    Elf64_Nhdr nh;
    std::memcpy(&nh, notes.data() + pos, sizeof(nh));
    pos += sizeof(nh);
    // 32-bit sizes in 64-bit arithmetic: no overflow; each checked against what is left.
    uint64_t name_len = align4(nh.n_namesz), desc_len = align4(nh.n_descsz);
    if (name_len > notes.size() - pos || desc_len > notes.size() - pos - name_len) {
      return Err(what + ": note n_namesz " + std::to_string(nh.n_namesz) + " / n_descsz " +
                 std::to_string(nh.n_descsz) + " run past the end of the segment");
    }
    const uint8_t* name = notes.data() + pos;
    const uint8_t* desc = name + name_len;
    pos += name_len + desc_len;
    if (nh.n_type != kXenElfNotePhys32Entry || nh.n_namesz != 4 || std::memcmp(name, "Xen", 4)) {
      continue;
    }
    if (nh.n_descsz == 4) {
      uint32_t entry;
      std::memcpy(&entry, desc, 4);
      return std::optional<uint64_t>(entry);
    }
    if (nh.n_descsz == 8) {
      uint64_t entry;
      std::memcpy(&entry, desc, 8);
      return std::optional<uint64_t>(entry);
    }
    return Err(what + ": XEN_ELFNOTE_PHYS32_ENTRY has " + std::to_string(nh.n_descsz) +
               " bytes, expected 4 or 8");
  }
  return std::optional<uint64_t>();
}

// e_entry is normally physical (vmlinux links ENTRY(phys_startup_64)); a virtual one is
// translated through the segment that holds it.
Result<GuestAddr> ResolveEntry(const KernelFile& file, const Elf64_Ehdr& eh,
                               std::span<const Elf64_Phdr> loads) {
  for (const Elf64_Phdr& ph : loads) {
    if (eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_memsz) {
      return GuestAddr(eh.e_entry);
    }
  }
  for (const Elf64_Phdr& ph : loads) {
    if (eh.e_entry >= ph.p_vaddr && eh.e_entry - ph.p_vaddr < ph.p_memsz) {
      return GuestAddr(ph.p_paddr + (eh.e_entry - ph.p_vaddr));
    }
  }
  return Err(file.name() + ": ELF e_entry " + Hex(eh.e_entry) +
             " is not inside any PT_LOAD segment");
}

}  // namespace

bool HasElfMagic(std::span<const uint8_t> head) {
  return head.size() >= SELFMAG && std::memcmp(head.data(), ELFMAG, SELFMAG) == 0;
}

Result<ElfKernel> ParseElf(const KernelFile& file, const GuestMemory& memory) {
  Elf64_Ehdr eh;
  if (file.size() < sizeof(eh)) return Err(file.name() + ": truncated ELF header");
  TRY(file.ReadAt(0, {reinterpret_cast<uint8_t*>(&eh), sizeof(eh)}));
  TRY(CheckElfHeader(file, eh));
  std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
  TRY(file.ReadAt(eh.e_phoff,
                  {reinterpret_cast<uint8_t*>(phdrs.data()), phdrs.size() * sizeof(Elf64_Phdr)}));

  ElfKernel kernel;
  std::vector<Elf64_Phdr> loads;
  for (size_t i = 0; i < phdrs.size(); ++i) {
    const Elf64_Phdr& ph = phdrs[i];
    if (ph.p_type == PT_NOTE && !kernel.pvh_entry) {
      std::optional<uint64_t> pvh = TRY(FindPvhEntry(file, ph));
      if (pvh) kernel.pvh_entry = GuestAddr(*pvh);
    }
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    LoadSegment seg = TRY(CheckLoadSegment(file, memory, ph, i));
    kernel.start = loads.empty() ? seg.addr.value : std::min(kernel.start, seg.addr.value);
    kernel.end = std::max(kernel.end, seg.addr.value + seg.mem_size);
    kernel.segments.push_back(seg);
    loads.push_back(ph);
  }
  if (loads.empty()) return Err(file.name() + ": ELF has no PT_LOAD segment");
  kernel.entry = TRY(ResolveEntry(file, eh, loads));
  if (kernel.pvh_entry &&
      (kernel.pvh_entry->value < kernel.start || kernel.pvh_entry->value >= kernel.end ||
       kernel.pvh_entry->value > UINT32_MAX)) {
    return Err(file.name() + ": PVH entry " + Hex(kernel.pvh_entry->value) +
               " is not a 32-bit address inside the loaded kernel [" + Hex(kernel.start) + ", " +
               Hex(kernel.end) + ")");
  }
  return kernel;
}

Result<void> LoadSegments(const KernelFile& file, const GuestMemory& memory,
                          std::span<const LoadSegment> segments) {
  for (const LoadSegment& seg : segments) {
    TRY(file.CopyToGuest(memory, seg.addr, seg.file_offset, seg.file_size));
    std::span<uint8_t> bss = memory.Slice(seg.addr + seg.file_size, seg.mem_size - seg.file_size);
    if (bss.size() != seg.mem_size - seg.file_size) {
      return Err(file.name() + ": segment bss at " + Hex(seg.addr.value) + " not in guest RAM");
    }
    if (!bss.empty()) std::memset(bss.data(), 0, bss.size());
  }
  return {};
}

}  // namespace kite::boot
