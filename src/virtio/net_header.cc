// Pure virtio-net header and feature checks (virtio 1.2 sections 5.1.3 and 5.1.6); see
// net_header.h. Used by net.cc (TX) and net_rx.cc (RX) on the event loop.
#include "virtio/net_header.h"

namespace kite::virtio {
namespace {

bool Has(uint64_t features, int bit) {
  return (features & FeatureBit(bit)) != 0;
}

}  // namespace

uint64_t NetDeviceFeatures(bool vnet_header, uint64_t backend_offloads) {
  uint64_t features = FeatureBit(kFeatureVersion1) | FeatureBit(kFeatureIndirectDesc) |
                      FeatureBit(kFeatureEventIdx) | FeatureBit(net::kFeatureMac) |
                      FeatureBit(net::kFeatureStatus) | FeatureBit(net::kFeatureMrgRxbuf);
  if (vnet_header) {
    uint64_t offloads = backend_offloads & kNetOffloadFeatures;
    // Never offer an offload without the checksum feature it depends on.
    if (!Has(offloads, net::kFeatureCsum)) {
      offloads &= ~(FeatureBit(net::kFeatureHostTso4) | FeatureBit(net::kFeatureHostTso6));
    }
    if (!Has(offloads, net::kFeatureGuestCsum)) {
      offloads &= ~(FeatureBit(net::kFeatureGuestTso4) | FeatureBit(net::kFeatureGuestTso6));
    }
    features |= offloads;
  }
  return features;
}

bool NetFeaturesConsistent(uint64_t features) {
  bool host_tso = Has(features, net::kFeatureHostTso4) || Has(features, net::kFeatureHostTso6);
  bool guest_tso = Has(features, net::kFeatureGuestTso4) || Has(features, net::kFeatureGuestTso6);
  if (host_tso && !Has(features, net::kFeatureCsum)) return false;
  if (guest_tso && !Has(features, net::kFeatureGuestCsum)) return false;
  // The control queue's features need the control queue; RX_EXTRA needs CTRL_RX.
  bool needs_vq = Has(features, net::kFeatureCtrlRx) || Has(features, net::kFeatureMq) ||
                  Has(features, net::kFeatureGuestAnnounce) ||
                  Has(features, net::kFeatureCtrlMacAddr);
  if (needs_vq && !Has(features, net::kFeatureCtrlVq)) return false;
  if (Has(features, net::kFeatureCtrlRxExtra) && !Has(features, net::kFeatureCtrlRx)) return false;
  return true;
}

TxHeaderVerdict CheckTxHeader(net::Header* hdr, uint64_t features, size_t frame_len) {
  // 5.1.6.2.2: "The device MUST ignore flag bits that it does not recognize"; DATA_VALID is
  // meaningless on transmit.
  hdr->flags &= net::kHdrFlagNeedsCsum;
  bool needs_csum = (hdr->flags & net::kHdrFlagNeedsCsum) != 0;
  if (needs_csum) {
    if (!Has(features, net::kFeatureCsum)) return TxHeaderVerdict::kCsumNotNegotiated;
    size_t end = size_t{hdr->csum_start} + hdr->csum_offset + sizeof(uint16_t);
    if (end > frame_len) return TxHeaderVerdict::kBadCsumOffsets;
  }
  if (hdr->gso_type == net::kGsoNone) return TxHeaderVerdict::kOk;
  if (hdr->gso_type & net::kGsoEcn) return TxHeaderVerdict::kGsoNotNegotiated;  // HOST_ECN
  switch (hdr->gso_type) {
    case net::kGsoTcpv4:
      if (!Has(features, net::kFeatureHostTso4)) return TxHeaderVerdict::kGsoNotNegotiated;
      break;
    case net::kGsoTcpv6:
      if (!Has(features, net::kFeatureHostTso6)) return TxHeaderVerdict::kGsoNotNegotiated;
      break;
    default:  // UDP (HOST_UFO is never offered) and unknown types
      return TxHeaderVerdict::kBadGso;
  }
  if (!needs_csum || hdr->gso_size == 0) return TxHeaderVerdict::kBadGso;
  return TxHeaderVerdict::kOk;
}

const char* TxHeaderVerdictName(TxHeaderVerdict verdict) {
  switch (verdict) {
    case TxHeaderVerdict::kOk:
      return "ok";
    case TxHeaderVerdict::kCsumNotNegotiated:
      return "NEEDS_CSUM without VIRTIO_NET_F_CSUM";
    case TxHeaderVerdict::kBadCsumOffsets:
      return "checksum offsets beyond the frame";
    case TxHeaderVerdict::kGsoNotNegotiated:
      return "segmentation offload not negotiated";
    case TxHeaderVerdict::kBadGso:
      return "unsupported or malformed segmentation request";
  }
  return "?";
}

bool CheckRxHeader(net::Header* hdr, uint64_t features) {
  if (!Has(features, net::kFeatureGuestCsum)) {
    if (hdr->flags & net::kHdrFlagNeedsCsum) return false;
    hdr->flags &= static_cast<uint8_t>(~net::kHdrFlagDataValid);
  }
  switch (hdr->gso_type & static_cast<uint8_t>(~net::kGsoEcn)) {
    case net::kGsoNone:
      return hdr->gso_type == net::kGsoNone;  // ECN alone is meaningless
    case net::kGsoTcpv4:
      return Has(features, net::kFeatureGuestTso4) && !(hdr->gso_type & net::kGsoEcn);
    case net::kGsoTcpv6:
      return Has(features, net::kFeatureGuestTso6) && !(hdr->gso_type & net::kGsoEcn);
    default:
      return false;
  }
}

}  // namespace kite::virtio
