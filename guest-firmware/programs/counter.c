/* counter: counts for a long time, printing "counter: <n> ticks <t>" about every 20 ms, where
 * <t> counts LAPIC timer interrupts (periodic, about 1 ms). The control-plane tests pause it
 * (the lines stop), resume it (they go on), and snapshot, kill and restore it: the count must
 * continue from where it was, not from 0, and the timer must still tick (LAPIC, TSC and
 * interrupt state survived). Powers off after COUNTS lines (about 2 minutes). */
#include "rt.h"

#define TIMER_VECTOR 0x40
#define TIMER_PERIODIC (1u << 17)
#define COUNTS 6000

static volatile uint32_t ticks;

static void on_tick(struct rt_frame* frame) {
  (void)frame;
  ticks++;
}

int main(void) {
  rt_set_handler(TIMER_VECTOR, on_tick);
  rt_lapic_enable();
  rt_lapic_write(RT_LAPIC_TIMER_DIV, 0x3); /* divide by 16 */
  rt_lapic_write(RT_LAPIC_LVT_TIMER, TIMER_VECTOR | TIMER_PERIODIC);
  rt_lapic_write(RT_LAPIC_TIMER_INIT, 62500); /* 1 ms with a 1 GHz APIC bus (KVM's) */
  rt_sti();
  for (uint32_t n = 1; n <= COUNTS; n++) {
    rt_delay_us(20000);
    rt_printf("counter: %u ticks %u\n", n, ticks);
  }
  rt_printf("counter: done\n");
  return 0;
}
