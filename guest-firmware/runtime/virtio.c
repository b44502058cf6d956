/* virtio.c: the test guests' minimal virtio-mmio driver (see virtio.h). Register offsets are
 * those of virtio 1.2 section 4.2.2; the split virtqueue layout is section 2.7. x86 keeps
 * stores in order, so a compiler barrier orders ring writes before the notify write, and
 * volatile reads of used->idx see the device's writes. */
#include "virtio.h"

#define MAGIC 0x74726976 /* "virt" */
#define KITE_SLOTS 0xd0000000ull
#define KITE_SLOT_SIZE 0x1000
#define KITE_SLOT_COUNT 16
#define MICROVM_SLOTS 0xfeb00000ull
#define MICROVM_SLOT_SIZE 0x200
#define MICROVM_SLOT_COUNT 24

#define AVAIL_OFFSET 128
#define USED_OFFSET 256

static inline void barrier(void) {
  __asm__ volatile("mfence" ::: "memory");
}

static uint32_t mmio_read(uintptr_t addr) {
  return *(volatile uint32_t*)addr;
}

static void mmio_write(uintptr_t addr, uint32_t value) {
  *(volatile uint32_t*)addr = value;
}

uint32_t vio_read32(const struct vio_dev* d, uint32_t reg) {
  return mmio_read(d->base + reg);
}

void vio_write32(const struct vio_dev* d, uint32_t reg, uint32_t value) {
  mmio_write(d->base + reg, value);
}

uint32_t vio_status(const struct vio_dev* d) {
  return vio_read32(d, VIO_REG_STATUS);
}

static bool is_device(uintptr_t base, uint32_t device_id) {
  return mmio_read(base + VIO_REG_MAGIC) == MAGIC && mmio_read(base + VIO_REG_VERSION) == 2 &&
         mmio_read(base + VIO_REG_DEVICE_ID) == device_id;
}

uintptr_t vio_find(uint32_t device_id, int nth) {
  for (int i = 0; i < KITE_SLOT_COUNT; i++) {
    uintptr_t base = KITE_SLOTS + (uintptr_t)i * KITE_SLOT_SIZE;
    if (is_device(base, device_id) && nth-- == 0) return base;
  }
  for (int i = 0; i < MICROVM_SLOT_COUNT; i++) {
    uintptr_t base = MICROVM_SLOTS + (uintptr_t)i * MICROVM_SLOT_SIZE;
    if (is_device(base, device_id) && nth-- == 0) return base;
  }
  return 0;
}

bool vio_reset(struct vio_dev* d) {
  vio_write32(d, VIO_REG_STATUS, 0);
  uint64_t deadline = rt_deadline_ms(1000);
  while (vio_status(d) != 0) {
    if (rt_expired(deadline)) {
      rt_printf("virtio: device at %lx did not reset\n", (uint64_t)d->base);
      return false;
    }
    rt_pause();
  }
  return true;
}

static void write64(const struct vio_dev* d, uint32_t reg, uint64_t value) {
  vio_write32(d, reg, (uint32_t)value);
  vio_write32(d, reg + 4, (uint32_t)(value >> 32));
}

static bool setup_queue(struct vio_dev* d, uint16_t index) {
  struct vio_queue* q = &d->queues[index];
  uint8_t* ring = d->rings[index];
  memset(ring, 0, VIO_RING_BYTES);
  vio_write32(d, VIO_REG_QUEUE_SEL, index);
  if (vio_read32(d, VIO_REG_QUEUE_READY) != 0) {
    rt_printf("virtio: queue %u ready before setup\n", index);
    return false;
  }
  uint32_t max = vio_read32(d, VIO_REG_QUEUE_NUM_MAX);
  if (max == 0) {
    rt_printf("virtio: queue %u not available\n", index);
    return false;
  }
  *q = (struct vio_queue){
      .desc = (volatile struct vio_desc*)ring,
      .avail = (volatile uint16_t*)(ring + AVAIL_OFFSET),
      .used = (volatile uint32_t*)(ring + USED_OFFSET),
      .size = (uint16_t)(max < VIO_QUEUE_SIZE ? max : VIO_QUEUE_SIZE),
      .index = index,
      .dev = d,
  };
  q->avail[0] = VIO_AVAIL_F_NO_INTERRUPT;
  vio_write32(d, VIO_REG_QUEUE_NUM, q->size);
  write64(d, VIO_REG_QUEUE_DESC, (uintptr_t)q->desc);
  write64(d, VIO_REG_QUEUE_DRIVER, (uintptr_t)q->avail);
  write64(d, VIO_REG_QUEUE_DEVICE, (uintptr_t)q->used);
  vio_write32(d, VIO_REG_QUEUE_READY, 1);
  if (vio_read32(d, VIO_REG_QUEUE_READY) != 1) {
    rt_printf("virtio: queue %u refused\n", index);
    return false;
  }
  return true;
}

