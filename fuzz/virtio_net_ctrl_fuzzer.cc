// libFuzzer target for virtio-net's control commands and receive filter (src/virtio/
// net_ctrl.cc): a negotiated feature set, a pair count and MAC pinning from the first bytes,
// then control requests (each length-prefixed) applied in turn to one state, then frames'
// destination MACs through the filter that state set. Checks beyond the sanitizers: a request
// answered VIRTIO_NET_ERR leaves the state unchanged; the MAC tables never hold more than
// QEMU's 64 entries; the pair count stays within 1..max; a pinned MAC is never replaced.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "virtio/net_ctrl.h"
#include "virtio/net_header.h"
#include "virtio/virtio_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kite::virtio;
  FuzzedDataProvider in(data, size);
  const MacAddress own{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  NetCtrlLimits limits;
  limits.features =
      in.ConsumeIntegral<uint64_t>() & (kNetCtrlFeatures | FeatureBit(net::kFeatureMq));
  limits.max_pairs = in.ConsumeIntegralInRange<uint16_t>(1, 16);
  limits.pinned_mac = in.ConsumeBool() ? &own : nullptr;
  NetCtrlState state;
  state.mac = own;
  state.status = in.ConsumeIntegralInRange<uint16_t>(0, 3);
  for (int i = 0; i < 16 && in.remaining_bytes() > 0; ++i) {
    std::vector<uint8_t> request =
        in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 1024));
    NetCtrlState before = state;
    uint8_t ack = ApplyNetCtrl(request, limits, &state);
    if (ack != net::kCtrlOk && ack != net::kCtrlErr) std::abort();
    if (ack == net::kCtrlErr && !(state == before)) std::abort();
    if (state.filter.uni.size() + state.filter.multi.size() > kMacTableEntries) std::abort();
    if (state.pairs < 1 || state.pairs > limits.max_pairs) std::abort();
    if (limits.pinned_mac != nullptr && state.mac != own) std::abort();
  }
  while (in.remaining_bytes() > 0) {
    std::vector<uint8_t> frame = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 8));
    (void)RxFilterAccepts(state.filter, state.mac, frame);
    (void)SourceMacSpoofed(own, frame);
  }
  return 0;
}
