/* boot_info.c: reads the memory map the loader handed over, in either boot protocol:
 * - PVH: struct hvm_start_info (magic 0x336ec578); version >= 1 has memmap_paddr/entries,
 *   each entry { u64 addr, u64 size, u32 type, u32 reserved }.
 * - Linux 64-bit boot: boot_params, e820_entries (u8) at 0x1e8, e820_table at 0x2d0, each
 *   entry { u64 addr, u64 size, u32 type } packed (20 bytes), at most 128.
 * Nothing from the loader is trusted: counts are bounded and the magic is checked. */
#include "rt.h"

#define HVM_START_MAGIC 0x336ec578u
#define ZERO_PAGE_E820_ENTRIES 0x1e8
#define ZERO_PAGE_E820_TABLE 0x2d0
#define E820_MAX 128

struct hvm_start_info {
  uint32_t magic, version, flags, nr_modules;
  uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
  uint32_t memmap_entries, reserved;
};

struct hvm_memmap_entry {
  uint64_t addr, size;
  uint32_t type, reserved;
};

struct e820_entry {
  uint64_t addr, size;
  uint32_t type;
} __attribute__((packed));

static int pvh_memory_map(const struct hvm_start_info* info, struct rt_mem_range* out, int max) {
  if (info->magic != HVM_START_MAGIC || info->version < 1 || info->memmap_paddr == 0) return -1;
  const struct hvm_memmap_entry* e = (const void*)(uintptr_t)info->memmap_paddr;
  int n = 0;
  for (uint32_t i = 0; i < info->memmap_entries && n < max; i++, n++) {
    out[n] = (struct rt_mem_range){e[i].addr, e[i].size, e[i].type};
  }
  return n;
}

static int e820_memory_map(const uint8_t* zero_page, struct rt_mem_range* out, int max) {
  int count = zero_page[ZERO_PAGE_E820_ENTRIES];
  if (count > E820_MAX) return -1;
  const struct e820_entry* e = (const void*)(zero_page + ZERO_PAGE_E820_TABLE);
  int n = 0;
  for (int i = 0; i < count && n < max; i++, n++) {
    out[n] = (struct rt_mem_range){e[i].addr, e[i].size, e[i].type};
  }
  return n;
}

int rt_memory_map(struct rt_mem_range* out, int max) {
  uint64_t p = rt_boot_pointer();
  if (p == 0) return -1;
  if (rt_boot_kind() == RT_BOOT_PVH) return pvh_memory_map((const void*)(uintptr_t)p, out, max);
  return e820_memory_map((const uint8_t*)(uintptr_t)p, out, max);
}
