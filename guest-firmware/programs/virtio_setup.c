/* virtio_setup: breaks the virtio-mmio set-up protocol on the entropy device (present by
 * default) and checks that the device refuses each step (BAD_INPUTS.md G12-G14, G32):
 *   virtio_setup: <case>: refused
 * Queue cases write QueueNum and the ring addresses, then QueueReady = 1, which must read back
 * 0; status cases check that FEATURES_OK or DRIVER_OK does not stick. Finally the device is
 * set up properly and serves one request ("virtio_setup: good set-up after all that: ok"),
 * then "virtio_setup: ok". */
#include "virtio.h"

#define OUTSIDE_RAM 0x300000000ull
#define F_RING_PACKED (1ull << 34) /* never offered by kite */

static struct vio_dev dev;
static uint8_t buf[16] __attribute__((aligned(16)));

static void write64(uint32_t reg, uint64_t value) {
  vio_write32(&dev, reg, (uint32_t)value);
  vio_write32(&dev, reg + 4, (uint32_t)(value >> 32));
}

/* Reset, ACKNOWLEDGE, DRIVER, then `features` and FEATURES_OK; returns the status read back. */
static uint32_t begin(uint64_t features) {
  vio_reset(&dev);
  vio_write32(&dev, VIO_REG_STATUS, VIO_STATUS_ACKNOWLEDGE);
  vio_write32(&dev, VIO_REG_STATUS, VIO_STATUS_ACKNOWLEDGE | VIO_STATUS_DRIVER);
  for (uint32_t sel = 0; sel < 2; sel++) {
    vio_write32(&dev, VIO_REG_DRIVER_FEATURES_SEL, sel);
    vio_write32(&dev, VIO_REG_DRIVER_FEATURES, (uint32_t)(features >> (32 * sel)));
  }
  vio_write32(&dev, VIO_REG_STATUS,
              VIO_STATUS_ACKNOWLEDGE | VIO_STATUS_DRIVER | VIO_STATUS_FEATURES_OK);
  return vio_status(&dev);
}

/* Sets up queue `sel` with the given size and ring addresses; returns QueueReady read back. */
static uint32_t try_queue(uint32_t sel, uint32_t num, uint64_t desc, uint64_t avail,
                          uint64_t used) {
  begin(VIO_F_VERSION_1);
  vio_write32(&dev, VIO_REG_QUEUE_SEL, sel);
  vio_write32(&dev, VIO_REG_QUEUE_NUM, num);
  write64(VIO_REG_QUEUE_DESC, desc);
  write64(VIO_REG_QUEUE_DRIVER, avail);
  write64(VIO_REG_QUEUE_DEVICE, used);
  vio_write32(&dev, VIO_REG_QUEUE_READY, 1);
  return vio_read32(&dev, VIO_REG_QUEUE_READY);
}

static bool report(const char* name, bool refused) {
  rt_printf("virtio_setup: %s: %s\n", name, refused ? "refused" : "FAIL accepted");
  return refused;
}

static bool queue_cases(void) {
  uintptr_t ring = (uintptr_t)dev.rings[0];
  uint64_t desc = ring, avail = ring + 128, used = ring + 256;
  vio_write32(&dev, VIO_REG_QUEUE_SEL, 0);
  uint32_t max = vio_read32(&dev, VIO_REG_QUEUE_NUM_MAX);
  bool ok = report("queue size 0", try_queue(0, 0, desc, avail, used) == 0);
  ok = report("queue size 3", try_queue(0, 3, desc, avail, used) == 0) && ok;
  ok = report("queue size above max", try_queue(0, max * 2, desc, avail, used) == 0) && ok;
  ok = report("misaligned descriptor table", try_queue(0, 8, desc + 8, avail, used) == 0) && ok;
  ok = report("misaligned used ring", try_queue(0, 8, desc, avail, used + 2) == 0) && ok;
  ok = report("ring outside RAM", try_queue(0, 8, OUTSIDE_RAM, avail, used) == 0) && ok;
  ok = report("rings overlap", try_queue(0, 8, desc, desc + 64, used) == 0) && ok;
  /* G14: an out-of-range QueueSel selects nothing: QueueNumMax reads 0, QueueReady = 1 is
   * dropped, and queue 0 is still not ready. */
  begin(VIO_F_VERSION_1);
  vio_write32(&dev, VIO_REG_QUEUE_SEL, 0xffff);
  bool none = vio_read32(&dev, VIO_REG_QUEUE_NUM_MAX) == 0;
  vio_write32(&dev, VIO_REG_QUEUE_READY, 1);
  vio_write32(&dev, VIO_REG_QUEUE_NOTIFY, 0xffff);
  vio_write32(&dev, VIO_REG_QUEUE_SEL, 0);
  none = none && vio_read32(&dev, VIO_REG_QUEUE_READY) == 0;
  return report("queue select out of range", none) && ok;
}

static bool status_cases(void) {
  bool ok = report("features without VERSION_1", !(begin(0) & VIO_STATUS_FEATURES_OK));
  ok = report("feature not offered (RING_PACKED)",
              !(begin(VIO_F_VERSION_1 | F_RING_PACKED) & VIO_STATUS_FEATURES_OK)) &&
       ok;
  /* G32: DRIVER_OK without FEATURES_OK. */
  vio_reset(&dev);
  vio_write32(&dev, VIO_REG_STATUS, VIO_STATUS_ACKNOWLEDGE | VIO_STATUS_DRIVER);
  vio_write32(&dev, VIO_REG_STATUS,
              VIO_STATUS_ACKNOWLEDGE | VIO_STATUS_DRIVER | VIO_STATUS_DRIVER_OK);
  ok = report("DRIVER_OK before FEATURES_OK", !(vio_status(&dev) & VIO_STATUS_DRIVER_OK)) && ok;
  return ok;
}

static bool good_setup(uintptr_t base) {
  bool ok = vio_init(&dev, base, 0, 1);
  if (ok) {
    struct vio_buf b = {buf, sizeof(buf), true};
    vio_submit(&dev.queues[0], &b, 1);
    uint32_t id, len;
    ok = vio_wait_used(&dev.queues[0], &id, &len, 10000) == 1 && len == sizeof(buf);
  }
  rt_printf("virtio_setup: good set-up after all that: %s\n", ok ? "ok" : "FAIL");
  return ok;
}

int main(void) {
  uintptr_t base = vio_find(VIO_ID_RNG, 0);
  if (base == 0) return rt_printf("virtio_setup: FAIL no entropy device\n"), 1;
  dev.base = base;
  bool ok = queue_cases();
  ok = status_cases() && ok;
  ok = good_setup(base) && ok;
  vio_reset(&dev);
  if (!ok) return 1;
  rt_printf("virtio_setup: ok\n");
  return 0;
}
