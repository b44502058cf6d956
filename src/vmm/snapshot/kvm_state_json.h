// JSON form of the KVM vCPU and VM state (vmm/kvm_state.h) in a snapshot's state file:
//
//   {"mp_state": 0, "tsc_khz": 2995200, "regs": "<base64>", "sregs": "<base64>", ...,
//    "cpuid": "<base64 of kvm_cpuid_entry2[]>", "msrs": [[16, 123456], [27, 4276094976], ...]}
//   {"pit": "<base64>", "clock": "<base64>", "pic_master": ..., "pic_slave": ..., "ioapic": ...}
//
// KVM structs are base64 strings of their raw bytes (this host's struct layout: a snapshot
// moves between hosts of one architecture and KVM ABI). Loading checks every member: a wrong
// type, a missing or unknown member, a wrong size is an error naming it, prefixed with `where`
// ("vcpus[1].lapic: expected 1024 bytes, got 12"). Sizes that depend on the host (the XSAVE
// area) and values KVM would refuse are checked by ValidateVcpuState() before restore.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string_view>

#include "base/result.h"
#include "vmm/kvm_state.h"

namespace kite::snapshot {

nlohmann::json ToJson(const VcpuState& state);
Result<VcpuState> VcpuStateFromJson(const nlohmann::json& value, std::string_view where = "vcpu");

nlohmann::json ToJson(const VmState& state);
Result<VmState> VmStateFromJson(const nlohmann::json& value, std::string_view where = "vm");

}  // namespace kite::snapshot
