/* console.c: COM1 output (polls the 16550's THRE bit), a small printf, serial input, and the
 * ways a guest ends: power off, reset, boot marker. Output from several CPUs is serialised by
 * a spinlock around each printf. */
#include "rt.h"

#define UART_LSR 5
#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20
#define UART_POLL_LIMIT 100000 /* give up waiting for THRE; write anyway */

#define ACPI_SLEEP_CONTROL 0x600
#define ACPI_SLEEP_S5 ((5 << 2) | (1 << 5)) /* SLP_TYP = 5, SLP_EN */
#define ACPI_RESET 0x602
#define I8042_COMMAND 0x64
#define I8042_RESET 0xfe
#define QEMU_DEBUG_EXIT 0xf4
#define BOOT_MARKER 0x3f0

static volatile int print_lock;

void rt_putc(char c) {
  for (int i = 0; i < UART_POLL_LIMIT && !(inb(RT_COM1 + UART_LSR) & UART_LSR_THRE); i++)
    rt_pause();
  outb(RT_COM1, (uint8_t)c);
}

void rt_puts(const char* s) {
  while (*s) rt_putc(*s++);
}

bool rt_serial_getc(char* c) {
  if (!(inb(RT_COM1 + UART_LSR) & UART_LSR_DR)) return false;
  *c = (char)inb(RT_COM1);
  return true;
}

static void put_unsigned(uint64_t v, unsigned base, int width, char pad) {
  char buf[24];
  int n = 0;
  do {
    buf[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v != 0);
  while (width-- > n) rt_putc(pad);
  while (n > 0) rt_putc(buf[--n]);
}

/* Supports %s %c %d %u %x %p and %%, with a width ("%08x") and the l/ll modifiers. */
void rt_vprintf(const char* fmt, va_list ap) {
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      rt_putc(*fmt);
      continue;
    }
    char pad = ' ';
    int width = 0, longs = 0;
    if (*++fmt == '0') pad = '0';
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    while (*fmt == 'l') longs++, fmt++;
    switch (*fmt) {
      case 's':
        rt_puts(va_arg(ap, const char*));
        break;
      case 'c':
        rt_putc((char)va_arg(ap, int));
        break;
      case 'd': {
        int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
        if (v < 0) rt_putc('-'), v = -v;
        put_unsigned((uint64_t)v, 10, width, pad);
        break;
      }
      case 'u':
        put_unsigned(longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, width, pad);
        break;
      case 'x':
        put_unsigned(longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, width, pad);
        break;
      case 'p':
        rt_puts("0x"), put_unsigned((uint64_t)va_arg(ap, void*), 16, width, pad);
        break;
      case '%':
        rt_putc('%');
        break;
      default:
        rt_putc('?');
        break;
    }
  }
}

void rt_printf(const char* fmt, ...) {
  while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE)) rt_pause();
  va_list ap;
  va_start(ap, fmt);
  rt_vprintf(fmt, ap);
  va_end(ap);
  __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE);
}

static void __attribute__((noreturn)) halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt");
}

void rt_poweroff(void) {
  outb(ACPI_SLEEP_CONTROL, ACPI_SLEEP_S5);
  outl(QEMU_DEBUG_EXIT, 0);
  halt_forever();
}

void rt_fail_poweroff(void) {
  outb(ACPI_SLEEP_CONTROL, ACPI_SLEEP_S5);
  outl(QEMU_DEBUG_EXIT, 1);
  halt_forever();
}

void rt_reset(void) {
  outb(ACPI_RESET, 1);
  outb(I8042_COMMAND, I8042_RESET);
  rt_printf("guest: reset did not happen\n");
  rt_fail_poweroff();
}

void rt_boot_marker(uint8_t value) {
  outb(BOOT_MARKER, value);
}

uint64_t rt_deadline_ms(uint64_t ms) {
  return rt_rdtsc() + ms * 1000000;
}

bool rt_expired(uint64_t deadline) {
  return (int64_t)(rt_rdtsc() - deadline) >= 0;
}

void rt_delay_us(uint64_t us) {
  uint64_t end = rt_rdtsc() + us * 1000;
  while (!rt_expired(end)) rt_pause();
}

void* memset(void* dst, int c, size_t n) {
  uint8_t* d = dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}

void* memcpy(void* dst, const void* src, size_t n) {
  uint8_t* d = dst;
  const uint8_t* s = src;
  while (n--) *d++ = *s++;
  return dst;
}
