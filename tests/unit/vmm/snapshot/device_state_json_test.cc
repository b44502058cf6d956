// Legacy device State JSON: round trips, and a catalogue of malformed members.
#include "vmm/snapshot/device_state_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kite::snapshot {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

Uart16550::State SomeUart() {
  Uart16550::State s;
  s.ier = 0x0f;
  s.lcr = 0x83;
  s.mcr = 0x1b;
  s.msr = 0xb0;
  s.scr = 0x5a;
  s.dll = 1;
  s.dlm = 2;
  s.lsr_errors = 0x02;
  s.fifo_enabled = true;
  s.thr_interrupt = true;
  s.rx_fifo = {'h', 'i', 0, 255};
  return s;
}

TEST(DeviceStateJsonTest, Uart_RoundTrips) {
  Uart16550::State s = SomeUart();
  auto back = UartStateFromJson(UartStateToJson(s), "devices.com1");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->ier, s.ier);
  EXPECT_EQ(back->lcr, s.lcr);
  EXPECT_EQ(back->mcr, s.mcr);
  EXPECT_EQ(back->msr, s.msr);
  EXPECT_EQ(back->scr, s.scr);
  EXPECT_EQ(back->dll, s.dll);
  EXPECT_EQ(back->dlm, s.dlm);
  EXPECT_EQ(back->lsr_errors, s.lsr_errors);
  EXPECT_EQ(back->fifo_enabled, s.fifo_enabled);
  EXPECT_EQ(back->thr_interrupt, s.thr_interrupt);
  EXPECT_EQ(back->rx_fifo, s.rx_fifo);
}

TEST(DeviceStateJsonTest, I8042_RoundTrips) {
  I8042::State s{0x47, 0xcd, 0xd1, {0xfa, 0xaa}};
  auto back = I8042StateFromJson(I8042StateToJson(s), "devices.i8042");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->command_byte, s.command_byte);
  EXPECT_EQ(back->output_port, s.output_port);
  EXPECT_EQ(back->pending_command, s.pending_command);
  EXPECT_EQ(back->output, s.output);
}

TEST(DeviceStateJsonTest, Rtc_RoundTrips) {
  RtcCmos::State s{0x32, 0x26, 0x06};
  auto back = RtcStateFromJson(RtcStateToJson(s), "devices.rtc");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->index, s.index);
  EXPECT_EQ(back->reg_a, s.reg_a);
  EXPECT_EQ(back->reg_b, s.reg_b);
}

TEST(DeviceStateJsonTest, Ged_RoundTrips) {
  AcpiGed::State s{kGedEventPowerButton | kGedEventSlots, 0x80000001u, 0x3, 0x80000000u};
  auto back = GedStateFromJson(GedStateToJson(s), "devices.ged");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->pending, s.pending);
  EXPECT_EQ(back->slots_present, s.slots_present);
  EXPECT_EQ(back->slot_check, s.slot_check);
  EXPECT_EQ(back->slot_eject_request, s.slot_eject_request);
}

struct Malformed {
  const char* member;  // what to change; "" = replace the whole value
  json value;
  const char* message;
};

template <typename Load>
void ExpectRefused(const json& good, const Malformed& m, Load load) {
  json j = good;
  if (std::string(m.member).empty()) {
    j = m.value;
  } else if (m.value.is_discarded()) {
    j.erase(m.member);
  } else {
    j[m.member] = m.value;
  }
  auto r = load(j);
  ASSERT_FALSE(r) << j.dump();
  EXPECT_THAT(r.error().message(), HasSubstr(m.message)) << j.dump();
}

const json kMissing = json(json::value_t::discarded);

