// Requests a device makes of the VM as a whole: power off (ACPI sleep, S5), reset (i8042 pulse,
// ACPI reset register, triple fault). The VMM decides what each means (exit, or restart when
// configured); the device only reports it. Called on a vCPU thread.
#pragma once

#include <functional>

namespace kite {

enum class VmRequest { kPowerOff, kReset };

using VmRequestFn = std::function<void(VmRequest)>;

}  // namespace kite
