/* start.c: the C side of start-up and interrupts. rt_start() runs on the boot CPU once it is
 * in long mode (entry.S); it records how the guest was booted, installs the IDT and runs main().
 * isr_dispatch() is called by every interrupt stub (isr.S). */
#include "rt.h"

struct idt_gate {
  uint16_t offset_low;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attr; /* 0x8e: present, DPL 0, 64-bit interrupt gate */
  uint16_t offset_mid;
  uint32_t offset_high;
  uint32_t reserved;
} __attribute__((packed));

struct idt_pointer {
  uint16_t limit;
  uint64_t base;
} __attribute__((packed));

extern const uint64_t isr_stub_table[256];
static struct idt_gate idt[256] __attribute__((aligned(16)));
static rt_handler handlers[256];
static uint16_t code_selector;
static int boot_kind;
static uint64_t boot_pointer;
static rt_ap_fn ap_function;

int rt_boot_kind(void) {
  return boot_kind;
}
uint64_t rt_boot_pointer(void) {
  return boot_pointer;
}

static void set_gate(uint8_t vector) {
  uint64_t addr = isr_stub_table[vector];
  idt[vector] = (struct idt_gate){
      .offset_low = (uint16_t)addr,
      .selector = code_selector,
      .type_attr = 0x8e,
      .offset_mid = (uint16_t)(addr >> 16),
      .offset_high = (uint32_t)(addr >> 32),
  };
}

static void load_idt(void) {
  struct idt_pointer p = {.limit = sizeof(idt) - 1, .base = (uint64_t)idt};
  __asm__ volatile("lidt %0" ::"m"(p));
}

void rt_set_handler(uint8_t vector, rt_handler handler) {
  handlers[vector] = handler;
  set_gate(vector);
}

void isr_dispatch(struct rt_frame* frame);
void isr_dispatch(struct rt_frame* frame) {
  uint8_t vector = (uint8_t)frame->vector;
  if (handlers[vector] == 0) {
    rt_printf("guest: FAIL unexpected interrupt %u (error %lx) at rip %lx\n", vector, frame->error,
              frame->rip);
    rt_fail_poweroff();
  }
  handlers[vector](frame);
  if (vector >= 32 && vector != 0xff) rt_lapic_write(RT_LAPIC_EOI, 0);
}

static void ignore_interrupt(struct rt_frame* frame) {
  (void)frame;
}

void rt_start(uint32_t kind, uint64_t pointer);
void rt_start(uint32_t kind, uint64_t pointer) {
  boot_kind = (int)kind;
  boot_pointer = pointer;
  code_selector = rt_read_cs();
  outb(RT_COM1 + 1, 0x00); /* IER: no UART interrupts */
  outb(RT_COM1 + 3, 0x03); /* LCR: 8 data bits, no parity, 1 stop bit */
  for (int v = 0; v < 32; v++) set_gate((uint8_t)v);
  rt_set_handler(0xff, ignore_interrupt); /* LAPIC spurious vector: no EOI */
  load_idt();
  int status = main();
  if (status != 0) {
    rt_printf("guest: FAIL main returned %d\n", status);
    rt_fail_poweroff();
  }
  rt_poweroff();
}

/* APs share the boot CPU's IDT; ap_function was set by rt_start_ap() before the SIPI. */
void rt_ap_start(uint32_t index);
void rt_ap_start(uint32_t index) {
  load_idt();
  rt_ap_fn fn = __atomic_load_n(&ap_function, __ATOMIC_ACQUIRE);
  if (fn) fn(index);
}

void rt_set_ap_function(rt_ap_fn fn) {
  __atomic_store_n(&ap_function, fn, __ATOMIC_RELEASE);
}
