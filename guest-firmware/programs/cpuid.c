/* cpuid: prints what CPUID tells the guest, one line for tests to parse:
 *   cpuid: vendor=<12 chars> family=<n> model=<n> apic_id=<leaf 1> x2apic_id=<leaf 0xb or ->
 *          logical=<leaf 1 EBX[23:16] when HTT, else 1> hypervisor=<leaf 1 ECX[31]> */
#include "rt.h"

int main(void) {
  uint32_t r[4];
  char vendor[13];
  rt_cpuid(0, 0, r);
  uint32_t max_leaf = r[0];
  memcpy(vendor, &r[1], 4);
  memcpy(vendor + 4, &r[3], 4);
  memcpy(vendor + 8, &r[2], 4);
  vendor[12] = 0;
  rt_cpuid(1, 0, r);
  uint32_t family = (r[0] >> 8) & 0xf, model = (r[0] >> 4) & 0xf;
  if (family == 0xf) family += (r[0] >> 20) & 0xff;
  if (family == 0x6 || family >= 0xf) model |= ((r[0] >> 16) & 0xf) << 4;
  uint32_t apic_id = r[1] >> 24;
  uint32_t logical = (r[3] & (1u << 28)) ? (r[1] >> 16) & 0xff : 1;
  uint32_t hypervisor = r[2] >> 31;
  rt_printf("cpuid: vendor=%s family=%u model=%u apic_id=%u ", vendor, family, model, apic_id);
  if (max_leaf >= 0xb) {
    rt_cpuid(0xb, 0, r);
    rt_printf("x2apic_id=%u ", r[3]);
  } else {
    rt_puts("x2apic_id=- ");
  }
  rt_printf("logical=%u hypervisor=%u\n", logical, hypervisor);
  return 0;
}
