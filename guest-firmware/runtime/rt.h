/* rt.h: the tiny runtime every test guest links: port I/O, COM1 output, printf, power off and
 * reset per kite's contract, an IDT with C handlers, LAPIC access and AP start-up, the memory
 * map the loader passed, and TSC-based timeouts. Freestanding C (no libc). A program defines
 * int main(void); returning 0 powers off, anything else prints a FAIL line and powers off. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot_defs.h"

/* --- port I/O ---------------------------------------------------------------------------- */
static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v) {
  __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v) {
  __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint16_t inw(uint16_t port) {
  uint16_t v;
  __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint32_t inl(uint16_t port) {
  uint32_t v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

/* --- CPU ----------------------------------------------------------------------------------- */
static inline uint64_t rt_rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}
static inline void rt_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static inline void rt_pause(void) {
  __asm__ volatile("pause" ::: "memory");
}
static inline void rt_sti(void) {
  __asm__ volatile("sti" ::: "memory");
}
static inline void rt_cli(void) {
  __asm__ volatile("cli" ::: "memory");
}
static inline uint16_t rt_read_cs(void) {
  uint16_t cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  return cs;
}

/* Timeouts count TSC ticks, assuming a TSC of at least 1 GHz (1 ms = 1e6 ticks): on a faster
 * TSC a timeout is shorter in wall time, never longer. */
uint64_t rt_deadline_ms(uint64_t ms);
bool rt_expired(uint64_t deadline);
void rt_delay_us(uint64_t us);

/* --- console (COM1, 16550 polled) and power -------------------------------------------- */
#define RT_COM1 0x3f8
void rt_putc(char c);
void rt_puts(const char* s);
void rt_printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void rt_vprintf(const char* fmt, va_list ap);
bool rt_serial_getc(char* c); /* non-blocking: true when a byte was read */

/* kite contract: ACPI sleep control (0x600) S5; then isa-debug-exit (0xf4) so the same guest
 * ends under QEMU (exit status (code << 1) | 1); then halts for good. */
void rt_poweroff(void) __attribute__((noreturn));
void rt_fail_poweroff(void) __attribute__((noreturn)); /* debug-exit code 1 under QEMU */
/* ACPI RESET_REG (0x602 = 1), then the i8042 reset command (0xfe to 0x64). */
void rt_reset(void) __attribute__((noreturn));
void rt_boot_marker(uint8_t value); /* a byte to kite's boot-marker port 0x3f0 */

/* --- interrupts ------------------------------------------------------------------------- */
struct rt_frame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
  uint64_t vector, error;
  uint64_t rip, cs, rflags, rsp, ss;
};
typedef void (*rt_handler)(struct rt_frame* frame);
/* Installs a handler for `vector` (exceptions without one print and fail). For vectors >= 32
 * the dispatcher sends the LAPIC EOI after the handler returns. */
void rt_set_handler(uint8_t vector, rt_handler handler);

/* --- LAPIC (xAPIC MMIO at 0xfee00000) -------------------------------------------------- */
#define RT_LAPIC_ID 0x20
#define RT_LAPIC_EOI 0xb0
#define RT_LAPIC_SVR 0xf0
#define RT_LAPIC_ICR_LO 0x300
#define RT_LAPIC_ICR_HI 0x310
#define RT_LAPIC_LVT_TIMER 0x320
#define RT_LAPIC_TIMER_INIT 0x380
#define RT_LAPIC_TIMER_CUR 0x390
#define RT_LAPIC_TIMER_DIV 0x3e0
uint32_t rt_lapic_read(uint32_t reg);
void rt_lapic_write(uint32_t reg, uint32_t value);
void rt_lapic_enable(void); /* software-enable, spurious vector 0xff */
uint32_t rt_lapic_id(void);
/* INIT-SIPI-SIPI to `apic_id` through the real-mode trampoline; the AP runs fn(index) on its own
 * stack (index = 0 for the first AP started). false when the ICR never became idle. */
typedef void (*rt_ap_fn)(uint32_t ap_index);
bool rt_start_ap(uint32_t apic_id, rt_ap_fn fn);
void rt_set_ap_function(rt_ap_fn fn); /* internal: what rt_ap_start() runs */

/* --- boot information ------------------------------------------------------------------ */
struct rt_mem_range {
  uint64_t addr, size;
  uint32_t type; /* e820 types: 1 = RAM */
};
int rt_boot_kind(void);         /* RT_BOOT_PVH or RT_BOOT_LINUX64 */
uint64_t rt_boot_pointer(void); /* hvm_start_info or boot_params address (0: none) */
/* The memory map from hvm_start_info (PVH) or boot_params' e820 table; returns the number of
 * entries (at most max), or -1 when the boot structure is missing or malformed. */
int rt_memory_map(struct rt_mem_range* out, int max);
extern char __image_start[], __image_end[];

/* --- freestanding helpers (the compiler may emit calls to these) ---------------------- */
void* memset(void* dst, int c, size_t n);
void* memcpy(void* dst, const void* src, size_t n);
int main(void);
