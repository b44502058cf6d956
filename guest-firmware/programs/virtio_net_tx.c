/* virtio_net_tx: transmits small broadcast frames, one at a time and paced (one per 5 ms), each
 * waited for on the used ring, until it reads 'q' on COM1; then resets the device and powers
 * off. It keeps one receive buffer posted (re-posted whenever a frame arrives), so the VMM keeps
 * reading its backend. For BAD_INPUTS F7 (tests/fault): the host deletes the tap under it and
 * the guest must keep getting its transmit buffers back (the frames are dropped by the VMM).
 * Prints:
 *   virtio_net_tx: sending
 *   virtio_net_tx: 10 frames sent
 *   virtio_net_tx: stopped after <n> frames (<m> received)
 *   virtio_net_tx: ok
 * A transmit that never completes (or a device that needs a reset) is a FAIL. */
#include "virtio.h"

#define RXQ 0
#define TXQ 1
#define HDR_LEN 12 /* struct virtio_net_hdr with num_buffers (VERSION_1) */
#define TX_TIMEOUT_MS 10000
#define GAP_US 5000
#define FRAME_MAX 1526

static struct vio_dev dev;
static uint8_t tx_hdr[HDR_LEN] __attribute__((aligned(16)));
static uint8_t tx_frame[60] __attribute__((aligned(16)));
static uint8_t rx_buf[HDR_LEN + FRAME_MAX] __attribute__((aligned(16)));

static void post_rx(void) {
  struct vio_buf b = {rx_buf, sizeof(rx_buf), true};
  vio_submit(&dev.queues[RXQ], &b, 1);
}

static void build_frame(void) {
  static const uint8_t src[6] = {0x52, 0x54, 0x00, 0x0f, 0x07, 0x01};
  memset(tx_frame, 0, sizeof(tx_frame));
  memset(tx_frame, 0xff, 6); /* broadcast */
  memcpy(tx_frame + 6, src, 6);
  tx_frame[12] = 0x88, tx_frame[13] = 0xb5; /* local experimental EtherType */
  memcpy(tx_frame + 14, "kite-f7", 7);
}

static bool quit_requested(void) {
  char c;
  while (rt_serial_getc(&c)) {
    if (c == 'q') return true;
  }
  return false;
}

int main(void) {
  uintptr_t base = vio_find(VIO_ID_NET, 0);
  if (base == 0) return rt_printf("virtio_net_tx: FAIL no network device\n"), 1;
  if (!vio_init(&dev, base, 0, 2)) return 1;
  build_frame();
  post_rx();
  rt_printf("virtio_net_tx: sending\n");
  uint32_t frames = 0, received = 0;
  while (!quit_requested()) {
    struct vio_buf tx[2] = {{tx_hdr, HDR_LEN, false}, {tx_frame, sizeof(tx_frame), false}};
    vio_submit(&dev.queues[TXQ], tx, 2);
    uint32_t id, len;
    int r = vio_wait_used(&dev.queues[TXQ], &id, &len, TX_TIMEOUT_MS);
    if (r < 0) return rt_printf("virtio_net_tx: FAIL device needs reset\n"), 1;
    if (r == 0) return rt_printf("virtio_net_tx: FAIL transmit %u not completed\n", frames), 1;
    if (++frames == 10) rt_printf("virtio_net_tx: 10 frames sent\n");
    if (vio_wait_used(&dev.queues[RXQ], &id, &len, 0) == 1) {
      received++;
      post_rx();
    }
    rt_delay_us(GAP_US);
  }
  rt_printf("virtio_net_tx: stopped after %u frames (%u received)\n", frames, received);
  vio_reset(&dev);
  rt_printf("virtio_net_tx: ok\n");
  return 0;
}
