// The virtio-net control commands and the receive filter (see net_ctrl.h). Pure functions;
// any thread. Every length comes from the guest: each is checked before a byte is read.
#include "virtio/net_ctrl.h"

#include <algorithm>
#include <cstring>

#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

constexpr size_t kMacBytes = 6;

bool Has(uint64_t features, int bit) {
  return (features & FeatureBit(bit)) != 0;
}

uint8_t ApplyRx(uint8_t cmd, std::span<const uint8_t> data, uint64_t features, RxFilter* f) {
  if (!Has(features, net::kFeatureCtrlRx) || data.size() != 1) return net::kCtrlErr;
  bool on = data[0] != 0;
  bool extra = Has(features, net::kFeatureCtrlRxExtra);
  switch (cmd) {
    case net::kCtrlRxPromisc:
      f->promisc = on;
      return net::kCtrlOk;
    case net::kCtrlRxAllmulti:
      f->allmulti = on;
      return net::kCtrlOk;
  }
  bool* flag = cmd == net::kCtrlRxAlluni    ? &f->alluni
               : cmd == net::kCtrlRxNomulti ? &f->nomulti
               : cmd == net::kCtrlRxNouni   ? &f->nouni
               : cmd == net::kCtrlRxNobcast ? &f->nobcast
                                            : nullptr;
  if (flag == nullptr || !extra) return net::kCtrlErr;
  *flag = on;
  return net::kCtrlOk;
}

// One `struct virtio_net_ctrl_mac { le32 entries; u8 macs[entries][6]; }` from the front of
// `data`. `room`: entries that may still be stored; more set `overflow` and store none.
bool TakeMacTable(std::span<const uint8_t>* data, size_t room, std::vector<MacAddress>* out,
                  bool* overflow) {
  if (data->size() < 4) return false;
  uint32_t entries;
  std::memcpy(&entries, data->data(), 4);  // little-endian host (x86_64)
  uint64_t bytes = uint64_t{entries} * kMacBytes;
  if (bytes > data->size() - 4) return false;
  *overflow = entries > room;
  out->clear();
  for (uint32_t i = 0; !*overflow && i < entries; ++i) {
    MacAddress mac;
    std::memcpy(mac.data(), data->data() + 4 + i * kMacBytes, kMacBytes);
    out->push_back(mac);
  }
  *data = data->subspan(4 + bytes);
  return true;
}

uint8_t ApplyMac(uint8_t cmd, std::span<const uint8_t> data, const NetCtrlLimits& limits,
                 NetCtrlState* s) {
  if (cmd == net::kCtrlMacAddrSet) {
    if (!Has(limits.features, net::kFeatureCtrlMacAddr) || data.size() != kMacBytes) {
      return net::kCtrlErr;
    }
    MacAddress mac;
    std::memcpy(mac.data(), data.data(), kMacBytes);
    bool zero = std::all_of(mac.begin(), mac.end(), [](uint8_t b) { return b == 0; });
    if ((mac[0] & 1) != 0 || zero) return net::kCtrlErr;
    if (limits.pinned_mac != nullptr && mac != *limits.pinned_mac) return net::kCtrlErr;
    s->mac = mac;
    return net::kCtrlOk;
  }
  if (cmd != net::kCtrlMacTableSet || !Has(limits.features, net::kFeatureCtrlRx)) {
    return net::kCtrlErr;
  }
  // 5.1.6.5.2: the unicast table, then the multicast one; nothing after them.
  RxFilter next = s->filter;
  if (!TakeMacTable(&data, kMacTableEntries, &next.uni, &next.uni_overflow)) return net::kCtrlErr;
  if (!TakeMacTable(&data, kMacTableEntries - next.uni.size(), &next.multi, &next.multi_overflow) ||
      !data.empty()) {
    return net::kCtrlErr;
  }
  s->filter = std::move(next);
  return net::kCtrlOk;
}

}  // namespace

uint8_t ApplyNetCtrl(std::span<const uint8_t> request, const NetCtrlLimits& limits,
                     NetCtrlState* state) {
  if (request.size() < 2) return net::kCtrlErr;
  uint8_t cls = request[0];
  uint8_t cmd = request[1];
  std::span<const uint8_t> data = request.subspan(2);
  switch (cls) {
    case net::kCtrlRx:
      return ApplyRx(cmd, data, limits.features, &state->filter);
    case net::kCtrlMac:
      return ApplyMac(cmd, data, limits, state);
    case net::kCtrlAnnounce:
      // 5.1.6.5.3: the driver acknowledges the announcement it made; none pending: an error.
      if (!Has(limits.features, net::kFeatureGuestAnnounce) || cmd != net::kCtrlAnnounceAck ||
          !data.empty() || (state->status & net::kStatusAnnounce) == 0) {
        return net::kCtrlErr;
      }
      state->status &= static_cast<uint16_t>(~net::kStatusAnnounce);
      return net::kCtrlOk;
    case net::kCtrlMq: {
      if (!Has(limits.features, net::kFeatureMq) || cmd != net::kCtrlMqVqPairsSet ||
          data.size() != 2) {
        return net::kCtrlErr;
      }
      uint16_t pairs = static_cast<uint16_t>(data[0] | data[1] << 8);
      if (pairs < net::kMqPairsMin || pairs > limits.max_pairs) return net::kCtrlErr;
      state->pairs = pairs;
      return net::kCtrlOk;
    }
  }
  return net::kCtrlErr;
}

bool RxFilterAccepts(const RxFilter& f, const MacAddress& mac, std::span<const uint8_t> frame) {
  if (f.promisc) return true;
  if (frame.size() < kMacBytes) return false;
  auto matches = [&](const MacAddress& entry) {
    return std::memcmp(entry.data(), frame.data(), kMacBytes) == 0;
  };
  if ((frame[0] & 1) != 0) {  // group address
    bool broadcast =
        std::all_of(frame.begin(), frame.begin() + kMacBytes, [](uint8_t b) { return b == 0xff; });
    if (broadcast) return !f.nobcast;
    if (f.nomulti) return false;
    if (f.allmulti || f.multi_overflow) return true;
    return std::any_of(f.multi.begin(), f.multi.end(), matches);
  }
  if (f.nouni) return false;
  if (f.alluni || f.uni_overflow || matches(mac)) return true;
  return std::any_of(f.uni.begin(), f.uni.end(), matches);
}

bool SourceMacSpoofed(const MacAddress& mac, std::span<const uint8_t> ethernet_header) {
  if (ethernet_header.size() < 2 * kMacBytes) return true;
  return std::memcmp(ethernet_header.data() + kMacBytes, mac.data(), kMacBytes) != 0;
}

}  // namespace kite::virtio
