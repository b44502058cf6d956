/* timer: programs the LAPIC timer periodic (vector 0x40, divide by 16), enables interrupts and
 * waits for kTicks ticks, bounded by a TSC deadline. Prints "timer: ok (<n> ticks)". */
#include "rt.h"

#define TIMER_VECTOR 0x40
#define TIMER_PERIODIC (1u << 17)
#define TIMER_MASKED (1u << 16)
#define TICKS 5
#define TIMEOUT_MS 5000

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
  uint64_t deadline = rt_deadline_ms(TIMEOUT_MS);
  rt_sti();
  while (ticks < TICKS && !rt_expired(deadline)) rt_pause();
  rt_cli();
  rt_lapic_write(RT_LAPIC_LVT_TIMER, TIMER_MASKED);
  rt_lapic_write(RT_LAPIC_TIMER_INIT, 0);
  if (ticks < TICKS) {
    rt_printf("timer: FAIL %u of %u ticks before the deadline\n", ticks, TICKS);
    return 1;
  }
  rt_printf("timer: ok (%u ticks)\n", ticks);
  return 0;
}
