// Creating the VM's devices and putting them on the buses. See vm_devices.h.
#include "vmm/vm_devices.h"

#include <atomic>
#include <cstdio>

#include "base/log.h"
#include "devices/acpi_ged.h"
#include "devices/acpi_pm.h"
#include "devices/serial_console.h"
#include "vmm/layout.h"

namespace kite {
namespace {

// Boot marks echoed on stderr (all of them are in --stats, up to BootMarker::kMaxMarkers).
constexpr int kPrintedBootMarks = 16;

}  // namespace

void KvmIrqLine::SetLevel(bool asserted) {
  if (auto r = vm_->SetIrqLine(gsi_, asserted); !r) {
    KITE_LOG_RATELIMITED(Warn, "IRQ %u: %s", gsi_, r.error().message().c_str());
  }
}

VmDevices::~VmDevices() {
  StopDevices(*this);
}

namespace {

SerialConfig ToSerialConfig(const VmConfig& config) {
  SerialConfig serial;
  switch (config.serial) {
    case SerialMode::kStdio:
      serial.backend = SerialBackend::kStdio;
      break;
    case SerialMode::kFile:
      serial.backend = SerialBackend::kFile;
      serial.path = config.serial_path;
      break;
    case SerialMode::kNone:
      serial.backend = SerialBackend::kNone;
      break;
  }
  return serial;
}

}  // namespace

Result<std::unique_ptr<VmDevices>> CreateDevices(const DeviceWiring& w) {
  auto devices = std::make_unique<VmDevices>();

  SerialConsoleParams console;
  console.config = ToSerialConfig(*w.config);
  console.on_quit = w.on_user_quit;
  devices->console = TRY_CTX(SerialConsole::Create(std::move(console)), "serial console");
  devices->com1_irq = std::make_shared<KvmIrqLine>(w.vm, layout::kCom1Irq);
  LegacyDeviceParams legacy;
  legacy.serial_sink = devices->console->sink();
  legacy.com1_irq = devices->com1_irq.get();
  legacy.request = w.on_request;
  legacy.start = w.start;
  legacy.on_boot_marker = [printed = std::make_shared<std::atomic<int>>(0)](const BootMark& mark) {
    if (printed->fetch_add(1) < kPrintedBootMarks) {
      std::fprintf(stderr, "kite: guest boot marker %u at %.3f ms\n", mark.value,
                   std::chrono::duration<double, std::milli>(mark.since_start).count());
    }
  };
  devices->legacy = TRY(RegisterLegacyDevices(*w.pio, std::move(legacy)));

  devices->acpi_pm = std::make_shared<AcpiPm>(w.on_request, layout::kAcpiResetValue);
  TRY_CTX(w.pio->Register(layout::kAcpiSleepControlPort, kAcpiPmSize, devices->acpi_pm),
          "ACPI PM registers");

  if (w.config->acpi) {
    devices->ged = std::make_shared<AcpiGed>(std::make_shared<KvmIrqLine>(w.vm, layout::kGedIrq));
    TRY_CTX(w.mmio->Register(layout::kGedBase, layout::kGedSize, devices->ged), "ACPI GED");
  }
  return devices;
}

Result<void> StartDevices(VmDevices& devices) {
  return devices.console->StartInput(devices.legacy.com1.get());
}

void StopDevices(VmDevices& devices) {
  if (devices.console) devices.console->Stop();
}

std::string DevicesStatsReport(const VmDevices& d) {
  std::string out;
  if (d.legacy.com1) {
    UartStats s = d.legacy.com1->stats();
    out += "COM1: tx " + std::to_string(s.tx_bytes) + " rx " + std::to_string(s.rx_bytes) +
           " dropped tx " + std::to_string(s.dropped_tx) + " dropped rx " +
           std::to_string(s.dropped_rx) + "\n";
  }
  if (d.legacy.i8042) {
    I8042Stats s = d.legacy.i8042->stats();
    out += "i8042: reset requests " + std::to_string(s.reset_requests) + " ignored commands " +
           std::to_string(s.ignored_commands) + " ignored data " + std::to_string(s.ignored_data) +
           "\n";
  }
  if (d.legacy.boot_marker) {
    out += "boot markers: " + std::to_string(d.legacy.boot_marker->total_marks());
    for (const BootMark& mark : d.legacy.boot_marker->marks()) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), " %u@%.3fms", mark.value,
                    std::chrono::duration<double, std::milli>(mark.since_start).count());
      out += buf;
    }
    out += "\n";
  }
  if (d.acpi_pm) {
    out += "ACPI PM: ignored writes " + std::to_string(d.acpi_pm->stats().ignored_writes) + "\n";
  }
  if (d.ged) {
    AcpiGed::Stats s = d.ged->stats();
    out += "ACPI GED: events " + std::to_string(s.events_triggered) + " unknown accesses " +
           std::to_string(s.unknown_accesses) + "\n";
  }
  return out;
}

}  // namespace kite
