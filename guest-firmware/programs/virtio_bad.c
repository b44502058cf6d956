/* virtio_bad: hands the first virtio block device malformed chains and rings (BAD_INPUTS.md
 * G1-G3, G5, G6, G8, G11, G18, G33) and checks that each comes back with used length 0 and nothing
 * written, or that the device sets DEVICE_NEEDS_RESET. After a used-length-0 answer the same
 * live queue must still serve a good request; after DEVICE_NEEDS_RESET the program resets the
 * device, sets it up again and does a good request. Then well-formed chains with requests the
 * device must refuse by status (G7, G16, G17, G20, G21). One line per case:
 *   virtio_bad: <case>: used len 0, next request ok
 *   virtio_bad: <case>: device needs reset, recovered after reset
 *   virtio_bad: <case>: status <n>
 * then "virtio_bad: ok" (and the guest powers off normally: the VMM kept running). Only reads
 * are requested: the disk is never written. */
#include "virtio.h"

#define T_IN 0
#define TIMEOUT_MS 10000
#define UNTOUCHED 0xee
#define OUTSIDE_RAM 0x300000000ull /* 12 GiB: far above the test VM's RAM */
#define F_INDIRECT (1ull << 28)
#define T_GET_ID 8
#define T_UNKNOWN 0x77

struct blk_header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

static struct vio_dev dev;
static struct blk_header header __attribute__((aligned(16)));
static volatile uint8_t status_byte;
static uint8_t data[512] __attribute__((aligned(512)));
static uint8_t big[64 * 1024] __attribute__((aligned(4096)));
static volatile struct vio_desc table[4] __attribute__((aligned(16)));
static volatile struct vio_desc table2[2] __attribute__((aligned(16)));

#define R 0
#define W VIO_DESC_F_WRITE
#define N VIO_DESC_F_NEXT

static void prepare(void) {
  header = (struct blk_header){.type = T_IN, .sector = 0};
  status_byte = UNTOUCHED;
}

static uint64_t hdr(void) {
  return (uintptr_t)&header;
}
static uint64_t dat(void) {
  return (uintptr_t)data;
}
static uint64_t st(void) {
  return (uintptr_t)&status_byte;
}

