/* virtio_blk: drives the first virtio block device and prints what the host can check:
 *   virtio_blk: capacity <sectors> sectors[ read-only]
 *   virtio_blk: sector 0 fnv1a <8 hex digits>       (FNV-1a 32 of the first 512 bytes)
 *   virtio_blk: serial '<GET_ID string>'
 *   virtio_blk: wrote, flushed and read back sectors 1-2   (writable disks: sector 1 holds
 *               "kite-virtio-blk:" repeated, sector 2 "KITE-VIRTIO-BLK:", written as two
 *               data descriptors)
 *   virtio_blk: write refused, status 1               (read-only disks: IOERR, G19)
 *   virtio_blk: read past the end refused, status 1   (G16)
 *   virtio_blk: ok */
#include "virtio.h"

#define SECTOR 512
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define S_OK 0
#define S_IOERR 1
#define F_RO (1ull << 5)
#define F_FLUSH (1ull << 9)
#define TIMEOUT_MS 10000

struct blk_header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

static struct vio_dev dev;
static struct blk_header header __attribute__((aligned(16)));
static uint8_t status_byte;
static uint8_t data[2 * SECTOR] __attribute__((aligned(512)));
static uint8_t check[2 * SECTOR] __attribute__((aligned(512)));
static char serial[21];

/* One request: header, `n` data buffers of `len` bytes each, status. Returns the status byte,
 * or -1 when the device did not complete it. */
static int request(uint32_t type, uint64_t sector, uint8_t* buf, int n, uint32_t len) {
  header = (struct blk_header){.type = type, .sector = sector};
  status_byte = 0xff;
  struct vio_buf bufs[4];
  int count = 0;
  bufs[count++] = (struct vio_buf){&header, sizeof(header), false};
  for (int i = 0; i < n; i++) bufs[count++] = (struct vio_buf){buf + i * len, len, type != T_OUT};
  bufs[count++] = (struct vio_buf){&status_byte, 1, true};
  vio_submit(&dev.queues[0], bufs, count);
  uint32_t id, used;
  int r = vio_wait_used(&dev.queues[0], &id, &used, TIMEOUT_MS);
  if (r != 1) {
    rt_printf("virtio_blk: FAIL request type %u: %s\n", type, r == 0 ? "timeout" : "needs reset");
    return -1;
  }
  return status_byte;
}

static uint32_t fnv1a(const uint8_t* p, uint32_t len) {
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

static bool write_read_back(void) {
  for (int i = 0; i < 2 * SECTOR; i++) {
    data[i] = (uint8_t)(i < SECTOR ? "kite-virtio-blk:" : "KITE-VIRTIO-BLK:")[i % 16];
  }
  int s = request(T_OUT, 1, data, 2, SECTOR);
  if (s != S_OK) return rt_printf("virtio_blk: FAIL write status %d\n", s), false;
  if (dev.features & F_FLUSH) {
    s = request(T_FLUSH, 0, 0, 0, 0);
    if (s != S_OK) return rt_printf("virtio_blk: FAIL flush status %d\n", s), false;
  }
  s = request(T_IN, 1, check, 1, 2 * SECTOR);
  if (s != S_OK) return rt_printf("virtio_blk: FAIL read-back status %d\n", s), false;
  for (int i = 0; i < 2 * SECTOR; i++) {
    if (check[i] != data[i]) return rt_printf("virtio_blk: FAIL mismatch at byte %d\n", i), false;
  }
  rt_printf("virtio_blk: wrote, %s read back sectors 1-2\n",
            dev.features & F_FLUSH ? "flushed and" : "(no flush feature)");
  return true;
}

int main(void) {
  uintptr_t base = vio_find(VIO_ID_BLOCK, 0);
  if (base == 0) return rt_printf("virtio_blk: FAIL no block device\n"), 1;
  if (!vio_init(&dev, base, F_RO | F_FLUSH, 1)) return 1;
  uint64_t capacity;
  vio_read_config(&dev, 0, &capacity, sizeof(capacity));
  bool ro = dev.features & F_RO;
  rt_printf("virtio_blk: capacity %lu sectors%s\n", capacity, ro ? " read-only" : "");

  int s = request(T_IN, 0, data, 1, SECTOR);
  if (s != S_OK) return rt_printf("virtio_blk: FAIL read sector 0 status %d\n", s), 1;
  rt_printf("virtio_blk: sector 0 fnv1a %08x\n", fnv1a(data, SECTOR));

  memset(serial, 0, sizeof(serial));
  s = request(T_GET_ID, 0, (uint8_t*)serial, 1, 20);
  rt_printf("virtio_blk: serial '%s' (status %d)\n", serial, s);

  if (!ro && !write_read_back()) return 1;
  if (ro) {
    s = request(T_OUT, 1, data, 1, SECTOR);
    rt_printf("virtio_blk: write refused, status %d\n", s);
    if (s != S_IOERR) return 1;
  }
  s = request(T_IN, capacity, data, 1, SECTOR);
  rt_printf("virtio_blk: read past the end refused, status %d\n", s);
  if (s != S_IOERR) return 1;
  vio_reset(&dev);
  rt_printf("virtio_blk: ok\n");
  return 0;
}
