/* lapic.c: xAPIC register access (MMIO at 0xfee00000, identity-mapped) and starting an AP
 * with INIT-SIPI-SIPI (Intel SDM vol. 3, 8.4.4 "MP Initialization Example"). */
#include "rt.h"

#define LAPIC_BASE 0xfee00000ull
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_INIT 0x00004500u    /* INIT, level assert */
#define ICR_STARTUP 0x00004600u /* start-up IPI, vector in bits 0-7 */
#define ICR_IDLE_POLLS 100000

extern char ap_trampoline_start[], ap_trampoline_end[];

uint32_t rt_lapic_read(uint32_t reg) {
  return *(volatile uint32_t*)(LAPIC_BASE + reg);
}

void rt_lapic_write(uint32_t reg, uint32_t value) {
  *(volatile uint32_t*)(LAPIC_BASE + reg) = value;
}

void rt_lapic_enable(void) {
  rt_lapic_write(RT_LAPIC_SVR, 0x100 | 0xff);
}

uint32_t rt_lapic_id(void) {
  return rt_lapic_read(RT_LAPIC_ID) >> 24;
}

static bool send_ipi(uint32_t apic_id, uint32_t command) {
  rt_lapic_write(RT_LAPIC_ICR_HI, apic_id << 24);
  rt_lapic_write(RT_LAPIC_ICR_LO, command);
  for (int i = 0; i < ICR_IDLE_POLLS; i++) {
    if (!(rt_lapic_read(RT_LAPIC_ICR_LO) & ICR_DELIVERY_PENDING)) return true;
    rt_pause();
  }
  return false;
}

bool rt_start_ap(uint32_t apic_id, rt_ap_fn fn) {
  size_t size = (size_t)(ap_trampoline_end - ap_trampoline_start);
  memcpy((void*)(uintptr_t)RT_TRAMPOLINE_ADDR, ap_trampoline_start, size);
  rt_set_ap_function(fn);
  uint32_t vector = RT_TRAMPOLINE_ADDR >> 12;
  if (!send_ipi(apic_id, ICR_INIT)) return false;
  rt_delay_us(10000);
  if (!send_ipi(apic_id, ICR_STARTUP | vector)) return false;
  rt_delay_us(200);
  return send_ipi(apic_id, ICR_STARTUP | vector);
}
