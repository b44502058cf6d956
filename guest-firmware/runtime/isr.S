/* isr.S: one stub per interrupt vector. Each stub pushes a zero error code (unless the CPU
 * pushed one), then the vector, and jumps to isr_common, which saves the general-purpose
 * registers as a struct rt_frame (rt.h), calls isr_dispatch(frame) and returns with iretq.
 * isr_stub_table[v] is the address of vector v's stub (used by idt.c). */
  .altmacro

  .macro ISR_STUB n
isr_stub_\n:
  .if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
  .else
  pushq $0
  .endif
  pushq $\n
  jmp isr_common
  .endm

  .macro ISR_ADDR n
  .quad isr_stub_\n
  .endm

  .text
  .set vec, 0
  .rept 256
  ISR_STUB %vec
  .set vec, vec + 1
  .endr

isr_common:
  pushq %rax
  pushq %rbx
  pushq %rcx
  pushq %rdx
  pushq %rsi
  pushq %rdi
  pushq %rbp
  pushq %r8
  pushq %r9
  pushq %r10
  pushq %r11
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, %rdi
  cld
  call isr_dispatch
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %r11
  popq %r10
  popq %r9
  popq %r8
  popq %rbp
  popq %rdi
  popq %rsi
  popq %rdx
  popq %rcx
  popq %rbx
  popq %rax
  addq $16, %rsp             /* vector and error code */
  iretq

  .section .rodata
  .p2align 3
  .globl isr_stub_table
isr_stub_table:
  .set vec, 0
  .rept 256
  ISR_ADDR %vec
  .set vec, vec + 1
  .endr

  .section .note.GNU-stack, "", @progbits
