/* smp: the boot CPU starts the AP with APIC id 1 by INIT-SIPI-SIPI (through the real-mode
 * trampoline at RT_TRAMPOLINE_ADDR); the AP prints its APIC id and counts itself in. The boot
 * CPU waits, bounded by a TSC deadline, and prints "smp: 2 cpus up". Run with --cpus 2. */
#include "rt.h"

#define TIMEOUT_MS 10000

static volatile uint32_t cpus_up = 1;

static void ap_main(uint32_t index) {
  rt_printf("smp: ap %u up, apic id %u\n", index, rt_lapic_id());
  __atomic_add_fetch(&cpus_up, 1, __ATOMIC_SEQ_CST);
  for (;;) __asm__ volatile("cli; hlt");
}

int main(void) {
  rt_lapic_enable();
  rt_printf("smp: bsp apic id %u\n", rt_lapic_id());
  if (!rt_start_ap(1, ap_main)) {
    rt_puts("smp: FAIL the ICR stayed busy\n");
    return 1;
  }
  uint64_t deadline = rt_deadline_ms(TIMEOUT_MS);
  while (__atomic_load_n(&cpus_up, __ATOMIC_SEQ_CST) < 2 && !rt_expired(deadline)) rt_pause();
  uint32_t up = __atomic_load_n(&cpus_up, __ATOMIC_SEQ_CST);
  if (up < 2) {
    rt_printf("smp: FAIL only %u cpu up\n", up);
    return 1;
  }
  rt_printf("smp: %u cpus up\n", up);
  return 0;
}
