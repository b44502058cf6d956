/* kvm-smoke: proves /dev/kvm really runs guest code.
 *  1. API version, capabilities (irqchip, PIT2, ioeventfd, irqfd, ...).
 *  2. Real mode: `mov dx,0x3f8; mov al,'k'; out dx,al; hlt` must give
 *     KVM_EXIT_IO (byte 'k' on port 0x3f8) then KVM_EXIT_HLT.
 *     Then 10000 `out` exits to userspace, timed.
 *  3. In-kernel irqchip + PIT2 + an ioeventfd and an irqfd.
 *  4. 64-bit long mode: `dec rcx; jnz` loop run with N iterations, timed.
 * Usage: kvm-smoke [loop-iterations]   (default 10000000; 0 skips step 4)
 * Exit status 0 when every check passed. Build: cc -O2 -o kvm-smoke kvm-smoke.c
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (4u << 20)
static int failures;

#define CHECK(cond, ...)                                          \
  do {                                                            \
    int ok_ = (cond);                                             \
    if (ok_) {                                                    \
      printf("ok   ");                                            \
    } else {                                                      \
      printf("FAIL ");                                            \
      failures++;                                                 \
    }                                                             \
    printf(__VA_ARGS__);                                          \
    if (!ok_ && errno) printf(" (errno %d: %s)", errno, strerror(errno)); \
    printf("\n");                                                 \
    fflush(stdout);                                               \
    errno = 0;                                                    \
  } while (0)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* KVM_RUN with a watchdog: after `seconds` SIGALRM makes it return EINTR. */
static void on_alarm(int sig) { (void)sig; }
static int run_vcpu(int vcpu, unsigned seconds) {
  alarm(seconds);
  int r = ioctl(vcpu, KVM_RUN, 0);
  alarm(0);
  if (r < 0) {
    struct kvm_regs regs;
    ioctl(vcpu, KVM_GET_REGS, &regs);
    printf("     KVM_RUN failed (%s): rip=%#llx rcx=%#llx\n", strerror(errno),
           (unsigned long long)regs.rip, (unsigned long long)regs.rcx);
  }
  return r;
}

struct vm {
  int fd, vcpu;
  uint8_t *mem;
  struct kvm_run *run;
};

static int vm_create(int kvm, struct vm *vm, int irqchip) {
  vm->fd = ioctl(kvm, KVM_CREATE_VM, 0);
  CHECK(vm->fd >= 0, "KVM_CREATE_VM");
  if (vm->fd < 0) return -1;
  if (irqchip) {
    CHECK(ioctl(vm->fd, KVM_SET_TSS_ADDR, 0xfffbd000) == 0, "KVM_SET_TSS_ADDR");
    CHECK(ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) == 0, "KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    CHECK(ioctl(vm->fd, KVM_CREATE_PIT2, &pit) == 0, "KVM_CREATE_PIT2");
  }
  vm->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
      .userspace_addr = (uintptr_t)vm->mem};
  CHECK(ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region) == 0, "KVM_SET_USER_MEMORY_REGION");
  vm->vcpu = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
  CHECK(vm->vcpu >= 0, "KVM_CREATE_VCPU");
  if (vm->vcpu < 0) return -1;
  int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  vm->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
  CHECK(vm->run != MAP_FAILED, "mmap kvm_run (%d bytes)", size);
  return vm->run == MAP_FAILED ? -1 : 0;
}

static void real_mode_test(int kvm) {
  struct vm vm;
  if (vm_create(kvm, &vm, 0)) return;
  /* at 0x1000: mov dx,0x3f8; mov al,'k'; out dx,al; hlt */
  const uint8_t code[] = {0xba, 0xf8, 0x03, 0xb0, 'k', 0xee, 0xf4};
  memcpy(vm.mem + 0x1000, code, sizeof code);
  struct kvm_sregs sregs;
  ioctl(vm.vcpu, KVM_GET_SREGS, &sregs);
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  ioctl(vm.vcpu, KVM_SET_SREGS, &sregs);
  struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
  ioctl(vm.vcpu, KVM_SET_REGS, &regs);

  int r = run_vcpu(vm.vcpu, 30);
  uint8_t byte = *((uint8_t *)vm.run + vm.run->io.data_offset);
  CHECK(r == 0 && vm.run->exit_reason == KVM_EXIT_IO && vm.run->io.port == 0x3f8 &&
            vm.run->io.direction == KVM_EXIT_IO_OUT && byte == 'k',
        "real mode: KVM_EXIT_IO out 0x3f8 '%c' (exit_reason %u)", byte, vm.run->exit_reason);
  r = run_vcpu(vm.vcpu, 30);
  CHECK(r == 0 && vm.run->exit_reason == KVM_EXIT_HLT, "real mode: KVM_EXIT_HLT (exit_reason %u)",
        vm.run->exit_reason);

  /* at 0x1100: mov cx,10000; 1: out dx,al; loop 1b; hlt -- times exits to userspace */
  const uint8_t loop[] = {0xb9, 0x10, 0x27, 0xee, 0xe2, 0xfd, 0xf4};
  memcpy(vm.mem + 0x1100, loop, sizeof loop);
  ioctl(vm.vcpu, KVM_GET_REGS, &regs);
  regs.rip = 0x1100;
  ioctl(vm.vcpu, KVM_SET_REGS, &regs);
  int exits = 0;
  double t0 = now();
  while (run_vcpu(vm.vcpu, 60) == 0 && vm.run->exit_reason == KVM_EXIT_IO) exits++;
  double t1 = now();
  CHECK(exits == 10000 && vm.run->exit_reason == KVM_EXIT_HLT, "real mode: %d KVM_EXIT_IO round trips",
        exits);
  printf("     %.1f us per KVM_EXIT_IO round trip (guest -> host userspace -> guest)\n",
         (t1 - t0) * 1e6 / (exits ? exits : 1));
  close(vm.vcpu);
  close(vm.fd);
}

