/* int3: executes int3; the #BP handler prints and returns (iretq to the next instruction),
 * then the guest powers off. On emulated KVM hosts kite itself injects #BP (MACHINE.md). */
#include "rt.h"

static volatile int breakpoints;

static void on_breakpoint(struct rt_frame* frame) {
  breakpoints++;
  rt_printf("int3: #BP handler called, rip %lx\n", frame->rip);
}

int main(void) {
  rt_set_handler(3, on_breakpoint);
  __asm__ volatile("int3" ::: "memory");
  if (breakpoints != 1) {
    rt_printf("int3: FAIL handler ran %d times\n", breakpoints);
    return 1;
  }
  rt_puts("int3: returned from handler\n");
  return 0;
}