static bool negotiate(struct vio_dev* d, uint64_t wanted) {
  uint64_t offered = 0;
  for (uint32_t sel = 0; sel < 2; sel++) {
    vio_write32(d, VIO_REG_DEVICE_FEATURES_SEL, sel);
    offered |= (uint64_t)vio_read32(d, VIO_REG_DEVICE_FEATURES) << (32 * sel);
  }
  if (!(offered & VIO_F_VERSION_1)) {
    rt_printf("virtio: device does not offer VERSION_1\n");
    return false;
  }
  d->features = offered & (wanted | VIO_F_VERSION_1);
  for (uint32_t sel = 0; sel < 2; sel++) {
    vio_write32(d, VIO_REG_DRIVER_FEATURES_SEL, sel);
    vio_write32(d, VIO_REG_DRIVER_FEATURES, (uint32_t)(d->features >> (32 * sel)));
  }
  uint32_t status = VIO_STATUS_ACKNOWLEDGE | VIO_STATUS_DRIVER | VIO_STATUS_FEATURES_OK;
  vio_write32(d, VIO_REG_STATUS, status);
  if (!(vio_status(d) & VIO_STATUS_FEATURES_OK)) {
    rt_printf("virtio: FEATURES_OK refused (features %lx)\n", d->features);
    return false;
  }
  return true;
}

bool vio_init(struct vio_dev* d, uintptr_t base, uint64_t wanted, int num_queues) {
  d->base = base;
  d->device_id = vio_read32(d, VIO_REG_DEVICE_ID);
  if (num_queues > VIO_MAX_QUEUES || !vio_reset(d)) return false;
  vio_write32(d, VIO_REG_STATUS, VIO_STATUS_ACKNOWLEDGE);
  vio_write32(d, VIO_REG_STATUS, VIO_STATUS_ACKNOWLEDGE | VIO_STATUS_DRIVER);
  if (!negotiate(d, wanted)) {
    vio_write32(d, VIO_REG_STATUS, vio_status(d) | VIO_STATUS_FAILED);
    return false;
  }
  for (int i = 0; i < num_queues; i++) {
    if (!setup_queue(d, (uint16_t)i)) {
      vio_write32(d, VIO_REG_STATUS, vio_status(d) | VIO_STATUS_FAILED);
      return false;
    }
  }
  vio_write32(d, VIO_REG_STATUS, vio_status(d) | VIO_STATUS_DRIVER_OK);
  uint32_t status = vio_status(d);
  if (!(status & VIO_STATUS_DRIVER_OK) || (status & VIO_STATUS_NEEDS_RESET)) {
    rt_printf("virtio: DRIVER_OK not accepted (status %x)\n", status);
    return false;
  }
  return true;
}

void vio_read_config(const struct vio_dev* d, uint32_t offset, void* out, uint32_t len) {
  uint32_t words[4];
  uint32_t first = offset & ~3u, count = (offset + len - first + 3) / 4;
  if (count > 4) count = 4;
  uint32_t generation;
  do {
    generation = vio_read32(d, VIO_REG_CONFIG_GENERATION);
    for (uint32_t i = 0; i < count; i++) words[i] = vio_read32(d, VIO_REG_CONFIG + first + 4 * i);
  } while (generation != vio_read32(d, VIO_REG_CONFIG_GENERATION));
  memcpy(out, (uint8_t*)words + (offset - first), len);
}

void vio_set_desc(struct vio_queue* q, uint16_t index, uint64_t addr, uint32_t len, uint16_t flags,
                  uint16_t next) {
  volatile struct vio_desc* desc = &q->desc[index % q->size];
  desc->addr = addr;
  desc->len = len;
  desc->flags = flags;
  desc->next = next;
}

void vio_add_avail(struct vio_queue* q, uint16_t head) {
  q->avail[2 + q->avail_idx % q->size] = head;
  barrier();
  q->avail[1] = ++q->avail_idx;
  vio_notify(q);
}

void vio_notify(struct vio_queue* q) {
  barrier();
  vio_write32(q->dev, VIO_REG_QUEUE_NOTIFY, q->index);
}

void vio_submit(struct vio_queue* q, const struct vio_buf* bufs, int n) {
  for (int i = 0; i < n; i++) {
    uint16_t flags = (uint16_t)((bufs[i].device_writes ? VIO_DESC_F_WRITE : 0) |
                                (i + 1 < n ? VIO_DESC_F_NEXT : 0));
    vio_set_desc(q, (uint16_t)i, (uintptr_t)bufs[i].addr, bufs[i].len, flags, (uint16_t)(i + 1));
  }
  vio_add_avail(q, 0);
}

int vio_wait_used(struct vio_queue* q, uint32_t* id, uint32_t* len, uint64_t timeout_ms) {
  uint64_t deadline = rt_deadline_ms(timeout_ms);
  for (uint32_t spin = 0;; spin++) {
    uint16_t used_idx = (uint16_t)(q->used[0] >> 16);
    if (used_idx != q->last_used) {
      barrier();
      uint32_t slot = q->last_used % q->size;
      *id = q->used[1 + 2 * slot];
      *len = q->used[2 + 2 * slot];
      q->last_used++;
      return 1;
    }
    /* A status read is an exit to the VMM: look at it only now and then. */
    if (spin % 256 == 0 && (vio_status(q->dev) & VIO_STATUS_NEEDS_RESET)) return -1;
    if (rt_expired(deadline)) return (vio_status(q->dev) & VIO_STATUS_NEEDS_RESET) ? -1 : 0;
    rt_pause();
  }
}
