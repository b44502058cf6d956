// Pure checks of the virtio-net header (virtio 1.2 section 5.1.6) and the feature set, shared
// by the device's TX and RX paths and unit-tested without a queue. No I/O, no guest memory:
// the header given here is always the device's own copy (BAD_INPUTS G15).
#pragma once

#include <cstddef>
#include <cstdint>

#include "virtio/virtio_spec.h"

namespace kite::virtio {

inline constexpr size_t kNetHeaderSize = sizeof(net::Header);  // 12: VERSION_1 layout
inline constexpr size_t kEthernetHeaderSize = 14;

// The offloads a backend with vnet headers may pass through: checksum and TCP segmentation
// in both directions (no UFO, no ECN).
inline constexpr uint64_t kNetOffloadFeatures =
    FeatureBit(net::kFeatureCsum) | FeatureBit(net::kFeatureGuestCsum) |
    FeatureBit(net::kFeatureHostTso4) | FeatureBit(net::kFeatureHostTso6) |
    FeatureBit(net::kFeatureGuestTso4) | FeatureBit(net::kFeatureGuestTso6);

// The control queue's features, always offered (5.1.6.5; VLAN filtering is not).
inline constexpr uint64_t kNetCtrlFeatures =
    FeatureBit(net::kFeatureCtrlVq) | FeatureBit(net::kFeatureCtrlRx) |
    FeatureBit(net::kFeatureCtrlRxExtra) | FeatureBit(net::kFeatureCtrlMacAddr) |
    FeatureBit(net::kFeatureGuestAnnounce);
inline constexpr uint16_t kCtrlQueueSize = 64;  // QEMU's

// Features the device offers: VERSION_1, MAC, STATUS, MRG_RXBUF, INDIRECT_DESC, EVENT_IDX,
// and with a vnet-header backend the offloads it supports (within kNetOffloadFeatures).
uint64_t NetDeviceFeatures(bool vnet_header, uint64_t backend_offloads);

// 5.1.3.1: HOST_TSO4/6 need CSUM, GUEST_TSO4/6 need GUEST_CSUM, CTRL_RX, MQ, GUEST_ANNOUNCE
// and CTRL_MAC_ADDR need CTRL_VQ, CTRL_RX_EXTRA needs CTRL_RX. False: refuse FEATURES_OK.
bool NetFeaturesConsistent(uint64_t features);

enum class TxHeaderVerdict {
  kOk,
  kCsumNotNegotiated,  // NEEDS_CSUM without VIRTIO_NET_F_CSUM (G25)
  kBadCsumOffsets,     // csum_start + csum_offset + 2 beyond the frame
  kGsoNotNegotiated,   // TCPv4/TCPv6 without HOST_TSO4/6, or ECN (never offered) (G25)
  kBadGso,             // UDP (never offered), unknown type, gso_size 0, GSO without NEEDS_CSUM
};
// Checks a transmitted header against the negotiated `features` for a frame of `frame_len`
// bytes (after the header) and clears the flag bits a device must ignore (5.1.6.2.2:
// DATA_VALID and unknown bits), so `hdr` can be handed to the backend as is.
TxHeaderVerdict CheckTxHeader(net::Header* hdr, uint64_t features, size_t frame_len);
const char* TxHeaderVerdictName(TxHeaderVerdict verdict);

// Checks a header a backend produced for the guest: offloads the driver did not negotiate are
// refused (false: drop the frame); DATA_VALID is cleared without GUEST_CSUM (5.1.6.3.2).
bool CheckRxHeader(net::Header* hdr, uint64_t features);

}  // namespace kite::virtio