TEST(DeviceStateJsonTest, Uart_Malformed_Refused) {
  json good = UartStateToJson(SomeUart());
  std::vector<uint8_t> big(Uart16550::kDefaultRxCapacity + 1, 'a');
  const Malformed cases[] = {
      {"", json::array(), "devices.com1: expected an object"},
      {"lcr", 256, "devices.com1.lcr: expected an integer 0..255"},
      {"lcr", -1, "devices.com1.lcr: expected an integer 0..255"},
      {"lcr", "3", "devices.com1.lcr"},
      {"lcr", 3.5, "devices.com1.lcr"},
      {"lcr", kMissing, "devices.com1.lcr: missing"},
      {"ier", 0x10, "devices.com1.ier: expected an integer 0..15"},
      {"mcr", 0x20, "devices.com1.mcr: expected an integer 0..31"},
      {"lsr_errors", 0x01, "devices.com1.lsr_errors: expected an integer with only bits 0x1e"},
      {"fifo_enabled", 1, "devices.com1.fifo_enabled: expected true or false"},
      {"rx_fifo", big, "devices.com1.rx_fifo: expected an array of at most 1024 bytes"},
      {"rx_fifo", "hi", "devices.com1.rx_fifo"},
      {"rx_fifo", {1, 256}, "devices.com1.rx_fifo[1]: expected an integer 0..255"},
      {"extra", 1, "devices.com1: unknown member 'extra'"},
  };
  for (const Malformed& m : cases) {
    ExpectRefused(good, m, [](const json& j) { return UartStateFromJson(j, "devices.com1"); });
  }
}

TEST(DeviceStateJsonTest, Uart_FifoDisabled_HoldsOneByte) {
  Uart16550::State s = SomeUart();
  s.fifo_enabled = false;
  s.rx_fifo = {1, 2};
  EXPECT_FALSE(UartStateFromJson(UartStateToJson(s), "com1"));
  s.rx_fifo = {1};
  EXPECT_TRUE(UartStateFromJson(UartStateToJson(s), "com1"));
  s.fifo_enabled = true;
  s.rx_fifo = {1, 2, 3};
  EXPECT_FALSE(UartStateFromJson(UartStateToJson(s), "com1", /*rx_capacity=*/2));
}

TEST(DeviceStateJsonTest, I8042_Malformed_Refused) {
  json good = I8042StateToJson({});
  const Malformed cases[] = {
      {"command_byte", 300, "devices.i8042.command_byte: expected an integer 0..255"},
      {"pending_command", 0x20, "devices.i8042.pending_command: expected 0, 96"},
      {"output", std::vector<int>(17, 0), "devices.i8042.output: expected an array of at most 16"},
      {"output_port", kMissing, "devices.i8042.output_port: missing"},
      {"", nullptr, "devices.i8042: expected an object"},
  };
  for (const Malformed& m : cases) {
    ExpectRefused(good, m, [](const json& j) { return I8042StateFromJson(j, "devices.i8042"); });
  }
}

TEST(DeviceStateJsonTest, Rtc_Malformed_Refused) {
  json good = RtcStateToJson({});
  const Malformed cases[] = {
      {"index", 0x80, "devices.rtc.index: expected an integer 0..127"},
      {"reg_a", 0xa6, "devices.rtc.reg_a: expected an integer 0..127"},
      {"reg_b", true, "devices.rtc.reg_b: expected an integer 0..255"},
      {"reg_c", 0, "devices.rtc: unknown member 'reg_c'"},
  };
  for (const Malformed& m : cases) {
    ExpectRefused(good, m, [](const json& j) { return RtcStateFromJson(j, "devices.rtc"); });
  }
}

TEST(DeviceStateJsonTest, Ged_Malformed_Refused) {
  json good = GedStateToJson({});
  const Malformed cases[] = {
      {"pending", 8, "devices.ged.pending: expected an integer 0..7"},
      {"slots_present", 1ull << 32, "devices.ged.slots_present: expected an integer 0..4294967295"},
      {"slot_check", -1, "devices.ged.slot_check"},
      {"slot_eject_request", kMissing, "devices.ged.slot_eject_request: missing"},
  };
  for (const Malformed& m : cases) {
    ExpectRefused(good, m, [](const json& j) { return GedStateFromJson(j, "devices.ged"); });
  }
}

}  // namespace
}  // namespace kite::snapshot