/* G1: descriptor 1 links back to descriptor 0. */
static void desc_loop(struct vio_queue* q) {
  vio_set_desc(q, 0, hdr(), 16, R | N, 1);
  vio_set_desc(q, 1, dat(), 512, W | N, 0);
  vio_add_avail(q, 0);
}
/* G2: next beyond the queue. */
static void next_out_of_range(struct vio_queue* q) {
  vio_set_desc(q, 0, hdr(), 16, R | N, 200);
  vio_add_avail(q, 0);
}
/* G8: the data buffer is not RAM. */
static void buffer_outside_ram(struct vio_queue* q) {
  vio_set_desc(q, 0, hdr(), 16, R | N, 1);
  vio_set_desc(q, 1, OUTSIDE_RAM, 512, W | N, 2);
  vio_set_desc(q, 2, st(), 1, W, 0);
  vio_add_avail(q, 0);
}
/* G8: the data buffer is the device's own register window (no DMA into MMIO). */
static void buffer_in_mmio(struct vio_queue* q) {
  vio_set_desc(q, 0, hdr(), 16, R | N, 1);
  vio_set_desc(q, 1, dev.base, 512, W | N, 2);
  vio_set_desc(q, 2, st(), 1, W, 0);
  vio_add_avail(q, 0);
}
/* G18: the request header in a device-writable descriptor. */
static void header_writable(struct vio_queue* q) {
  vio_set_desc(q, 0, hdr(), 16, W | N, 1);
  vio_set_desc(q, 1, dat(), 512, W | N, 2);
  vio_set_desc(q, 2, st(), 1, W, 0);
  vio_add_avail(q, 0);
}
/* G18: the status byte in a driver-readable descriptor, after a writable one. */
static void status_readable(struct vio_queue* q) {
  vio_set_desc(q, 0, hdr(), 16, R | N, 1);
  vio_set_desc(q, 1, dat(), 512, W | N, 2);
  vio_set_desc(q, 2, st(), 1, R, 0);
  vio_add_avail(q, 0);
}
/* G6: addr + len wraps around the 64-bit address space. */
static void length_overflows(struct vio_queue* q) {
  vio_set_desc(q, 0, hdr(), 16, R | N, 1);
  vio_set_desc(q, 1, 0xfffffffffffff000ull, 0x2000, W | N, 2);
  vio_set_desc(q, 2, st(), 1, W, 0);
  vio_add_avail(q, 0);
}
/* A well-formed request as an indirect table (header, data, status). */
static void fill_table(void) {
  table[0] = (struct vio_desc){hdr(), 16, R | N, 1};
  table[1] = (struct vio_desc){dat(), 512, W | N, 2};
  table[2] = (struct vio_desc){st(), 1, W, 0};
}
/* G11: INDIRECT when the feature was not negotiated (or any indirect case below). */
static void indirect_table(struct vio_queue* q) {
  fill_table();
  vio_set_desc(q, 0, (uintptr_t)table, 3 * 16, VIO_DESC_F_INDIRECT, 0);
  vio_add_avail(q, 0);
}
/* G11: an indirect descriptor inside an indirect table. */
static void indirect_nested(struct vio_queue* q) {
  fill_table();
  table2[0] = (struct vio_desc){(uintptr_t)table, 3 * 16, VIO_DESC_F_INDIRECT, 0};
  vio_set_desc(q, 0, (uintptr_t)table2, 16, VIO_DESC_F_INDIRECT, 0);
  vio_add_avail(q, 0);
}
/* G11: a table length that is not a multiple of 16. */
static void indirect_bad_length(struct vio_queue* q) {
  fill_table();
  vio_set_desc(q, 0, (uintptr_t)table, 3 * 16 - 4, VIO_DESC_F_INDIRECT, 0);
  vio_add_avail(q, 0);
}
/* G11: INDIRECT together with NEXT. */
static void indirect_with_next(struct vio_queue* q) {
  fill_table();
  vio_set_desc(q, 0, (uintptr_t)table, 3 * 16, VIO_DESC_F_INDIRECT | N, 1);
  vio_set_desc(q, 1, st(), 1, W, 0);
  vio_add_avail(q, 0);
}
/* G3: avail->idx runs ahead of the used ring by more than the queue size. */
static void avail_idx_jump(struct vio_queue* q) {
  vio_set_desc(q, 0, hdr(), 16, R | N, 1);
  vio_set_desc(q, 1, st(), 1, W, 0);
  q->avail[2] = 0;
  q->avail_idx = (uint16_t)(q->avail_idx + q->size + 1);
  q->avail[1] = q->avail_idx;
  vio_notify(q);
}
/* G5: a head index beyond the queue in the available ring. */
static void head_out_of_range(struct vio_queue* q) {
  vio_add_avail(q, (uint16_t)(q->size + 3));
}

static bool good_request(void) {
  prepare();
  struct vio_buf bufs[3] = {{&header, 16, false}, {data, 512, true}, {&status_byte, 1, true}};
  vio_submit(&dev.queues[0], bufs, 3);
  uint32_t id, len;
  return vio_wait_used(&dev.queues[0], &id, &len, TIMEOUT_MS) == 1 && status_byte == 0;
}

static bool run_case(const char* name, void (*submit)(struct vio_queue*)) {
  prepare();
  submit(&dev.queues[0]);
  uint32_t id = 0, len = 0;
  int r = vio_wait_used(&dev.queues[0], &id, &len, TIMEOUT_MS);
  if (r == 1 && len == 0 && status_byte == UNTOUCHED) {
    bool ok = good_request();
    rt_printf("virtio_bad: %s: used len 0, next request %s\n", name, ok ? "ok" : "FAIL");
    return ok;
  }
  if (r == -1) {
    bool ok = vio_init(&dev, dev.base, 0, 1) && good_request();
    rt_printf("virtio_bad: %s: device needs reset, %s\n", name,
              ok ? "recovered after reset" : "FAIL no recovery");
    return ok;
  }
  rt_printf("virtio_bad: %s: FAIL wait %d, used len %u, status byte %x\n", name, r, len,
            status_byte);
  return false;
}

/* A well-formed chain: header (type, sector), `n` data bytes at data[], status. Prints and
 * returns the status byte, or -1 when the request did not complete. */
