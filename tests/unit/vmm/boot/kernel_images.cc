// Synthetic kernel images (test_images.h): pure byte builders, no test framework, so the
// fuzzers' seed generator (fuzz/seeds/make_seeds.cc) builds its kernels with them too.
#include <algorithm>

#include "test_images.h"

namespace kite::boot::testing {
namespace {

template <typename T>
void Put(std::string& image, size_t offset, const T& value) {
  if (image.size() < offset + sizeof(T)) image.resize(offset + sizeof(T));
  std::memcpy(image.data() + offset, &value, sizeof(T));
}

std::string PvhNote(const ElfOptions& o) {
  std::string note;
  Elf64_Nhdr nh{4, o.pvh_desc_size, 18};
  Put(note, 0, nh);
  note += std::string("Xen\0", 4);
  std::string desc(o.pvh_desc_size, '\0');
  std::memcpy(desc.data(), &o.pvh_entry, std::min<size_t>(o.pvh_desc_size, 8));
  note += desc;
  note.resize((note.size() + 3) & ~size_t{3});
  return note;
}

}  // namespace

std::string MakeElf(const ElfOptions& o) {
  std::string image;
  std::vector<Elf64_Phdr> phdrs;
  size_t data_offset = 0x1000;
  if (o.pvh_note) {
    std::string note = PvhNote(o);
    phdrs.push_back({PT_NOTE, 0, kNoteOffset, 0, 0, note.size(), note.size(), 4});
    image.resize(kNoteOffset);
    image += note;
  }
  for (const TestSegment& s : o.segments) {
    uint64_t memsz = s.memsz ? s.memsz : s.data.size();
    phdrs.push_back({PT_LOAD, PF_R | PF_X, data_offset, s.paddr + 0xffffffff80000000ull, s.paddr,
                     s.data.size(), memsz, 0x1000});
    image.resize(std::max(image.size(), data_offset));
    image.replace(data_offset, s.data.size(), s.data);
    data_offset = (data_offset + s.data.size() + 0xfff) & ~size_t{0xfff};
  }
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = o.entry;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = static_cast<uint16_t>(phdrs.size());
  Put(image, 0, eh);
  for (size_t i = 0; i < phdrs.size(); ++i) Put(image, 64 + i * sizeof(Elf64_Phdr), phdrs[i]);
  return image;
}

Elf64_Ehdr* ElfHeader(std::string& image) {
  return reinterpret_cast<Elf64_Ehdr*>(image.data());
}

Elf64_Phdr* ProgramHeader(std::string& image, size_t index) {
  return reinterpret_cast<Elf64_Phdr*>(image.data() + 64 + index * sizeof(Elf64_Phdr));
}

std::string MakeBzImage() {
  std::string image((kTestSetupSects + 1) * 512 + kTestPayloadSize, '\0');
  for (size_t i = 0; i < kTestPayloadSize; ++i) {
    image[(kTestSetupSects + 1) * 512 + i] = static_cast<char>(i * 7 + 1);
  }
  image[0x201] = 0x6a;  // setup header ends at 0x202 + 0x6a = 0x26c
  SetupHeader* h = BzHeader(image);
  h->setup_sects = kTestSetupSects;
  h->boot_flag = kBootFlag;
  h->header = kHdrSMagic;
  h->version = 0x020f;
  h->loadflags = kLoadedHigh;
  h->code32_start = 0x100000;
  h->initrd_addr_max = 0x7fffffff;
  h->kernel_alignment = 0x200000;
  h->relocatable_kernel = 1;
  h->xloadflags = kXlfKernel64;
  h->cmdline_size = 255;
  h->pref_address = 0x200000;
  h->init_size = 0x100000;
  return image;
}

SetupHeader* BzHeader(std::string& image) {
  return reinterpret_cast<SetupHeader*>(image.data() + kSetupHeaderOffset);
}

}  // namespace kite::boot::testing
