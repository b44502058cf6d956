/* unknown_port: writes and reads I/O ports where no device lives, with 1-, 2- and 4-byte
 * accesses; each read must return all-ones (DESIGN.md: unknown reads return all-ones, unknown
 * writes are dropped). Prints "unknown_port: ok" or the first mismatch. */
#include "rt.h"

#define PORT 0x1230 /* no device on kite, QEMU microvm or q35 */

int main(void) {
  int bad = 0;
  outb(PORT, 0x12);
  outw(PORT + 2, 0x1234);
  outl(PORT + 4, 0x12345678);
  uint8_t b = inb(PORT);
  uint16_t w = inw(PORT + 2);
  uint32_t l = inl(PORT + 4);
  if (b != 0xff) rt_printf("unknown_port: FAIL inb %x read %x\n", PORT, b), bad++;
  if (w != 0xffff) rt_printf("unknown_port: FAIL inw %x read %x\n", PORT + 2, w), bad++;
  if (l != 0xffffffffu) rt_printf("unknown_port: FAIL inl %x read %x\n", PORT + 4, l), bad++;
  if (bad) return 1;
  rt_puts("unknown_port: ok\n");
  return 0;
}
