// JSON conversion of the legacy devices' State structs. See device_state_json.h.
#include "vmm/snapshot/device_state_json.h"

#include <initializer_list>
#include <nlohmann/json.hpp>

#include "base/units.h"

namespace kite::snapshot {
namespace {

using json = nlohmann::json;

// Register bits the devices can hold (their SetState masks the rest; a snapshot holding
// other bits is corrupt, not something to mask quietly).
constexpr uint64_t kUartIerBits = 0x0f;       // uart_16550.cc kIerMask
constexpr uint64_t kUartMcrBits = 0x1f;       // kMcrMask
constexpr uint64_t kUartLsrErrorBits = 0x1e;  // OE, PE, FE, BI
constexpr size_t kI8042OutputLimit = 16;      // i8042.cc kOutputLimit
constexpr uint64_t kRtcIndexBits = 0x7f;      // rtc_cmos.cc kIndexMask (bit 7: NMI disable)
constexpr uint64_t kRtcRegABits = 0x7f;       // UIP (bit 7) is never stored
constexpr uint64_t kGedEventBits = kGedEventPowerButton | kGedEventSlots | kGedEventVmGenId;

// A non-negative integer (JSON text parses as unsigned; values built in code may be signed).
bool IsNonNegativeInteger(const json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

// Typed access to one JSON object's members; errors are "<where>.<key>: expected ...".
class Members {
 public:
  Members(const json& value, const std::string& where) : value_(value), where_(where) {}

  // The value is an object holding exactly `keys`.
  Result<void> Expect(std::initializer_list<const char*> keys) const {
    if (!value_.is_object()) return Err(where_ + ": expected an object");
    for (auto it = value_.begin(); it != value_.end(); ++it) {
      bool known = false;
      for (const char* k : keys) known |= it.key() == k;
      if (!known) return Err(where_ + ": unknown member '" + it.key() + "'");
    }
    for (const char* k : keys) {
      if (!value_.contains(k)) return Err(where_ + "." + k + ": missing");
    }
    return {};
  }

  // An integer whose set bits all lie in `bits` (a mask of the form 2^n - 1 reads as a range).
  Result<uint64_t> Bits(const char* key, uint64_t bits) const {
    const json& v = value_[key];
    bool range = (bits & (bits + 1)) == 0;
    if (!IsNonNegativeInteger(v) || (v.get<uint64_t>() & ~bits) != 0) {
      return Err(where_ + "." + key + ": expected an integer " +
                 (range ? "0.." + std::to_string(bits) : "with only bits 0x" + ToHex(bits)));
    }
    return v.get<uint64_t>();
  }
  Result<uint8_t> Byte(const char* key) const { return static_cast<uint8_t>(TRY(Bits(key, 0xff))); }
  Result<bool> Bool(const char* key) const {
    const json& v = value_[key];
    if (!v.is_boolean()) return Err(where_ + "." + key + ": expected true or false");
    return v.get<bool>();
  }
  Result<std::vector<uint8_t>> Bytes(const char* key, size_t max_len) const {
    const json& v = value_[key];
    std::string what = where_ + "." + key;
    if (!v.is_array() || v.size() > max_len) {
      return Err(what + ": expected an array of at most " + std::to_string(max_len) + " bytes");
    }
    std::vector<uint8_t> out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!IsNonNegativeInteger(v[i]) || v[i].get<uint64_t>() > 0xff) {
        return Err(what + "[" + std::to_string(i) + "]: expected an integer 0..255");
      }
      out.push_back(static_cast<uint8_t>(v[i].get<uint64_t>()));
    }
    return out;
  }

 private:
  const json& value_;
  const std::string& where_;
};

}  // namespace

json UartStateToJson(const Uart16550::State& s) {
  return {{"ier", s.ier},
          {"lcr", s.lcr},
          {"mcr", s.mcr},
          {"msr", s.msr},
          {"scr", s.scr},
          {"dll", s.dll},
          {"dlm", s.dlm},
          {"lsr_errors", s.lsr_errors},
          {"fifo_enabled", s.fifo_enabled},
          {"thr_interrupt", s.thr_interrupt},
          {"rx_fifo", s.rx_fifo}};
}

