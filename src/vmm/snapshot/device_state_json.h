// JSON for the legacy devices' snapshot State structs (src/devices): the 16550 UART, the
// i8042, the CMOS RTC and the ACPI GED. The devices know nothing of JSON; this file does.
//
//   body["devices"]["com1"] = UartStateToJson(uart.GetState());
//   Uart16550::State s = TRY(UartStateFromJson(body["devices"]["com1"], "devices.com1"));
//
// Loading checks every member: present, of the right type, in range (a FIFO no longer than
// its capacity, register bits the device can hold), and no unknown members. Errors name the
// member: "devices.com1.lcr: expected an integer 0..255". Byte queues are arrays of integers.
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "base/result.h"
#include "devices/acpi_ged.h"
#include "devices/i8042.h"
#include "devices/rtc_cmos.h"
#include "devices/uart_16550.h"

namespace kite::snapshot {

nlohmann::json UartStateToJson(const Uart16550::State& state);
// `rx_capacity`: the UART's RX FIFO capacity (its constructor argument); with FIFOs disabled
// it holds one byte.
Result<Uart16550::State> UartStateFromJson(const nlohmann::json& value, const std::string& where,
                                           size_t rx_capacity = Uart16550::kDefaultRxCapacity);

nlohmann::json I8042StateToJson(const I8042::State& state);
Result<I8042::State> I8042StateFromJson(const nlohmann::json& value, const std::string& where);

nlohmann::json RtcStateToJson(const RtcCmos::State& state);
Result<RtcCmos::State> RtcStateFromJson(const nlohmann::json& value, const std::string& where);

nlohmann::json GedStateToJson(const AcpiGed::State& state);
Result<AcpiGed::State> GedStateFromJson(const nlohmann::json& value, const std::string& where);

}  // namespace kite::snapshot
