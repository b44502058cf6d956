/* vsock-test: a tiny AF_VSOCK client and server for kite's guest initramfs (busybox has no
 * vsock). Built static by build-initramfs.sh. Every line it prints starts with "vsock-test:".
 *
 *   vsock-test connect CID PORT BYTES   connects, sends BYTES of pseudo-random data, shuts down
 *                                       its sending side, then reads until EOF; prints
 *                                       "sent N fnv HEX" and what came back
 *   vsock-test listen PORT              accepts one connection, reads until EOF, prints
 *                                       "received N fnv HEX", sends "N HEX\n" back and closes
 *
 * The checksum is 64-bit FNV-1a over the bytes in order, so the host compares its own. Exit
 * status: 0 when the transfer completed, 1 with "vsock-test: ... failed: <errno text>".
 */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint64_t fnv(uint64_t h, const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static int fail(const char* what) {
  printf("vsock-test: %s failed: %s\n", what, strerror(errno));
  return 1;
}

static int do_connect(unsigned cid, unsigned port, unsigned long long bytes) {
  int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (fd < 0) return fail("socket");
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
  if (connect(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0) return fail("connect");
  static unsigned char buf[65536];
  uint64_t h = 0xcbf29ce484222325ull, x = 0x9e3779b97f4a7c15ull ^ port;
  unsigned long long sent = 0;
  while (sent < bytes) {
    size_t n = bytes - sent < sizeof(buf) ? (size_t)(bytes - sent) : sizeof(buf);
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      buf[i] = (unsigned char)x;
    }
    for (size_t off = 0; off < n;) {
      ssize_t w = send(fd, buf + off, n - off, MSG_NOSIGNAL);
      if (w < 0) {
        printf("vsock-test: sent %llu before the error\n", sent + off);
        return fail("send");
      }
      off += (size_t)w;
    }
    h = fnv(h, buf, n);
    sent += n;
  }
  shutdown(fd, SHUT_WR);
  printf("vsock-test: sent %llu fnv %016llx\n", sent, (unsigned long long)h);
  char reply[256];
  size_t got = 0;
  for (;;) {
    ssize_t r = recv(fd, reply + got, sizeof(reply) - 1 - got, 0);
    if (r < 0) return fail("recv");
    if (r == 0 || (got += (size_t)r) == sizeof(reply) - 1) break;
  }
  reply[got] = 0;
  if (got && reply[got - 1] == '\n') reply[got - 1] = 0;
  printf("vsock-test: host replied '%s'\n", reply);
  close(fd);
  return 0;
}

static int do_listen(unsigned port) {
  int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (fd < 0) return fail("socket");
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
  if (bind(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0) return fail("bind");
  if (listen(fd, 1) != 0) return fail("listen");
  printf("vsock-test: listening on port %u\n", port);
  fflush(stdout);
  int c = accept(fd, NULL, NULL);
  if (c < 0) return fail("accept");
  static unsigned char buf[65536];
  uint64_t h = 0xcbf29ce484222325ull;
  unsigned long long got = 0;
  for (;;) {
    ssize_t r = recv(c, buf, sizeof(buf), 0);
    if (r < 0) return fail("recv");
    if (r == 0) break;
    h = fnv(h, buf, (size_t)r);
    got += (unsigned long long)r;
  }
  printf("vsock-test: received %llu fnv %016llx\n", got, (unsigned long long)h);
  char line[64];
  int n = snprintf(line, sizeof(line), "%llu %016llx\n", got, (unsigned long long)h);
  if (send(c, line, (size_t)n, MSG_NOSIGNAL) != n) return fail("send");
  close(c);
  close(fd);
  return 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 5 && strcmp(argv[1], "connect") == 0) {
    return do_connect((unsigned)strtoul(argv[2], NULL, 0), (unsigned)strtoul(argv[3], NULL, 0),
                      strtoull(argv[4], NULL, 0));
  }
  if (argc == 3 && strcmp(argv[1], "listen") == 0) {
    return do_listen((unsigned)strtoul(argv[2], NULL, 0));
  }
  fprintf(stderr, "usage: vsock-test connect CID PORT BYTES | listen PORT\n");
  return 2;
}
