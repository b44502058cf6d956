/* busy: keeps its vCPU busy for the benchmarks, never powering off.
 *   Without a virtio block device: prints "busy: <n>" lines in a tight loop, one COM1 byte
 *   after another with no delay, so the host sees output within one serial exit of the vCPU
 *   running (bench/b7-snapshot.sh times a restore to its first byte).
 *   With one: writes and reads back 4 KiB blocks in a loop, walking the disk (at most its
 *   first 64 MiB), and prints "busy: <n> requests p99_cycles <c>" every 1024 requests
 *   (bench/b8's "while the guest does I/O"; <c>: the 99th percentile of those 1024 requests'
 *   latencies in TSC cycles, for bench/b9's "guest I/O during a block job"). A request that
 *   fails or times out prints a FAIL line and ends. */
#include "virtio.h"

#define SECTOR 512
#define BLOCK 4096
#define T_IN 0
#define T_OUT 1
#define S_OK 0
#define F_RO (1ull << 5)
#define TIMEOUT_MS 10000
#define MAX_BLOCKS (64u * 1024 * 1024 / BLOCK)

struct blk_header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

static struct vio_dev dev;
static struct blk_header header __attribute__((aligned(16)));
static uint8_t status_byte;
static uint8_t data[BLOCK] __attribute__((aligned(4096)));
#define WINDOW 1024
static uint64_t latency[WINDOW];

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (uint64_t)hi << 32 | lo;
}

/* The 99th percentile of latency[]: the largest value with at least 1% of the window at or
 * above it (WINDOW / 100 + 1 passes of a max search; no sort needed). */
static uint64_t p99(void) {
  uint64_t bound = ~0ull, value = 0;
  for (int k = 0; k <= WINDOW / 100; k++) {
    value = 0;
    for (int i = 0; i < WINDOW; i++) {
      if (latency[i] < bound && latency[i] > value) value = latency[i];
    }
    bound = value;
  }
  return value;
}

/* One request of one 4 KiB data buffer. Returns the status byte, or -1 on a timeout. */
static int request(uint32_t type, uint64_t sector) {
  header = (struct blk_header){.type = type, .sector = sector};
  status_byte = 0xff;
  struct vio_buf bufs[3] = {
      {&header, sizeof(header), false},
      {data, BLOCK, type == T_IN},
      {&status_byte, 1, true},
  };
  vio_submit(&dev.queues[0], bufs, 3);
  uint32_t id, used;
  if (vio_wait_used(&dev.queues[0], &id, &used, TIMEOUT_MS) != 1) return -1;
  return status_byte;
}

static int disk_loop(uintptr_t base) {
  if (!vio_init(&dev, base, F_RO, 1)) return 1;
  uint64_t capacity;
  vio_read_config(&dev, 0, &capacity, sizeof(capacity));
  uint64_t blocks = capacity / (BLOCK / SECTOR);
  if (blocks > MAX_BLOCKS) blocks = MAX_BLOCKS;
  if (blocks == 0) return rt_printf("busy: FAIL disk smaller than 4 KiB\n"), 1;
  bool ro = dev.features & F_RO;
  rt_printf("busy: disk of %lu blocks%s\n", blocks, ro ? ", read-only: reads only" : "");
  for (uint64_t n = 0;; n++) {
    uint64_t sector = (n / 2 % blocks) * (BLOCK / SECTOR);
    bool write = !ro && n % 2 == 0;
    if (write) memset(data, (int)(n & 0xff), BLOCK);
    uint64_t start = rdtsc();
    int s = request(write ? T_OUT : T_IN, sector);
    latency[n % WINDOW] = rdtsc() - start;
    if (s != S_OK) return rt_printf("busy: FAIL request %lu status %d\n", n, s), 1;
    if (n % WINDOW == WINDOW - 1) rt_printf("busy: %lu requests p99_cycles %lu\n", n + 1, p99());
  }
}

int main(void) {
  uintptr_t base = vio_find(VIO_ID_BLOCK, 0);
  if (base != 0) return disk_loop(base);
  for (uint64_t n = 1;; n++) rt_printf("busy: %lu\n", n);
}
