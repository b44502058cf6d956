/* boot_defs.h: constants shared by the guest runtime's assembly and C code. */
#pragma once

/* How the boot CPU got to entry: the first argument of rt_start(). */
#define RT_BOOT_PVH 1     /* PVH: 32-bit entry, %ebx = hvm_start_info */
#define RT_BOOT_LINUX64 2 /* 64-bit Linux boot protocol: %rsi = boot_params (zero page) */
#define RT_BOOT_AP 3      /* an application processor coming from the SIPI trampoline */

/* GDT selectors of the runtime's own GDT (entry.S). */
#define RT_SEL_CODE32 0x08
#define RT_SEL_DATA 0x10
#define RT_SEL_CODE64 0x18

/* Stacks. */
#define RT_BSP_STACK_SIZE 16384
#define RT_AP_STACK_SIZE 8192
#define RT_MAX_APS 7

/* The AP start-up trampoline is copied here (below 1 MiB, page aligned, SIPI vector 0x08).
 * kite's layout leaves 0x8000-0x8fff free (zero page at 0x7000, page tables from 0x9000). */
#define RT_TRAMPOLINE_ADDR 0x8000