static int status_case(const char* name, uint32_t type, uint64_t sector, uint32_t n,
                       bool zero_len_first) {
  prepare();
  header.type = type, header.sector = sector;
  struct vio_buf bufs[4];
  int count = 0;
  bufs[count++] = (struct vio_buf){&header, 16, false};
  if (zero_len_first) bufs[count++] = (struct vio_buf){data, 0, true};
  bufs[count++] = (struct vio_buf){data, n, true};
  bufs[count++] = (struct vio_buf){&status_byte, 1, true};
  vio_submit(&dev.queues[0], bufs, count);
  uint32_t id, len;
  int r = vio_wait_used(&dev.queues[0], &id, &len, TIMEOUT_MS);
  int s = r == 1 ? status_byte : -1;
  rt_printf("virtio_bad: %s: status %d\n", name, s);
  return s;
}

static bool malformed_chains(void) {
  bool ok = run_case("descriptor loop", desc_loop);
  ok = run_case("next out of range", next_out_of_range) && ok;
  ok = run_case("buffer outside RAM", buffer_outside_ram) && ok;
  ok = run_case("buffer in MMIO", buffer_in_mmio) && ok;
  ok = run_case("length overflows", length_overflows) && ok;
  ok = run_case("header in writable descriptor", header_writable) && ok;
  ok = run_case("status in readable descriptor", status_readable) && ok;
  ok = run_case("indirect not negotiated", indirect_table) && ok;
  return ok;
}

static bool indirect_chains(uintptr_t base) {
  if (!vio_init(&dev, base, F_INDIRECT, 1)) return false;
  if (!(dev.features & F_INDIRECT)) {
    rt_printf("virtio_bad: indirect descriptors not offered, skipped\n");
    return true;
  }
  prepare();
  indirect_table(&dev.queues[0]);
  uint32_t id, len;
  bool ok = vio_wait_used(&dev.queues[0], &id, &len, TIMEOUT_MS) == 1 && status_byte == 0;
  rt_printf("virtio_bad: indirect table: %s\n", ok ? "ok" : "FAIL");
  ok = run_case("indirect inside indirect", indirect_nested) && ok;
  ok = run_case("indirect length not a multiple of 16", indirect_bad_length) && ok;
  ok = run_case("indirect with next", indirect_with_next) && ok;
  return ok;
}

static bool bad_requests(void) {
  bool ok = status_case("sector 2^64-1", T_IN, ~0ull, 512, false) > 0;
  ok = status_case("data length 100", T_IN, 0, 100, false) > 0 && ok;
  ok = status_case("unknown type", T_UNKNOWN, 0, 512, false) > 0 && ok;
  ok = status_case("get id buffer 8 bytes", T_GET_ID, 0, 8, false) > 0 && ok;
  ok = status_case("zero-length descriptor", T_IN, 0, 512, true) >= 0 && ok;
  return ok;
}

/* G33: a 64 KiB read, then at once a reset. When the status write returns, the device must be
 * done with the request: neither the buffer (refilled after the reset) nor the used ring may
 * change afterwards. */
static bool reset_during_io(uintptr_t base) {
  if (!vio_init(&dev, base, 0, 1)) return false;
  prepare();
  struct vio_buf bufs[3] = {
      {&header, 16, false}, {big, sizeof(big), true}, {&status_byte, 1, true}};
  vio_submit(&dev.queues[0], bufs, 3);
  vio_reset(&dev);
  memset(big, UNTOUCHED, sizeof(big));
  memset(dev.rings[0], 0, VIO_RING_BYTES);
  rt_delay_us(200000);
  bool quiet = dev.queues[0].used[0] == 0;
  for (size_t i = 0; i < sizeof(big); i++) quiet = quiet && big[i] == UNTOUCHED;
  bool ok = quiet && vio_init(&dev, base, 0, 1) && good_request();
  rt_printf("virtio_bad: reset during I/O: %s\n",
            ok ? "nothing written after reset, recovered" : "FAIL");
  return ok;
}

int main(void) {
  uintptr_t base = vio_find(VIO_ID_BLOCK, 0);
  if (base == 0) return rt_printf("virtio_bad: FAIL no block device\n"), 1;
  if (!vio_init(&dev, base, 0, 1)) return 1;
  bool ok = malformed_chains();
  ok = bad_requests() && ok;
  ok = indirect_chains(base) && ok;
  ok = run_case("avail index jump", avail_idx_jump) && ok;
  ok = run_case("head out of range", head_out_of_range) && ok;
  ok = reset_during_io(base) && ok;
  if (!ok) return 1;
  vio_reset(&dev);
  rt_printf("virtio_bad: ok\n");
  return 0;
}
