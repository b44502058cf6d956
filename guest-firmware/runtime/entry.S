/* entry.S: how a tiny guest gets from its loader to C.
 *
 * - pvh_entry32: the PVH entry (32-bit protected mode, paging off, %ebx = hvm_start_info).
 *   Loads the runtime's GDT, turns on PAE paging with the static identity map below and long
 *   mode, then jumps to 64-bit code.
 * - entry64: the 64-bit entry for the variant without the PVH note; the loader (kite) has
 *   already set up long mode and identity paging, %rsi = boot_params.
 * - ap_trampoline_*: 16-bit code copied to RT_TRAMPOLINE_ADDR; an AP started by INIT-SIPI-SIPI
 *   runs it in real mode, goes to 32-bit protected mode and joins the same long-mode path.
 * Both BSP paths end in rt_start(kind, boot pointer); APs end in rt_ap_start(index).
 * The page tables are built by the assembler (no loop at run time: guest instructions are
 * expensive on emulated KVM): 4 GiB identity-mapped with 2 MiB pages, writable. */
#include "boot_defs.h"

#define CR0_PE 0x1
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

  .section .text.entry, "ax"
  .code32
  .globl pvh_entry32
pvh_entry32:
  cli
  cld
  movl %ebx, %esi
  movl $RT_BOOT_PVH, %edi
  /* fall through */

/* Protected mode (paging off) to long mode. In: %edi = boot kind, %esi = boot pointer. */
enter_long_mode32:
  lgdt gdt_desc
  movl $RT_SEL_DATA, %eax
  movl %eax, %ds
  movl %eax, %es
  movl %eax, %ss
  movl %cr4, %eax
  orl $CR4_PAE, %eax
  movl %eax, %cr4
  movl $pml4, %eax
  movl %eax, %cr3
  movl $MSR_EFER, %ecx
  rdmsr
  orl $EFER_LME, %eax
  wrmsr
  movl %cr0, %eax
  orl $(CR0_PG | CR0_PE), %eax
  movl %eax, %cr0
  ljmp $RT_SEL_CODE64, $long_mode64

  .code64
long_mode64:
  xorl %eax, %eax
  movl %eax, %ds
  movl %eax, %es
  movl %eax, %ss
  cmpl $RT_BOOT_AP, %edi
  je ap_entry64
  jmp bsp_entry64

  .globl entry64
entry64:
  cli
  cld
  movl $RT_BOOT_LINUX64, %edi
bsp_entry64:
  movl %esi, %esi          /* zero-extend: boot structures are below 4 GiB */
  leaq bsp_stack_top(%rip), %rsp
  call rt_start
1:
  cli
  hlt
  jmp 1b

ap_entry64:
  movl $1, %eax
  lock xaddl %eax, ap_next_index(%rip)   /* %eax = this AP's index, 0-based */
  cmpl $RT_MAX_APS, %eax
  jae 1b
  movl %eax, %edi
  leal 1(%eax), %eax
  imull $RT_AP_STACK_SIZE, %eax
  leaq ap_stacks(%rip), %rsp
  addq %rax, %rsp
  call rt_ap_start
  jmp 1b

/* Real-mode AP start-up code, position independent within its page (CS = vector << 8). */
  .code16
  .globl ap_trampoline_start, ap_trampoline_end
ap_trampoline_start:
  cli
  cld
  movw %cs, %ax
  movw %ax, %ds
  lgdtl (ap_trampoline_gdtr - ap_trampoline_start)
  movl %cr0, %eax
  orl $CR0_PE, %eax
  movl %eax, %cr0
  ljmpl $RT_SEL_CODE32, $ap_entry32
  .p2align 2
ap_trampoline_gdtr:
  .word gdt_end - gdt - 1
  .long gdt
ap_trampoline_end:

  .code32
ap_entry32:
  movl $RT_SEL_DATA, %eax    /* %ds still has the real-mode base (0x8000): flatten it */
  movl %eax, %ds
  movl $RT_BOOT_AP, %edi
  xorl %esi, %esi
  jmp enter_long_mode32

  .data
  .p2align 3
gdt:
  .quad 0
  .quad 0x00cf9b000000ffff   /* 0x08: 32-bit code, flat, accessed */
  .quad 0x00cf93000000ffff   /* 0x10: data, flat, accessed */
  .quad 0x00af9b000000ffff   /* 0x18: 64-bit code, accessed */
gdt_end:
gdt_desc:
  .word gdt_end - gdt - 1
  .long gdt
ap_next_index:
  .long 0

  .section .data.pagetables, "aw"
  .p2align 12
pml4:
  .quad pdpt + 0x3           /* present, writable */
  .fill 511, 8, 0
pdpt:
  .quad pd + 0x0003
  .quad pd + 0x1003
  .quad pd + 0x2003
  .quad pd + 0x3003
  .fill 508, 8, 0
pd:
  .set page, 0
  .rept 2048
  .quad (page << 21) | 0x83  /* present, writable, 2 MiB page */
  .set page, page + 1
  .endr

  .bss
  .p2align 4
bsp_stack:
  .skip RT_BSP_STACK_SIZE
bsp_stack_top:
ap_stacks:
  .skip RT_AP_STACK_SIZE * RT_MAX_APS

  .section .note.GNU-stack, "", @progbits
