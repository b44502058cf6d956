/* hello: writes the boot marker, prints one line and powers off (benchmark B1's guest). */
#include "rt.h"

int main(void) {
  rt_boot_marker(1);
  rt_puts("hello: kite guest is alive\n");
  return 0;
}
