/* reboot: prints a line, then asks for a reset (ACPI RESET_REG, then the i8042 0xfe command).
 * kite run --on-reboot exit must end with status 2. */
#include "rt.h"

int main(void) {
  rt_puts("reboot: requesting reset\n");
  rt_reset();
}
