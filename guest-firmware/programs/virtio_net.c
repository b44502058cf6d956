/* virtio_net: with a user-mode (slirp) network, asks who has 10.0.2.2 (the gateway) from
 * 10.0.2.15 in an ARP request and waits, bounded, for the reply:
 *   virtio_net: mac <its MAC, from the config space>
 *   virtio_net: sent arp request for 10.0.2.2
 *   virtio_net: arp reply from 10.0.2.2 at <gateway MAC>
 *   virtio_net: ok
 * Frames other than the reply are counted and skipped. The transmit chain is two descriptors
 * (virtio-net header, frame); each receive buffer is one. */
#include "virtio.h"

#define RXQ 0
#define TXQ 1
#define F_MAC (1ull << 5)
#define HDR_LEN 12 /* struct virtio_net_hdr with num_buffers (VERSION_1) */
#define FRAME_MAX 1526
#define ARP_LEN 42
#define TX_TIMEOUT_MS 10000
#define RX_TIMEOUT_MS 20000

static struct vio_dev dev;
static uint8_t tx_hdr[HDR_LEN] __attribute__((aligned(16)));
static uint8_t tx_frame[60] __attribute__((aligned(16)));
static uint8_t rx_buf[HDR_LEN + FRAME_MAX] __attribute__((aligned(16)));
static uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t my_ip[4] = {10, 0, 2, 15};
static const uint8_t gw_ip[4] = {10, 0, 2, 2};

static void put(uint8_t* p, const void* src, int len) {
  memcpy(p, src, (size_t)len);
}

static void build_arp_request(void) {
  static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t arp_head[8] = {0, 1, 8, 0, 6, 4, 0, 1}; /* Ethernet, IPv4, request */
  memset(tx_frame, 0, sizeof(tx_frame));
  put(tx_frame, broadcast, 6);
  put(tx_frame + 6, mac, 6);
  tx_frame[12] = 0x08, tx_frame[13] = 0x06;
  put(tx_frame + 14, arp_head, 8);
  put(tx_frame + 22, mac, 6);
  put(tx_frame + 28, my_ip, 4);
  put(tx_frame + 38, gw_ip, 4); /* target MAC (32..37) stays zero */
}

static void post_rx(void) {
  struct vio_buf b = {rx_buf, sizeof(rx_buf), true};
  vio_submit(&dev.queues[RXQ], &b, 1);
}

static bool is_reply(const uint8_t* f, uint32_t len) {
  return len >= ARP_LEN && f[12] == 0x08 && f[13] == 0x06 && f[20] == 0 && f[21] == 2 &&
         f[28] == gw_ip[0] && f[29] == gw_ip[1] && f[30] == gw_ip[2] && f[31] == gw_ip[3];
}

static bool wait_reply(void) {
  uint64_t deadline = rt_deadline_ms(RX_TIMEOUT_MS);
  int others = 0;
  while (!rt_expired(deadline)) {
    uint32_t id, len;
    int r = vio_wait_used(&dev.queues[RXQ], &id, &len, 100);
    if (r < 0) return rt_printf("virtio_net: FAIL device needs reset\n"), false;
    if (r == 0) continue;
    const uint8_t* f = rx_buf + HDR_LEN;
    if (len > HDR_LEN && is_reply(f, len - HDR_LEN)) {
      rt_printf("virtio_net: arp reply from 10.0.2.2 at %02x:%02x:%02x:%02x:%02x:%02x\n", f[22],
                f[23], f[24], f[25], f[26], f[27]);
      return true;
    }
    others++;
    post_rx();
  }
  rt_printf("virtio_net: FAIL no arp reply (%d other frames)\n", others);
  return false;
}

int main(void) {
  uintptr_t base = vio_find(VIO_ID_NET, 0);
  if (base == 0) return rt_printf("virtio_net: FAIL no network device\n"), 1;
  if (!vio_init(&dev, base, F_MAC, 2)) return 1;
  if (dev.features & F_MAC) vio_read_config(&dev, 0, mac, sizeof(mac));
  rt_printf("virtio_net: mac %02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3],
            mac[4], mac[5]);
  post_rx();
  build_arp_request();
  struct vio_buf tx[2] = {{tx_hdr, HDR_LEN, false}, {tx_frame, sizeof(tx_frame), false}};
  vio_submit(&dev.queues[TXQ], tx, 2);
  uint32_t id, len;
  int r = vio_wait_used(&dev.queues[TXQ], &id, &len, TX_TIMEOUT_MS);
  if (r != 1) return rt_printf("virtio_net: FAIL transmit not completed (%d)\n", r), 1;
  rt_printf("virtio_net: sent arp request for 10.0.2.2\n");
  if (!wait_reply()) return 1;
  vio_reset(&dev);
  rt_printf("virtio_net: ok\n");
  return 0;
}
