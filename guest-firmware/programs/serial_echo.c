/* serial_echo: echoes bytes read from COM1 until it reads 'q', then powers off. Waits for input
 * forever (benchmark B2 measures the VMM while this guest sits in its loop). */
#include "rt.h"

int main(void) {
  rt_puts("serial_echo: ready\n");
  for (;;) {
    char c;
    if (!rt_serial_getc(&c)) {
      rt_pause();
      continue;
    }
    if (c == 'q') break;
    rt_putc(c);
  }
  rt_puts("\nserial_echo: bye\n");
  return 0;
}
