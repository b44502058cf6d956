/* virtio.h: a minimal virtio-mmio (version 2) driver for the test guests: finds a device by
 * scanning kite's slots (0xd0000000 + n * 0x1000) and QEMU microvm's (0xfeb00000 + n * 0x200)
 * for the magic "virt", runs the initialisation sequence of virtio 1.2 section 3.1.1, sets up
 * split virtqueues of VIO_QUEUE_SIZE entries in static memory, submits one descriptor chain at
 * a time per queue and polls the used ring (no interrupts). Raw helpers let a program write
 * arbitrary descriptors and avail entries to try malformed chains. Single CPU only. */
#pragma once

#include "rt.h"

#define VIO_QUEUE_SIZE 8
#define VIO_MAX_QUEUES 2

/* virtio-mmio registers (virtio 1.2 section 4.2.2) and other constants the guests use. */
#define VIO_REG_MAGIC 0x000
#define VIO_REG_VERSION 0x004
#define VIO_REG_DEVICE_ID 0x008
#define VIO_REG_DEVICE_FEATURES 0x010
#define VIO_REG_DEVICE_FEATURES_SEL 0x014
#define VIO_REG_DRIVER_FEATURES 0x020
#define VIO_REG_DRIVER_FEATURES_SEL 0x024
#define VIO_REG_QUEUE_SEL 0x030
#define VIO_REG_QUEUE_NUM_MAX 0x034
#define VIO_REG_QUEUE_NUM 0x038
#define VIO_REG_QUEUE_READY 0x044
#define VIO_REG_QUEUE_NOTIFY 0x050
#define VIO_REG_STATUS 0x070
#define VIO_REG_QUEUE_DESC 0x080
#define VIO_REG_QUEUE_DRIVER 0x090
#define VIO_REG_QUEUE_DEVICE 0x0a0
#define VIO_REG_CONFIG_GENERATION 0x0fc
#define VIO_REG_CONFIG 0x100

#define VIO_ID_NET 1
#define VIO_ID_BLOCK 2
#define VIO_ID_RNG 4
#define VIO_STATUS_ACKNOWLEDGE 1
#define VIO_STATUS_DRIVER 2
#define VIO_STATUS_DRIVER_OK 4
#define VIO_STATUS_FEATURES_OK 8
#define VIO_STATUS_NEEDS_RESET 64
#define VIO_STATUS_FAILED 128
#define VIO_F_VERSION_1 (1ull << 32)
#define VIO_DESC_F_NEXT 1
#define VIO_DESC_F_WRITE 2
#define VIO_DESC_F_INDIRECT 4
#define VIO_AVAIL_F_NO_INTERRUPT 1

struct vio_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

struct vio_queue {
  volatile struct vio_desc* desc;
  volatile uint16_t* avail; /* flags, idx, ring[size], used_event */
  volatile uint32_t* used;  /* flags|idx, then {id, len} pairs */
  uint16_t size;
  uint16_t index;     /* the queue's number on its device */
  uint16_t avail_idx; /* next avail->idx the driver publishes */
  uint16_t last_used; /* used->idx consumed so far */
  struct vio_dev* dev;
};

#define VIO_RING_BYTES 512 /* descriptor table at 0, avail ring at 128, used ring at 256 */

struct vio_dev {
  uintptr_t base;
  uint32_t device_id;
  uint64_t features; /* negotiated */
  struct vio_queue queues[VIO_MAX_QUEUES];
  uint8_t rings[VIO_MAX_QUEUES][VIO_RING_BYTES] __attribute__((aligned(4096)));
};

/* One buffer of a chain. */
struct vio_buf {
  const volatile void* addr;
  uint32_t len;
  bool device_writes;
};

/* The base of the `nth` (0-based) virtio-mmio device with `device_id`, or 0 when none. */
uintptr_t vio_find(uint32_t device_id, int nth);

uint32_t vio_read32(const struct vio_dev* d, uint32_t reg);
void vio_write32(const struct vio_dev* d, uint32_t reg, uint32_t value);
uint32_t vio_status(const struct vio_dev* d);

/* Reset, ACKNOWLEDGE, DRIVER, features = offered & (wanted | VERSION_1), FEATURES_OK and its
 * read-back, then sets up queues 0..num_queues-1 and writes DRIVER_OK. Prints the reason and
 * returns false on any failure. */
bool vio_init(struct vio_dev* d, uintptr_t base, uint64_t wanted, int num_queues);
/* Writes status 0 and waits (bounded) until the device reads back 0. */
bool vio_reset(struct vio_dev* d);
/* Reads `len` bytes of the device's configuration space at `offset` (32-bit reads, retried
 * while ConfigGeneration changes). len <= 16. */
void vio_read_config(const struct vio_dev* d, uint32_t offset, void* out, uint32_t len);

/* Writes `n` buffers as one chain at descriptors 0..n-1, makes it available and notifies.
 * Only one chain per queue may be outstanding. */
void vio_submit(struct vio_queue* q, const struct vio_buf* bufs, int n);
/* Polls for the next used element for up to timeout_ms. Returns 1 with *id and *len set, 0 on
 * timeout, -1 when the device set DEVICE_NEEDS_RESET. */
int vio_wait_used(struct vio_queue* q, uint32_t* id, uint32_t* len, uint64_t timeout_ms);

/* Raw access for malformed chains. */
void vio_set_desc(struct vio_queue* q, uint16_t index, uint64_t addr, uint32_t len, uint16_t flags,
                  uint16_t next);
void vio_add_avail(struct vio_queue* q, uint16_t head); /* publishes and notifies */
void vio_notify(struct vio_queue* q);
