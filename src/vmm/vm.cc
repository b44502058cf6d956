// Vm: building, starting and stopping one VM. See vm.h.
#include "vmm/vm.h"

#include "base/log.h"
#include "base/units.h"
#include "vmm/acpi/acpi_tables.h"
#include "vmm/acpi/mptable.h"
#include "vmm/boot/loader.h"
#include "vmm/cpu_setup.h"
#include "vmm/layout.h"
#include "vmm/vm_devices.h"
#include "vmm/vm_virtio.h"

namespace kite {
namespace {

// Three pages for the TSS KVM needs on Intel, and the EPT identity-map page, just below the
// LAPIC/IOAPIC range in the MMIO hole (not RAM, not used by a device).
constexpr uint64_t kIdentityMapAddr = 0xfeffc000;
constexpr uint64_t kTssAddr = 0xfeffd000;

}  // namespace

Vm::Vm(const VmConfig& config, KvmSystem kvm, VmFd vm, GuestMemory memory)
    : config_(config), kvm_(std::move(kvm)), vm_(std::move(vm)), memory_(std::move(memory)) {}

Vm::~Vm() {
  StopVcpus();
}

Result<std::unique_ptr<Vm>> Vm::Create(const VmConfig& config,
                                       std::chrono::steady_clock::time_point start) {
  TRY(ValidateVmConfig(config));
  KvmSystem kvm = TRY(KvmSystem::Open());
  VmFd vm_fd = TRY(kvm.CreateVm());
  GuestMemory memory = TRY_CTX(GuestMemory::Create(config.memory), "guest memory");
  std::vector<kvm_cpuid_entry2> cpuid = TRY(kvm.GetSupportedCpuid());
  std::unique_ptr<Vm> vm(new Vm(config, std::move(kvm), std::move(vm_fd), std::move(memory)));
  TRY(vm->SetupPlatform(start));
  TRY(vm->CreateVcpus(cpuid));
  return vm;
}

Result<void> Vm::SetupPlatform(std::chrono::steady_clock::time_point start) {
  TRY(vm_.SetTssAddr(kTssAddr));
  TRY(vm_.SetIdentityMapAddr(kIdentityMapAddr));
  TRY(vm_.CreateIrqchip());
  TRY(vm_.CreatePit());
  TRY(vm_.MapMemory(memory_));

  DeviceWiring wiring;
  wiring.vm = &vm_;
  wiring.pio = &pio_bus_;
  wiring.mmio = &mmio_bus_;
  wiring.config = &config_;
  wiring.start = start;
  wiring.on_request = [this](VmRequest request) {
    if (request == VmRequest::kPowerOff) {
      RequestEnd({VmEnd::kPowerOff, "the guest powered off"});
    } else {
      RequestEnd({VmEnd::kReset, "the guest reset"});
    }
  };
  wiring.on_user_quit = [this] { RequestEnd({VmEnd::kStopped, "quit from the console"}); };
  devices_ = TRY(CreateDevices(wiring));
  virtio_ = TRY(VirtioDevices::Create({&config_, &vm_, &mmio_bus_, &memory_, &loop_}));

  uint64_t rsdp = TRY(WritePlatformTables());
  boot::KernelSpec spec;
  spec.kernel_path = config_.kernel;
  spec.initrd_path = config_.initrd;
  spec.cmdline = config_.cmdline;
  // Without ACPI the kernel learns about virtio-mmio devices from its command line only.
  if (!config_.acpi) spec.cmdline += virtio_->KernelCmdline();
  spec.acpi_rsdp = rsdp;
  boot_plan_ = TRY(boot::LoadKernel(memory_, spec));
  KITE_LOG(Info, "kernel: %s, entry 0x%s", boot_plan_.kernel_kind.c_str(),
           ToHex(boot_plan_.entry.value).c_str());
  return {};
}

// ACPI tables, or the MP table with acpi = false: never both, so a kernel sees one description.
Result<uint64_t> Vm::WritePlatformTables() {
  if (!config_.acpi) {
    TRY_CTX(acpi::WriteMpTable(memory_, config_.cpus), "MP table");
    return uint64_t{0};
  }
  acpi::AcpiConfig acpi_config;
  acpi_config.num_cpus = config_.cpus;
  acpi_config.serial_com1 = true;
  acpi_config.virtio_devices = virtio_->AcpiDevices();
  GuestAddr rsdp = TRY_CTX(acpi::WriteAcpiTables(memory_, acpi_config), "ACPI tables");
  return rsdp.value;
}

Result<void> Vm::CreateVcpus(const std::vector<kvm_cpuid_entry2>& supported_cpuid) {
  CpuTemplate cpu_template = TRY(ParseCpuTemplate(config_.cpu_template));
  for (uint32_t i = 0; i < config_.cpus; ++i) {
    VcpuFd fd = TRY(vm_.CreateVcpu(i));
    VcpuSetup setup{supported_cpuid, {i, config_.cpus, cpu_template}};
    TRY_CTX(ConfigureVcpu(fd, setup), "vCPU " + std::to_string(i));
    if (i == 0) {
      kvm_regs regs{};
      kvm_sregs sregs = TRY(fd.GetSregs());
      TRY(boot::SetupBootCpu(memory_, boot_plan_, &regs, &sregs));
      TRY(fd.SetSregs(sregs));
      TRY(fd.SetRegs(regs));
    } else {
      // Application processors wait for INIT-SIPI-SIPI from the in-kernel LAPIC.
      TRY(fd.SetMpState(KVM_MP_STATE_UNINITIALIZED));
    }
    VcpuEnv env;
    env.buses = Buses{&pio_bus_, &mmio_bus_};
    env.memory = &memory_;
    env.stop = &stop_;
    env.end_vm = [this](VmOutcome outcome) { RequestEnd(std::move(outcome)); };
    env.count_stats = config_.stats;
    vcpus_.push_back(std::make_unique<Vcpu>(std::move(fd), std::move(env)));
  }
  return {};
}

Result<void> Vm::Start() {
  if (started_) return Err("the VM was already started");
  started_ = true;
  TRY(StartDevices(*devices_));
  loop_.Start();
  for (auto& vcpu : vcpus_) vcpu->Start();
  return {};
}

void Vm::RequestEnd(VmOutcome outcome) {
  {
    std::lock_guard lock(mutex_);
    if (outcome_) return;
    outcome_ = std::move(outcome);
  }
  // The vCPU that caused the end (a power-off or reset write, a crash) must not run another
  // guest instruction: on real hardware a reset takes effect at once. The others are kicked
  // out of KVM_RUN by Wait().
  stop_.store(true, std::memory_order_release);
  ended_.notify_all();
}

VmOutcome Vm::Wait() {
  VmOutcome outcome;
  {
    std::unique_lock lock(mutex_);
    ended_.wait(lock, [this] { return outcome_.has_value(); });
    outcome = *outcome_;
  }
  StopVcpus();
  return outcome;
}

void Vm::StopVcpus() {
  if (stopped_) return;
  stopped_ = true;
  stop_.store(true, std::memory_order_release);
  for (auto& vcpu : vcpus_) vcpu->Kick();
  for (auto& vcpu : vcpus_) vcpu->Join();
  if (devices_) StopDevices(*devices_);
  // Devices first (they wait for their in-flight I/O), then the loop their completions use.
  if (virtio_) virtio_->Shutdown();
  loop_.Stop();
}

std::string Vm::StatsReport() const {
  ExitStats total;
  for (const auto& vcpu : vcpus_) total.Merge(vcpu->stats());
  std::string report = total.Format();
  BusStats pio = pio_bus_.stats();
  BusStats mmio = mmio_bus_.stats();
  report += "buses: pio unclaimed reads " + std::to_string(pio.unclaimed_reads) + " writes " +
            std::to_string(pio.unclaimed_writes) + "; mmio unclaimed reads " +
            std::to_string(mmio.unclaimed_reads) + " writes " +
            std::to_string(mmio.unclaimed_writes) + "\n";
  if (devices_) report += DevicesStatsReport(*devices_);
  if (virtio_) report += virtio_->StatsReport();
  return report;
}

}  // namespace kite