static void long_mode_test(int kvm, uint64_t iterations) {
  struct vm vm;
  if (vm_create(kvm, &vm, 1)) return;

  int efd = eventfd(0, 0);
  struct kvm_ioeventfd io = {.addr = 0x510, .len = 1, .fd = efd, .flags = KVM_IOEVENTFD_FLAG_PIO};
  CHECK(ioctl(vm.fd, KVM_IOEVENTFD, &io) == 0, "KVM_IOEVENTFD (pio 0x510)");
  int ifd = eventfd(0, 0);
  struct kvm_irqfd irqfd = {.fd = (uint32_t)ifd, .gsi = 5};
  CHECK(ioctl(vm.fd, KVM_IRQFD, &irqfd) == 0, "KVM_IRQFD (gsi 5)");

  /* Identity map the first 1 GiB with 2 MiB pages: PML4 0x1000, PDPT 0x2000, PD 0x3000. */
  uint64_t *pml4 = (uint64_t *)(vm.mem + 0x1000), *pdpt = (uint64_t *)(vm.mem + 0x2000),
           *pd = (uint64_t *)(vm.mem + 0x3000);
  pml4[0] = 0x2000 | 3;
  pdpt[0] = 0x3000 | 3;
  for (int i = 0; i < 512; i++) pd[i] = ((uint64_t)i << 21) | 0x83;
  /* GDT at 0x500: null, 64-bit code (0x08), data (0x10). */
  uint64_t *gdt = (uint64_t *)(vm.mem + 0x500);
  gdt[1] = 0x00af9b000000ffffull;
  gdt[2] = 0x00cf93000000ffffull;
  /* at 0x10000: mov dx,0x510; out dx,al (ioeventfd); mov rcx,N; 1: dec rcx; jnz 1b;
   *             mov dx,0x3f8; mov al,'L'; out dx,al; hlt */
  uint8_t code[] = {0x66, 0xba, 0x10, 0x05, 0xee,
                    0x48, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0,
                    0x48, 0xff, 0xc9, 0x75, 0xfb,
                    0x66, 0xba, 0xf8, 0x03, 0xb0, 'L', 0xee, 0xf4};
  memcpy(code + 7, &iterations, 8);
  memcpy(vm.mem + 0x10000, code, sizeof code);

  struct kvm_sregs sregs;
  ioctl(vm.vcpu, KVM_GET_SREGS, &sregs);
  struct kvm_segment cs = {.base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 11,
                           .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1};
  struct kvm_segment ds = cs;
  ds.selector = 0x10;
  ds.type = 3;
  ds.l = 0;
  ds.db = 1;
  sregs.cs = cs;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = ds;
  sregs.gdt.base = 0x500;
  sregs.gdt.limit = 23;
  sregs.cr3 = 0x1000;
  sregs.cr4 = 1u << 5;                 /* PAE */
  sregs.cr0 = 0x80000001u | (1u << 4); /* PG | PE | ET */
  sregs.efer = 0x500;                  /* LME | LMA */
  CHECK(ioctl(vm.vcpu, KVM_SET_SREGS, &sregs) == 0, "long mode: KVM_SET_SREGS");
  struct kvm_regs regs = {.rip = 0x10000, .rflags = 2, .rsp = 0x200000};
  ioctl(vm.vcpu, KVM_SET_REGS, &regs);

  double t0 = now();
  int r = run_vcpu(vm.vcpu, 300);
  double t1 = now();
  uint64_t count = 0;
  CHECK(read(efd, &count, 8) == 8 && count == 1, "long mode: ioeventfd signalled by guest out 0x510");
  CHECK(r == 0 && vm.run->exit_reason == KVM_EXIT_IO && vm.run->io.port == 0x3f8 &&
            *((uint8_t *)vm.run + vm.run->io.data_offset) == 'L',
        "long mode: KVM_EXIT_IO out 0x3f8 'L' after %llu x (dec rcx; jnz) (exit_reason %u)",
        (unsigned long long)iterations, vm.run->exit_reason);
  printf("     long mode: %.3f s in KVM_RUN, %.1f ns per loop iteration\n", t1 - t0,
         iterations ? (t1 - t0) * 1e9 / iterations : 0.0);
  close(vm.vcpu);
  close(vm.fd);
}

int main(int argc, char **argv) {
  uint64_t iterations = argc > 1 ? strtoull(argv[1], NULL, 0) : 10000000;
  struct sigaction sa = {.sa_handler = on_alarm};
  sigaction(SIGALRM, &sa, NULL);
  double t0 = now();
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  CHECK(kvm >= 0, "open /dev/kvm");
  if (kvm < 0) return 1;
  int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
  CHECK(api == KVM_API_VERSION, "KVM_GET_API_VERSION = %d", api);
  static const struct { int cap; const char *name; } caps[] = {
      {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},     {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
      {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"}, {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
      {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"}, {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
      {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"}, {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
      {KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK"},
  };
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    int v = ioctl(kvm, KVM_CHECK_EXTENSION, caps[i].cap);
    CHECK(v > 0, "%s = %d", caps[i].name, v);
  }
  printf("     KVM_CAP_NR_VCPUS = %d, KVM_CAP_MAX_VCPUS = %d\n",
         ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS),
         ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS));
  real_mode_test(kvm);
  if (iterations) long_mode_test(kvm, iterations);
  printf("%s: %d failure(s), %.3f s\n", failures ? "FAIL" : "PASS", failures, now() - t0);
  return failures ? 1 : 0;
}
