/* pvh_note.S: the Xen PVH entry ELF note (XEN_ELFNOTE_PHYS32_ENTRY = 18, name "Xen"). Linked
 * only into the PVH variant of each guest; a loader that finds it enters pvh_entry32 in 32-bit
 * protected mode with %ebx = the hvm_start_info address (see xen/include/public/arch-x86/hvm/
 * start_info.h). The variant without this note is entered at e_entry (entry64) in long mode. */
  .section .note.pvh, "a", @note
  .p2align 2
  .long 4                /* n_namesz: "Xen\0" */
  .long 4                /* n_descsz: a 32-bit physical address */
  .long 18               /* n_type: XEN_ELFNOTE_PHYS32_ENTRY */
  .asciz "Xen"
  .p2align 2
  .long pvh_entry32
  .p2align 2
  .section .note.GNU-stack, "", @progbits
