// Creating the VM's devices and putting them on the buses. See vm_devices.h.
#include "vmm/vm_devices.h"

#include <atomic>
#include <cstdio>

#include "base/log.h"
#include "devices/acpi_ged.h"
#include "devices/acpi_pm.h"
#include "devices/serial_console.h"
#include "vmm/layout.h"
#include "vmm/snapshot/device_state_json.h"

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

// A legacy device's snapshot adapter: its State struct through the JSON of
// snapshot/device_state_json.h, and its one --stats line.
template <typename Device>
class LegacyEntry : public VmDevice {
 public:
  using State = typename Device::State;
  using ToJsonFn = nlohmann::json (*)(const State&);
  using FromJsonFn = std::function<Result<State>(const nlohmann::json&)>;

  LegacyEntry(std::shared_ptr<Device> device, ToJsonFn to_json, FromJsonFn from_json,
              std::function<std::string()> stats_line)
      : device_(std::move(device)),
        to_json_(to_json),
        from_json_(std::move(from_json)),
        stats_line_(std::move(stats_line)) {}
  Result<nlohmann::json> SaveState() const override { return to_json_(device_->GetState()); }
  Result<void> RestoreState(const nlohmann::json& state) override {
    device_->SetState(TRY(from_json_(state)));
    return {};
  }
  std::string StatsLine() const override { return stats_line_ ? stats_line_() : ""; }

 private:
  std::shared_ptr<Device> device_;
  ToJsonFn to_json_;
  FromJsonFn from_json_;
  std::function<std::string()> stats_line_;
};

// A device whose only state is host-side counters (boot marker, ACPI PM): saves {}.
class StatelessEntry : public VmDevice {
 public:
  explicit StatelessEntry(std::function<std::string()> stats_line)
      : stats_line_(std::move(stats_line)) {}
  Result<nlohmann::json> SaveState() const override { return nlohmann::json::object(); }
  Result<void> RestoreState(const nlohmann::json& state) override {
    if (!state.is_object() || !state.empty()) return Err("expected {}");
    return {};
  }
  std::string StatsLine() const override { return stats_line_(); }

 private:
  std::function<std::string()> stats_line_;
};

std::string UartLine(const Uart16550& uart) {
  UartStats s = uart.stats();
  return "COM1: tx " + std::to_string(s.tx_bytes) + " rx " + std::to_string(s.rx_bytes) +
         " dropped tx " + std::to_string(s.dropped_tx) + " dropped rx " +
         std::to_string(s.dropped_rx) + "\n";
}

std::string I8042Line(const I8042& i8042) {
  I8042Stats s = i8042.stats();
  return "i8042: reset requests " + std::to_string(s.reset_requests) + " ignored commands " +
         std::to_string(s.ignored_commands) + " ignored data " + std::to_string(s.ignored_data) +
         "\n";
}

std::string BootMarkerLine(const BootMarker& marker) {
  std::string out = "boot markers: " + std::to_string(marker.total_marks());
  for (const BootMark& mark : marker.marks()) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), " %u@%.3fms", mark.value,
                  std::chrono::duration<double, std::milli>(mark.since_start).count());
    out += buf;
  }
  return out + "\n";
}

DeviceResources Pio(uint64_t base, uint64_t size, std::optional<uint32_t> gsi = std::nullopt) {
  return {DeviceResources::BusKind::kPio, base, size, gsi};
}

Result<void> RegisterLegacy(DeviceRegistry& registry, const VmDevices& d) {
  const LegacyDevices& l = d.legacy;
  TRY(registry.Add(
      {"com1", "uart-16550", Pio(layout::kCom1Port, 8, layout::kCom1Irq),
       std::make_unique<LegacyEntry<Uart16550>>(
           l.com1, snapshot::UartStateToJson,
           [](const nlohmann::json& v) { return snapshot::UartStateFromJson(v, "com1"); },
           [com1 = l.com1] { return UartLine(*com1); })}));
  TRY(registry.Add(
      {"i8042", "i8042", Pio(layout::kI8042DataPort, 5),
       std::make_unique<LegacyEntry<I8042>>(
           l.i8042, snapshot::I8042StateToJson,
           [](const nlohmann::json& v) { return snapshot::I8042StateFromJson(v, "i8042"); },
           [i8042 = l.i8042] { return I8042Line(*i8042); })}));
  TRY(registry.Add(
      {"rtc", "rtc-cmos", Pio(layout::kRtcPort, 2),
       std::make_unique<LegacyEntry<RtcCmos>>(
           l.rtc, snapshot::RtcStateToJson,
           [](const nlohmann::json& v) { return snapshot::RtcStateFromJson(v, "rtc"); },
           nullptr)}));
  TRY(registry.Add({"boot-marker", "boot-marker", Pio(layout::kBootMarkerPort, 1),
                    std::make_unique<StatelessEntry>(
                        [marker = l.boot_marker] { return BootMarkerLine(*marker); })}));
  TRY(registry.Add({"acpi-pm", "acpi-pm", Pio(layout::kAcpiSleepControlPort, kAcpiPmSize),
                    std::make_unique<StatelessEntry>([pm = d.acpi_pm] {
                      return "ACPI PM: ignored writes " +
                             std::to_string(pm->stats().ignored_writes) + "\n";
                    })}));
  if (d.ged) {
    DeviceResources r{DeviceResources::BusKind::kMmio, layout::kGedBase, layout::kGedSize,
                      layout::kGedIrq};
    TRY(registry.Add(
        {"ged", "acpi-ged", r,
         std::make_unique<LegacyEntry<AcpiGed>>(
             d.ged, snapshot::GedStateToJson,
             [](const nlohmann::json& v) { return snapshot::GedStateFromJson(v, "ged"); },
             [ged = d.ged] {
               AcpiGed::Stats s = ged->stats();
               return "ACPI GED: events " + std::to_string(s.events_triggered) +
                      " unknown accesses " + std::to_string(s.unknown_accesses) + "\n";
             })}));
  }
  return {};
}

}  // namespace

bool HasCmosRtc(const DeviceRegistry& registry) {
  for (const auto& e : registry.entries()) {
    if (e->kind == "rtc-cmos" && e->resources.bus == DeviceResources::BusKind::kPio &&
        e->resources.base == layout::kRtcPort) {
      return true;
    }
  }
  return false;
}

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
    devices->ged = std::make_shared<AcpiGed>(std::make_shared<KvmIrqLine>(w.vm, layout::kGedIrq),
                                             w.on_slot_eject);
    TRY_CTX(w.mmio->Register(layout::kGedBase, layout::kGedSize, devices->ged), "ACPI GED");
  }
  TRY(RegisterLegacy(*w.registry, *devices));
  return devices;
}

Result<void> StartDevices(VmDevices& devices) {
  return devices.console->StartInput(devices.legacy.com1.get());
}

void StopDevices(VmDevices& devices) {
  if (devices.console) devices.console->Stop();
}

}  // namespace kite
