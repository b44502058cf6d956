// KVM vCPU/VM state <-> JSON. See kvm_state_json.h.
#include "vmm/snapshot/kvm_state_json.h"

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>

#include "vmm/snapshot/base64.h"

namespace kite::snapshot {
namespace {

using json = nlohmann::json;

constexpr size_t kMinXsaveBytes = 4096;
constexpr size_t kMaxXsaveBytes = 1 << 20;

template <typename T>
std::string StructToBase64(const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  return Base64Encode({reinterpret_cast<const uint8_t*>(&value), sizeof(T)});
}

// A non-negative integer (parsed text gives unsigned numbers, code-built JSON may hold signed).
std::optional<uint64_t> AsUnsigned(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

// Checks that `v` is an object whose members are exactly `names`.
Result<void> CheckMembers(const json& v, const std::string& where,
                          std::initializer_list<const char*> names) {
  if (!v.is_object()) return Err(where + ": expected an object");
  for (const char* name : names) {
    if (!v.contains(name)) return Err(where + "." + name + ": missing");
  }
  for (auto it = v.begin(); it != v.end(); ++it) {
    bool known = false;
    for (const char* name : names) known = known || it.key() == name;
    if (!known) return Err(where + ": unknown member '" + it.key() + "'");
  }
  return {};
}

Result<uint64_t> UnsignedMember(const json& v, const std::string& where, const char* name,
                                uint64_t max) {
  const json& m = *v.find(name);  // present: CheckMembers ran first
  std::optional<uint64_t> number = AsUnsigned(m);
  if (!number) return Err(where + "." + name + ": expected an unsigned integer");
  uint64_t value = *number;
  if (value > max) {
    return Err(where + "." + name + ": " + std::to_string(value) + " is above " +
               std::to_string(max));
  }
  return value;
}

// A base64 member of `min`..`max` bytes.
Result<std::vector<uint8_t>> BytesMember(const json& v, const std::string& where, const char* name,
                                         size_t min, size_t max) {
  const json& m = *v.find(name);
  std::string field = where + "." + name;
  if (!m.is_string()) return Err(field + ": expected a base64 string");
  std::vector<uint8_t> bytes = TRY_CTX(Base64Decode(m.get_ref<const std::string&>()), field);
  if (bytes.size() < min || bytes.size() > max) {
    std::string expected =
        min == max ? std::to_string(min) : std::to_string(min) + " to " + std::to_string(max);
    return Err(field + ": expected " + expected + " bytes, got " + std::to_string(bytes.size()));
  }
  return bytes;
}

template <typename T>
Result<T> StructMember(const json& v, const std::string& where, const char* name) {
  static_assert(std::is_trivially_copyable_v<T>);
  std::vector<uint8_t> bytes = TRY(BytesMember(v, where, name, sizeof(T), sizeof(T)));
  T value;
  std::memcpy(&value, bytes.data(), sizeof(T));
  return value;
}

Result<std::vector<kvm_cpuid_entry2>> CpuidMember(const json& v, const std::string& where) {
  constexpr size_t kEntry = sizeof(kvm_cpuid_entry2);
  std::vector<uint8_t> bytes =
      TRY(BytesMember(v, where, "cpuid", kEntry, kEntry * kMaxSavedCpuidEntries));
  if (bytes.size() % kEntry != 0) {
    return Err(where + ".cpuid: " + std::to_string(bytes.size()) +
               " bytes is not a whole number of " + std::to_string(kEntry) + "-byte entries");
  }
  std::vector<kvm_cpuid_entry2> entries(bytes.size() / kEntry);
  std::memcpy(entries.data(), bytes.data(), bytes.size());
  return entries;
}

Result<std::vector<kvm_msr_entry>> MsrsMember(const json& v, const std::string& where) {
  const json& m = *v.find("msrs");
  if (!m.is_array() || m.size() > kMaxSavedMsrs) {
    return Err(where + ".msrs: expected an array of at most " + std::to_string(kMaxSavedMsrs) +
               " [index, value] pairs");
  }
  std::vector<kvm_msr_entry> msrs;
  for (size_t i = 0; i < m.size(); ++i) {
    const json& pair = m[i];
    std::string at = where + ".msrs[" + std::to_string(i) + "]";
    std::optional<uint64_t> index, value;
    if (pair.is_array() && pair.size() == 2) {
      index = AsUnsigned(pair[0]);
      value = AsUnsigned(pair[1]);
    }
    if (!index || !value) return Err(at + ": expected [index, value] with unsigned integers");
    if (*index > std::numeric_limits<uint32_t>::max()) {
      return Err(at + ": MSR index " + std::to_string(*index) + " is above 0xffffffff");
    }
    kvm_msr_entry e{};
    e.index = static_cast<uint32_t>(*index);
    e.data = *value;
    msrs.push_back(e);
  }
  return msrs;
}

}  // namespace

json ToJson(const VcpuState& s) {
  json msrs = json::array();
  for (const kvm_msr_entry& e : s.msrs) msrs.push_back(json::array({e.index, e.data}));
  const auto* cpuid = reinterpret_cast<const uint8_t*>(s.cpuid.data());
  return json{
      {"mp_state", s.mp_state.mp_state},
      {"regs", StructToBase64(s.regs)},
      {"sregs", StructToBase64(s.sregs)},
      {"xsave", Base64Encode(s.xsave)},
      {"xcrs", StructToBase64(s.xcrs)},
      {"debugregs", StructToBase64(s.debugregs)},
      {"lapic", StructToBase64(s.lapic)},
      {"tsc_khz", s.tsc_khz},
      {"cpuid", Base64Encode({cpuid, s.cpuid.size() * sizeof(kvm_cpuid_entry2)})},
      {"msrs", std::move(msrs)},
      {"events", StructToBase64(s.events)},
  };
}

Result<VcpuState> VcpuStateFromJson(const json& v, std::string_view where_view) {
  std::string where(where_view);
  TRY(CheckMembers(v, where,
                   {"mp_state", "regs", "sregs", "xsave", "xcrs", "debugregs", "lapic", "tsc_khz",
                    "cpuid", "msrs", "events"}));
  constexpr uint64_t kU32Max = std::numeric_limits<uint32_t>::max();
  VcpuState s;
  s.mp_state.mp_state = static_cast<uint32_t>(TRY(UnsignedMember(v, where, "mp_state", kU32Max)));
  s.regs = TRY(StructMember<kvm_regs>(v, where, "regs"));
  s.sregs = TRY(StructMember<kvm_sregs>(v, where, "sregs"));
  s.xsave = TRY(BytesMember(v, where, "xsave", kMinXsaveBytes, kMaxXsaveBytes));
  s.xcrs = TRY(StructMember<kvm_xcrs>(v, where, "xcrs"));
  s.debugregs = TRY(StructMember<kvm_debugregs>(v, where, "debugregs"));
  s.lapic = TRY(StructMember<kvm_lapic_state>(v, where, "lapic"));
  s.tsc_khz = static_cast<uint32_t>(TRY(UnsignedMember(v, where, "tsc_khz", kU32Max)));
  s.cpuid = TRY(CpuidMember(v, where));
  s.msrs = TRY(MsrsMember(v, where));
  s.events = TRY(StructMember<kvm_vcpu_events>(v, where, "events"));
  return s;
}

json ToJson(const VmState& s) {
  return json{
      {"pit", StructToBase64(s.pit)},
      {"clock", StructToBase64(s.clock)},
      {"pic_master", StructToBase64(s.pic_master)},
      {"pic_slave", StructToBase64(s.pic_slave)},
      {"ioapic", StructToBase64(s.ioapic)},
  };
}

Result<VmState> VmStateFromJson(const json& v, std::string_view where_view) {
  std::string where(where_view);
  TRY(CheckMembers(v, where, {"pit", "clock", "pic_master", "pic_slave", "ioapic"}));
  VmState s;
  s.pit = TRY(StructMember<kvm_pit_state2>(v, where, "pit"));
  s.clock = TRY(StructMember<kvm_clock_data>(v, where, "clock"));
  s.pic_master = TRY(StructMember<kvm_irqchip>(v, where, "pic_master"));
  s.pic_slave = TRY(StructMember<kvm_irqchip>(v, where, "pic_slave"));
  s.ioapic = TRY(StructMember<kvm_irqchip>(v, where, "ioapic"));
  TRY_CTX(ValidateVmState(s), where);
  return s;
}

}  // namespace kite::snapshot
