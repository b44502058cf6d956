/* triple_fault: loads an empty IDT (limit 0) and executes ud2: #UD cannot be delivered, nor the
 * #GP and #DF that follow, so the CPU shuts down. kite must report a crash (status 3). */
#include "rt.h"

int main(void) {
  rt_puts("triple_fault: loading an empty IDT\n");
  struct __attribute__((packed)) {
    uint16_t limit;
    uint64_t base;
  } empty = {0, 0};
  __asm__ volatile("lidt %0; ud2" ::"m"(empty) : "memory");
  rt_puts("triple_fault: FAIL still running\n");
  return 1;
}
