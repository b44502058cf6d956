/* virtio_rng: finds the virtio entropy device, asks it twice for 64 bytes and prints
 *   virtio_rng: 64 bytes, <n> non-zero, first <hex>
 *   virtio_rng: two requests differ
 *   virtio_rng: ok
 * or a FAIL line when the device is missing, returns fewer bytes, all zeros or the same bytes
 * twice. */
#include "virtio.h"

#define LEN 64
#define TIMEOUT_MS 10000

static struct vio_dev dev;
static uint8_t buf[2][LEN] __attribute__((aligned(64)));

static bool request(uint8_t* out) {
  struct vio_buf b = {.addr = out, .len = LEN, .device_writes = true};
  vio_submit(&dev.queues[0], &b, 1);
  uint32_t id, len;
  int r = vio_wait_used(&dev.queues[0], &id, &len, TIMEOUT_MS);
  if (r != 1 || id != 0 || len != LEN) {
    rt_printf("virtio_rng: FAIL wait %d id %u len %u\n", r, id, len);
    return false;
  }
  return true;
}

int main(void) {
  uintptr_t base = vio_find(VIO_ID_RNG, 0);
  if (base == 0) {
    rt_printf("virtio_rng: FAIL no entropy device\n");
    return 1;
  }
  if (!vio_init(&dev, base, 0, 1) || !request(buf[0]) || !request(buf[1])) return 1;
  int nonzero = 0, same = 0;
  for (int i = 0; i < LEN; i++) nonzero += buf[0][i] != 0, same += buf[0][i] == buf[1][i];
  rt_printf("virtio_rng: %d bytes, %d non-zero, first %02x%02x%02x%02x\n", LEN, nonzero, buf[0][0],
            buf[0][1], buf[0][2], buf[0][3]);
  if (nonzero == 0 || same == LEN) {
    rt_printf("virtio_rng: FAIL bytes are all zero or repeated\n");
    return 1;
  }
  rt_printf("virtio_rng: two requests differ\n");
  vio_reset(&dev);
  rt_printf("virtio_rng: ok\n");
  return 0;
}
