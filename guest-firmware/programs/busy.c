/* busy: keeps its vCPU busy for the benchmarks, never powering off.
 *   Without a virtio block device: prints "busy: <n>" lines in a tight loop, one COM1 byte
 *   after another with no delay, so the host sees output within one serial exit of the vCPU
 *   running (bench/b7-snapshot.sh times a restore to its first byte).
 *   With one: writes and reads back 4 KiB blocks in a loop, walking the disk (at most its
 *   first 64 MiB), and prints "busy: <n> requests" every 1024 requests (bench/b8's "while the
 *   guest does I/O"). A request that fails or times out prints a FAIL line and ends. */
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
    int s = request(write ? T_OUT : T_IN, sector);
    if (s != S_OK) return rt_printf("busy: FAIL request %lu status %d\n", n, s), 1;
    if (n % 1024 == 1023) rt_printf("busy: %lu requests\n", n + 1);
  }
}

int main(void) {
  uintptr_t base = vio_find(VIO_ID_BLOCK, 0);
  if (base != 0) return disk_loop(base);
  for (uint64_t n = 1;; n++) rt_printf("busy: %lu\n", n);
}
