// libFuzzer target: snapshot state files (BAD_INPUTS.md F12, F13). The input goes through the
// container checks as a whole file, then sealed with a valid header and CRC so that its bytes
// reach the JSON parser and the loaders behind it: the memory layout, the legacy devices, the
// vCPU and VM state (KVM registers, MSRs, LAPIC, irqchip, clock) and the virtio transports
// (mmio and pci, with their queues and device bytes).
// Nothing here may crash, hang or allocate without bound; every refusal is an Error.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "vmm/snapshot/crc64.h"
#include "vmm/snapshot/device_state_json.h"
#include "vmm/snapshot/kvm_state_json.h"
#include "vmm/snapshot/memory_file.h"
#include "vmm/snapshot/pci_state_json.h"
#include "vmm/snapshot/snapshot_file.h"
#include "vmm/snapshot/virtio_state_json.h"

using namespace kite::snapshot;
using json = nlohmann::json;

namespace {

void PutLe(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
}

// `body` inside a current-version header with a correct CRC.
std::string Seal(std::span<const uint8_t> body) {
  std::string out(kStateMagic, sizeof(kStateMagic));
  PutLe(out, kFormatMajor, 2);
  PutLe(out, kFormatMinor, 2);
  PutLe(out, body.size(), 8);
  out.append(reinterpret_cast<const char*>(body.data()), body.size());
  PutLe(out, Crc64({reinterpret_cast<const uint8_t*>(out.data()), out.size()}), 8);
  return out;
}

void LoadEverything(const json& value, const std::string& where) {
  (void)MemoryLayoutFromJson(value);
  (void)UartStateFromJson(value, where);
  (void)UartStateFromJson(value, where, /*rx_capacity=*/16);
  (void)I8042StateFromJson(value, where);
  (void)RtcStateFromJson(value, where);
  (void)GedStateFromJson(value, where);
  (void)VcpuStateFromJson(value, where);
  (void)VmStateFromJson(value, where);
  (void)TransportStateFromJson(value, where);
  (void)PciTransportStateFromJson(value, where);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 20)) return 0;
  std::span<const uint8_t> input(data, size);
  (void)DecodeStateFile(input, "fuzz/state");

  std::string sealed = Seal(input);
  auto body = DecodeStateFile({reinterpret_cast<const uint8_t*>(sealed.data()), sealed.size()},
                              "fuzz/state");
  if (!body) return 0;
  LoadEverything(*body, "body");
  for (const char* member : {"memory", "vm"}) {
    if (auto it = body->find(member); it != body->end()) LoadEverything(*it, member);
  }
  for (const char* group : {"devices", "vcpus"}) {  // objects or arrays of states
    auto members = body->find(group);
    if (members == body->end() || !members->is_structured()) continue;
    for (auto it = members->begin(); it != members->end(); ++it) {
      LoadEverything(it.value(), group);
    }
  }
  return 0;
}
