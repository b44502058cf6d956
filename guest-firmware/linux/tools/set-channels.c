// set-channels IFACE [N]: what `ethtool -L IFACE combined N` does (busybox has no ethtool), for
// kite's guest tests: ETHTOOL_SCHANNELS with combined = N (virtio-net sends the device
// VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET), then prints the channels as ETHTOOL_GCHANNELS reads them:
//   kite-guest: IFACE channels combined C of M
// Built static by build-initramfs.sh (gcc -static).
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static int Channels(int fd, const char* name, struct ethtool_channels* ch) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  ifr.ifr_data = (void*)ch;
  return ioctl(fd, SIOCETHTOOL, &ifr);
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: set-channels IFACE [COMBINED]\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct ethtool_channels ch = {.cmd = ETHTOOL_GCHANNELS};
  if (fd < 0 || Channels(fd, argv[1], &ch) < 0) {
    perror("set-channels: ETHTOOL_GCHANNELS");
    return 1;
  }
  if (argc == 3) {
    ch.cmd = ETHTOOL_SCHANNELS;
    ch.combined_count = (unsigned)atoi(argv[2]);
    if (Channels(fd, argv[1], &ch) < 0) {
      perror("set-channels: ETHTOOL_SCHANNELS");
      return 1;
    }
    ch.cmd = ETHTOOL_GCHANNELS;
    if (Channels(fd, argv[1], &ch) < 0) {
      perror("set-channels: ETHTOOL_GCHANNELS");
      return 1;
    }
  }
  printf("kite-guest: %s channels combined %u of %u\n", argv[1], ch.combined_count,
         ch.max_combined);
  return 0;
}