Result<Uart16550::State> UartStateFromJson(const json& value, const std::string& where,
                                           size_t rx_capacity) {
  Members m(value, where);
  TRY(m.Expect({"ier", "lcr", "mcr", "msr", "scr", "dll", "dlm", "lsr_errors", "fifo_enabled",
                "thr_interrupt", "rx_fifo"}));
  Uart16550::State s;
  s.ier = static_cast<uint8_t>(TRY(m.Bits("ier", kUartIerBits)));
  s.lcr = TRY(m.Byte("lcr"));
  s.mcr = static_cast<uint8_t>(TRY(m.Bits("mcr", kUartMcrBits)));
  s.msr = TRY(m.Byte("msr"));
  s.scr = TRY(m.Byte("scr"));
  s.dll = TRY(m.Byte("dll"));
  s.dlm = TRY(m.Byte("dlm"));
  s.lsr_errors = static_cast<uint8_t>(TRY(m.Bits("lsr_errors", kUartLsrErrorBits)));
  s.fifo_enabled = TRY(m.Bool("fifo_enabled"));
  s.thr_interrupt = TRY(m.Bool("thr_interrupt"));
  // With FIFOs disabled (16450 mode) the receiver holds one byte.
  s.rx_fifo = TRY(m.Bytes("rx_fifo", s.fifo_enabled ? rx_capacity : 1));
  return s;
}

json I8042StateToJson(const I8042::State& s) {
  return {{"command_byte", s.command_byte},
          {"output_port", s.output_port},
          {"pending_command", s.pending_command},
          {"output", s.output}};
}

Result<I8042::State> I8042StateFromJson(const json& value, const std::string& where) {
  Members m(value, where);
  TRY(m.Expect({"command_byte", "output_port", "pending_command", "output"}));
  I8042::State s;
  s.command_byte = TRY(m.Byte("command_byte"));
  s.output_port = TRY(m.Byte("output_port"));
  s.pending_command = TRY(m.Byte("pending_command"));
  // Only "write command byte" (0x60) and "write output port" (0xd1) wait for a data byte.
  if (s.pending_command != 0 && s.pending_command != 0x60 && s.pending_command != 0xd1) {
    return Err(where + ".pending_command: expected 0, 96 (0x60) or 209 (0xd1)");
  }
  s.output = TRY(m.Bytes("output", kI8042OutputLimit));
  return s;
}

json RtcStateToJson(const RtcCmos::State& s) {
  return {{"index", s.index}, {"reg_a", s.reg_a}, {"reg_b", s.reg_b}};
}

Result<RtcCmos::State> RtcStateFromJson(const json& value, const std::string& where) {
  Members m(value, where);
  TRY(m.Expect({"index", "reg_a", "reg_b"}));
  RtcCmos::State s;
  s.index = static_cast<uint8_t>(TRY(m.Bits("index", kRtcIndexBits)));
  s.reg_a = static_cast<uint8_t>(TRY(m.Bits("reg_a", kRtcRegABits)));
  s.reg_b = TRY(m.Byte("reg_b"));
  return s;
}

json GedStateToJson(const AcpiGed::State& s) {
  return {{"pending", s.pending},
          {"slots_present", s.slots_present},
          {"slot_check", s.slot_check},
          {"slot_eject_request", s.slot_eject_request}};
}

Result<AcpiGed::State> GedStateFromJson(const json& value, const std::string& where) {
  Members m(value, where);
  TRY(m.Expect({"pending", "slots_present", "slot_check", "slot_eject_request"}));
  constexpr uint64_t kSlotBits = kGedMaxSlots >= 32 ? 0xffffffffull : (1ull << kGedMaxSlots) - 1;
  AcpiGed::State s;
  s.pending = static_cast<uint32_t>(TRY(m.Bits("pending", kGedEventBits)));
  s.slots_present = static_cast<uint32_t>(TRY(m.Bits("slots_present", kSlotBits)));
  s.slot_check = static_cast<uint32_t>(TRY(m.Bits("slot_check", kSlotBits)));
  s.slot_eject_request = static_cast<uint32_t>(TRY(m.Bits("slot_eject_request", kSlotBits)));
  return s;
}

}  // namespace kite::snapshot
