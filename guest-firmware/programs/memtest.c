/* memtest: reads the memory map it was given (PVH memmap or e820), writes a pattern into one
 * quadword of every 4 KiB page of RAM above its own image and below 4 GiB (the identity map),
 * reads them all back, and prints
 *   memtest: ram <KiB> KiB in <n> ranges, top <hex>, <pages> pages ok
 * One word per page keeps it fast on emulated KVM while touching every page. */
#include "rt.h"

#define MAX_RANGES 32
#define PAGE 4096ull
#define E820_RAM 1
#define IDENTITY_LIMIT 0x100000000ull

static uint64_t pattern(uint64_t addr) {
  return addr ^ 0x6b69746561646472ull; /* "kiteaddr" */
}

/* Calls visit(addr) for every testable page of RAM range r; returns the pages visited. */
static uint64_t for_each_page(const struct rt_mem_range* r, bool (*visit)(uint64_t)) {
  uint64_t start = r->addr, end = r->addr + r->size, lowest = (uint64_t)__image_end;
  if (start < lowest) start = lowest;
  if (end > IDENTITY_LIMIT) end = IDENTITY_LIMIT;
  start = (start + PAGE - 1) & ~(PAGE - 1);
  uint64_t pages = 0;
  for (uint64_t a = start; a + PAGE <= end; a += PAGE, pages++) {
    if (!visit(a)) return pages;
  }
  return pages;
}

static bool write_page(uint64_t a) {
  *(volatile uint64_t*)a = pattern(a);
  return true;
}

static bool check_page(uint64_t a) {
  uint64_t got = *(volatile uint64_t*)a;
  if (got == pattern(a)) return true;
  rt_printf("memtest: FAIL at %lx: read %lx, wrote %lx\n", a, got, pattern(a));
  return false;
}

int main(void) {
  struct rt_mem_range ranges[MAX_RANGES];
  int n = rt_memory_map(ranges, MAX_RANGES);
  if (n <= 0) {
    rt_printf("memtest: FAIL no memory map (boot kind %d)\n", rt_boot_kind());
    return 1;
  }
  uint64_t ram = 0, top = 0, written = 0, checked = 0;
  int ram_ranges = 0;
  for (int i = 0; i < n; i++) {
    if (ranges[i].type != E820_RAM) continue;
    ram += ranges[i].size, ram_ranges++;
    if (ranges[i].addr + ranges[i].size > top) top = ranges[i].addr + ranges[i].size;
    written += for_each_page(&ranges[i], write_page);
  }
  for (int i = 0; i < n; i++) {
    if (ranges[i].type == E820_RAM) checked += for_each_page(&ranges[i], check_page);
  }
  if (checked != written) return 1;
  rt_printf("memtest: ram %lu KiB in %d ranges, top %lx, %lu pages ok\n", ram >> 10, ram_ranges,
            top, checked);
  return 0;
}
