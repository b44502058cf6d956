// Constants from the virtio 1.2 specification (OASIS, "Virtual I/O Device Version 1.2"):
// device types, status bits, feature bits, the virtio-mmio register map, the split-virtqueue
// layout, and the block, network and entropy devices' wire formats. Only what kite uses.
// Section numbers refer to that document.
#pragma once

#include <cstdint>

namespace kite::virtio {

// 5. Device types.
inline constexpr uint32_t kDeviceIdNet = 1;
inline constexpr uint32_t kDeviceIdBlock = 2;
inline constexpr uint32_t kDeviceIdRng = 4;
inline constexpr uint32_t kDeviceIdBalloon = 5;

// 2.1 Device status field.
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusDeviceNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// 6. Reserved (transport and ring) feature bits, as bit numbers.
inline constexpr int kFeatureIndirectDesc = 28;    // VIRTIO_F_INDIRECT_DESC
inline constexpr int kFeatureEventIdx = 29;        // VIRTIO_F_EVENT_IDX
inline constexpr int kFeatureVersion1 = 32;        // VIRTIO_F_VERSION_1
inline constexpr int kFeatureAccessPlatform = 33;  // VIRTIO_F_ACCESS_PLATFORM (never offered)
inline constexpr int kFeatureRingPacked = 34;      // VIRTIO_F_RING_PACKED (never offered)

constexpr uint64_t FeatureBit(int bit) {
  return uint64_t{1} << bit;
}

// 4.2.2 virtio-mmio registers (version 2), byte offsets into the device's window.
namespace mmio {
inline constexpr uint64_t kMagicValue = 0x000;  // "virt"
inline constexpr uint64_t kVersion = 0x004;
inline constexpr uint64_t kDeviceId = 0x008;
inline constexpr uint64_t kVendorId = 0x00c;
inline constexpr uint64_t kDeviceFeatures = 0x010;
inline constexpr uint64_t kDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kDriverFeatures = 0x020;
inline constexpr uint64_t kDriverFeaturesSel = 0x024;
inline constexpr uint64_t kQueueSel = 0x030;
inline constexpr uint64_t kQueueNumMax = 0x034;
inline constexpr uint64_t kQueueNum = 0x038;
inline constexpr uint64_t kQueueReady = 0x044;
inline constexpr uint64_t kQueueNotify = 0x050;
inline constexpr uint64_t kInterruptStatus = 0x060;
inline constexpr uint64_t kInterruptAck = 0x064;
inline constexpr uint64_t kStatus = 0x070;
inline constexpr uint64_t kQueueDescLow = 0x080;
inline constexpr uint64_t kQueueDescHigh = 0x084;
inline constexpr uint64_t kQueueDriverLow = 0x090;  // the available ring
inline constexpr uint64_t kQueueDriverHigh = 0x094;
inline constexpr uint64_t kQueueDeviceLow = 0x0a0;  // the used ring
inline constexpr uint64_t kQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kShmSel = 0x0ac;
inline constexpr uint64_t kShmLenLow = 0x0b0;
inline constexpr uint64_t kShmLenHigh = 0x0b4;
inline constexpr uint64_t kShmBaseLow = 0x0b8;
inline constexpr uint64_t kShmBaseHigh = 0x0bc;
inline constexpr uint64_t kQueueReset = 0x0c0;
inline constexpr uint64_t kConfigGeneration = 0x0fc;
inline constexpr uint64_t kConfig = 0x100;  // device-specific configuration space

inline constexpr uint32_t kMagic = 0x74726976;  // "virt", little-endian
inline constexpr uint32_t kVersion2 = 2;
inline constexpr uint32_t kVendor = 0x4554494b;  // "KITE", little-endian

// InterruptStatus bits.
inline constexpr uint32_t kInterruptUsedBuffer = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;
}  // namespace mmio

// 4.1 Virtio over PCI bus (modern interface only).
namespace virtio_pci {
inline constexpr uint16_t kVendorId = 0x1af4;      // Red Hat, Inc. (virtio)
inline constexpr uint16_t kDeviceIdBase = 0x1040;  // + virtio device id (4.1.2.1)
inline constexpr uint8_t kRevision = 1;            // non-transitional: revision >= 1
inline constexpr uint16_t kSubsystemId = 0x40;     // non-transitional: >= 0x40
inline constexpr uint16_t kNoVector = 0xffff;      // VIRTIO_MSI_NO_VECTOR

// struct virtio_pci_cap cfg_type (4.1.4).
inline constexpr uint8_t kCapCommonCfg = 1;
inline constexpr uint8_t kCapNotifyCfg = 2;
inline constexpr uint8_t kCapIsrCfg = 3;
inline constexpr uint8_t kCapDeviceCfg = 4;
inline constexpr uint8_t kCapPciCfg = 5;

// struct virtio_pci_common_cfg (4.1.4.3), offsets and widths.
inline constexpr uint64_t kDeviceFeatureSelect = 0x00;  // le32
inline constexpr uint64_t kDeviceFeature = 0x04;        // le32, read-only
inline constexpr uint64_t kDriverFeatureSelect = 0x08;  // le32
inline constexpr uint64_t kDriverFeature = 0x0c;        // le32
inline constexpr uint64_t kConfigMsixVector = 0x10;     // le16
inline constexpr uint64_t kNumQueues = 0x12;            // le16, read-only
inline constexpr uint64_t kDeviceStatus = 0x14;         // u8
inline constexpr uint64_t kConfigGeneration = 0x15;     // u8, read-only
inline constexpr uint64_t kQueueSelect = 0x16;          // le16
inline constexpr uint64_t kQueueSize = 0x18;            // le16
inline constexpr uint64_t kQueueMsixVector = 0x1a;      // le16
inline constexpr uint64_t kQueueEnable = 0x1c;          // le16
inline constexpr uint64_t kQueueNotifyOff = 0x1e;       // le16, read-only
inline constexpr uint64_t kQueueDesc = 0x20;            // le64
inline constexpr uint64_t kQueueDriver = 0x28;          // le64 (the available ring)
inline constexpr uint64_t kQueueDevice = 0x30;          // le64 (the used ring)
inline constexpr uint64_t kCommonCfgSize = 0x38;        // without queue_notify_data/queue_reset

// ISR status bits (4.1.4.5).
inline constexpr uint8_t kIsrQueue = 1;
inline constexpr uint8_t kIsrConfig = 2;
}  // namespace virtio_pci

// 2.7 Split virtqueues.
inline constexpr uint16_t kDescFlagNext = 1;
inline constexpr uint16_t kDescFlagWrite = 2;
inline constexpr uint16_t kDescFlagIndirect = 4;
inline constexpr uint16_t kAvailFlagNoInterrupt = 1;
inline constexpr uint16_t kUsedFlagNoNotify = 1;
inline constexpr uint16_t kMaxQueueSize = 32768;  // a split queue's size is a power of 2 <= 32768

struct Descriptor {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

struct UsedElement {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(UsedElement) == 8);

// 5.2 Block device.
namespace blk {
inline constexpr int kFeatureSizeMax = 1;
inline constexpr int kFeatureSegMax = 2;
inline constexpr int kFeatureGeometry = 4;
inline constexpr int kFeatureRo = 5;
inline constexpr int kFeatureBlkSize = 6;
inline constexpr int kFeatureFlush = 9;
inline constexpr int kFeatureTopology = 10;
inline constexpr int kFeatureConfigWce = 11;
inline constexpr int kFeatureMq = 12;
inline constexpr int kFeatureDiscard = 13;
inline constexpr int kFeatureWriteZeroes = 14;

inline constexpr uint32_t kTypeIn = 0;
inline constexpr uint32_t kTypeOut = 1;
inline constexpr uint32_t kTypeFlush = 4;
inline constexpr uint32_t kTypeGetId = 8;
inline constexpr uint32_t kTypeGetLifetime = 10;
inline constexpr uint32_t kTypeDiscard = 11;
inline constexpr uint32_t kTypeWriteZeroes = 13;
inline constexpr uint32_t kTypeSecureErase = 14;

inline constexpr uint8_t kStatusOk = 0;
inline constexpr uint8_t kStatusIoErr = 1;
inline constexpr uint8_t kStatusUnsupp = 2;

inline constexpr uint32_t kSectorSize = 512;
inline constexpr uint32_t kIdBytes = 20;  // VIRTIO_BLK_ID_BYTES

inline constexpr uint32_t kWriteZeroesFlagUnmap = 1;

struct RequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

struct DiscardWriteZeroes {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(DiscardWriteZeroes) == 16);

// struct virtio_blk_config, up to and including write_zeroes_may_unmap (packed layout).
#pragma pack(push, 1)
struct Config {
  uint64_t capacity;  // in 512-byte sectors
  uint32_t size_max;
  uint32_t seg_max;
  struct {
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
  } geometry;
  uint32_t blk_size;
  struct {
    uint8_t physical_block_exp;
    uint8_t alignment_offset;
    uint16_t min_io_size;
    uint32_t opt_io_size;
  } topology;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
};
#pragma pack(pop)
static_assert(sizeof(Config) == 60);
}  // namespace blk

// 5.1 Network device.
namespace net {
inline constexpr int kFeatureCsum = 0;
inline constexpr int kFeatureGuestCsum = 1;
inline constexpr int kFeatureCtrlGuestOffloads = 2;
inline constexpr int kFeatureMtu = 3;
inline constexpr int kFeatureMac = 5;
inline constexpr int kFeatureGuestTso4 = 7;
inline constexpr int kFeatureGuestTso6 = 8;
inline constexpr int kFeatureGuestEcn = 9;
inline constexpr int kFeatureGuestUfo = 10;
inline constexpr int kFeatureHostTso4 = 11;
inline constexpr int kFeatureHostTso6 = 12;
inline constexpr int kFeatureHostEcn = 13;
inline constexpr int kFeatureHostUfo = 14;
inline constexpr int kFeatureMrgRxbuf = 15;
inline constexpr int kFeatureStatus = 16;
inline constexpr int kFeatureCtrlVq = 17;
inline constexpr int kFeatureCtrlRx = 18;
inline constexpr int kFeatureCtrlVlan = 19;  // never offered
inline constexpr int kFeatureCtrlRxExtra = 20;
inline constexpr int kFeatureGuestAnnounce = 21;
inline constexpr int kFeatureMq = 22;
inline constexpr int kFeatureCtrlMacAddr = 23;

inline constexpr uint16_t kStatusLinkUp = 1;
inline constexpr uint16_t kStatusAnnounce = 2;

// 5.1.6.5 Control virtqueue: struct virtio_net_ctrl { u8 class; u8 command; } then the
// command's data, then a device-writable u8 ack.
inline constexpr uint8_t kCtrlOk = 0;
inline constexpr uint8_t kCtrlErr = 1;
inline constexpr uint8_t kCtrlRx = 0;  // 5.1.6.5.1: u8 on/off
inline constexpr uint8_t kCtrlRxPromisc = 0;
inline constexpr uint8_t kCtrlRxAllmulti = 1;
inline constexpr uint8_t kCtrlRxAlluni = 2;  // the rest: VIRTIO_NET_F_CTRL_RX_EXTRA
inline constexpr uint8_t kCtrlRxNomulti = 3;
inline constexpr uint8_t kCtrlRxNouni = 4;
inline constexpr uint8_t kCtrlRxNobcast = 5;
inline constexpr uint8_t kCtrlMac = 1;  // 5.1.6.5.2
inline constexpr uint8_t kCtrlMacTableSet = 0;
inline constexpr uint8_t kCtrlMacAddrSet = 1;
inline constexpr uint8_t kCtrlAnnounce = 3;  // 5.1.6.5.3
inline constexpr uint8_t kCtrlAnnounceAck = 0;
inline constexpr uint8_t kCtrlMq = 4;  // 5.1.6.5.5: le16 virtqueue_pairs
inline constexpr uint8_t kCtrlMqVqPairsSet = 0;
inline constexpr uint16_t kMqPairsMin = 1;

inline constexpr uint8_t kHdrFlagNeedsCsum = 1;
inline constexpr uint8_t kHdrFlagDataValid = 2;
inline constexpr uint8_t kGsoNone = 0;
inline constexpr uint8_t kGsoTcpv4 = 1;
inline constexpr uint8_t kGsoUdp = 3;
inline constexpr uint8_t kGsoTcpv6 = 4;
inline constexpr uint8_t kGsoEcn = 0x80;

// struct virtio_net_hdr with num_buffers: the header when VERSION_1 is negotiated (12 bytes).
struct Header {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(Header) == 12);

#pragma pack(push, 1)
struct Config {
  uint8_t mac[6];
  uint16_t status;
  uint16_t max_virtqueue_pairs;
  uint16_t mtu;
};
#pragma pack(pop)
static_assert(sizeof(Config) == 12);

// The largest frame a driver may hand us without TSO: 65535 bytes of IP + Ethernet + VLAN
// header + the virtio-net header (BAD_INPUTS G23).
inline constexpr uint32_t kMaxFrameWithHeader = 65562;
}  // namespace net

}  // namespace kite::virtio
