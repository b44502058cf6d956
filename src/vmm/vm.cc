// Vm: building, booting or restoring, running, pausing and stopping one VM. See vm.h.
#include "vmm/vm.h"

#include "base/log.h"
#include "base/units.h"
#include "devices/acpi_ged.h"
#include "vmm/acpi/acpi_tables.h"
#include "vmm/acpi/mptable.h"
#include "vmm/boot/loader.h"
#include "vmm/cpu_setup.h"
#include "vmm/kvm_state.h"
#include "vmm/layout.h"
#include "vmm/snapshot/kvm_state_json.h"
#include "vmm/vm_devices.h"
#include "vmm/vm_pci.h"
#include "vmm/vm_virtio.h"
#include "vmm/vmgenid.h"

namespace kite {
namespace {

// Three pages for the TSS KVM needs on Intel, and the EPT identity-map page, just below the
// LAPIC/IOAPIC range in the MMIO hole (not RAM, not used by a device).
constexpr uint64_t kIdentityMapAddr = 0xfeffc000;
constexpr uint64_t kTssAddr = 0xfeffd000;

}  // namespace

Result<GuestMemory> CreateGuestMemory(const VmConfig& config) {
  GuestMemory::Backing backing;
  backing.hugepage_size = config.memory_backing.hugepage_size;
  backing.prealloc = config.memory_backing.prealloc;
  backing.shared = config.memory_backing.shared;
  return GuestMemory::Create(config.memory, backing);
}

Vm::Vm(const VmConfig& config, KvmSystem kvm, VmFd vm, GuestMemory memory)
    : config_(config),
      kvm_(std::move(kvm)),
      vm_(std::move(vm)),
      memory_(std::move(memory)),
      allocator_(layout::kVirtioMmioBase, layout::kVirtioMmioSize, layout::kVirtioMmioSlots,
                 {std::begin(kVirtioGsis), std::end(kVirtioGsis)}) {}

Vm::~Vm() {
  Teardown();
}

Result<std::unique_ptr<Vm>> Vm::Build(const VmConfig& config,
                                      std::chrono::steady_clock::time_point start,
                                      const ThreadPlacement& placement,
                                      std::optional<GuestMemory> memory) {
  TRY(ValidateVmConfig(config));
  KvmSystem kvm = TRY(KvmSystem::Open());
  VmFd vm_fd = TRY(kvm.CreateVm());
  if (!memory) memory = TRY_CTX(CreateGuestMemory(config), "guest memory");
  std::unique_ptr<Vm> vm(new Vm(config, std::move(kvm), std::move(vm_fd), std::move(*memory)));
  vm->placement_ = placement;
  vm->supported_cpuid_ = TRY(vm->kvm_.GetSupportedCpuid());
  vm->msr_indices_ = SerializableMsrs(TRY(vm->kvm_.GetMsrIndexList()));
  vm->host_ = QueryHostKvm(vm->vm_);
  TRY(vm->BuildPlatform(start));
  TRY(vm->CreateVcpus());
  return vm;
}

Result<void> Vm::BuildPlatform(std::chrono::steady_clock::time_point start) {
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
  wiring.registry = &registry_;
  wiring.start = start;
  wiring.on_request = [this](VmRequest request) {
    if (request == VmRequest::kPowerOff) {
      RequestEnd({VmEnd::kPowerOff, "the guest powered off"});
    } else {
      RequestEnd({VmEnd::kReset, "the guest reset"});
    }
  };
  wiring.on_user_quit = [this] { RequestEnd({VmEnd::kStopped, kConsoleQuit}); };
  wiring.on_slot_eject = [this](uint32_t slot) { OnSlotEjected(slot); };
  devices_ = TRY(CreateDevices(wiring));
  if (config_.transport == VirtioTransportKind::kPci) {
    pci_ = TRY(VmPci::Create(&vm_, &mmio_bus_, &pio_bus_, memory_.end().value));
  }
  TRY(AddVirtioDevices(Wiring()));
  return {};
}

Result<void> Vm::Boot() {
  uint64_t rsdp = TRY(WritePlatformTables());
  boot::KernelSpec spec;
  spec.kernel_path = config_.kernel;
  spec.initrd_path = config_.initrd;
  spec.cmdline = config_.cmdline;
  // Without ACPI the kernel learns about virtio-mmio devices from its command line only.
  if (!config_.acpi) spec.cmdline += VirtioKernelCmdline(registry_);
  spec.acpi_rsdp = rsdp;
  boot::BootPlan plan = TRY(boot::LoadKernel(memory_, spec));
  KITE_LOG(Info, "kernel: %s, entry 0x%s", plan.kernel_kind.c_str(),
           ToHex(plan.entry.value).c_str());
  for (auto& vcpu : vcpus_) {
    VcpuFd& fd = vcpu->fd();
    if (fd.index() == 0) {
      kvm_regs regs{};
      kvm_sregs sregs = TRY(fd.GetSregs());
      TRY(boot::SetupBootCpu(memory_, plan, &regs, &sregs));
      TRY(fd.SetSregs(sregs));
      TRY(fd.SetRegs(regs));
    } else {
      // Application processors wait for INIT-SIPI-SIPI from the in-kernel LAPIC.
      TRY(fd.SetMpState(KVM_MP_STATE_UNINITIALIZED));
    }
  }
  return {};
}

// ACPI tables, or the MP table with acpi = false: never both, so a kernel sees one description.
Result<uint64_t> Vm::WritePlatformTables() {
  if (!config_.acpi) {
    TRY_CTX(acpi::WriteMpTable(memory_, config_.cpus), "MP table");
    return uint64_t{0};
  }
  // A fresh generation id for VMGenID: a restore writes another one (Vm::Restore).
  TRY(WriteVmGenId(memory_, NewVmGenId()));
  acpi::AcpiConfig acpi_config;
  acpi_config.vmgenid_addr = layout::kVmGenIdAddr;
  acpi_config.num_cpus = config_.cpus;
  acpi_config.serial_com1 = true;
  acpi_config.cmos_rtc = HasCmosRtc(registry_);
  acpi_config.virtio_devices = VirtioAcpiDevices(registry_);
  if (pci_) acpi_config.pci = pci_->AcpiConfig();
  GuestAddr rsdp = TRY_CTX(acpi::WriteAcpiTables(memory_, acpi_config), "ACPI tables");
  return rsdp.value;
}

Result<void> Vm::CreateVcpus() {
  CpuTemplate cpu_template = TRY(ParseCpuTemplate(config_.cpu_template));
  for (uint32_t i = 0; i < config_.cpus; ++i) {
    VcpuFd fd = TRY(vm_.CreateVcpu(i));
    VcpuSetup setup{supported_cpuid_, {i, config_.cpus, cpu_template}};
    TRY_CTX(ConfigureVcpu(fd, setup), "vCPU " + std::to_string(i));
    VcpuEnv env;
    env.buses = Buses{&pio_bus_, &mmio_bus_};
    env.memory = &memory_;
    env.control = &control_;
    env.end_vm = [this](VmOutcome outcome) { RequestEnd(std::move(outcome)); };
    env.count_stats = config_.stats;
    if (i < placement_.vcpus.size()) env.affinity = placement_.vcpus[i];
    vcpus_.push_back(std::make_unique<Vcpu>(std::move(fd), std::move(env)));
  }
  return {};
}

Result<void> Vm::Restore(const nlohmann::json& state, bool clock_realtime) {
  const nlohmann::json* vcpus = state.contains("vcpus") ? &state["vcpus"] : nullptr;
  if (vcpus == nullptr || !vcpus->is_array() || vcpus->size() != vcpus_.size()) {
    return Err("vcpus: expected an array of " + std::to_string(vcpus_.size()) + " vCPU states");
  }
  if (!state.contains("vm") || !state.contains("devices")) {
    return Err("the state has no \"vm\" or no \"devices\" member");
  }
  // Everything parsed and checked first; then KVM and the devices take it.
  std::vector<VcpuState> parsed;
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    std::string where = "vcpus[" + std::to_string(i) + "]";
    VcpuState vcpu = TRY(snapshot::VcpuStateFromJson((*vcpus)[i], where));
    TRY_CTX(ValidateVcpuState(vcpu, host_), where);
    TRY_CTX(CheckCpuidCompatible(vcpu.cpuid, supported_cpuid_), where);
    parsed.push_back(std::move(vcpu));
  }
  VmState vm_state = TRY(snapshot::VmStateFromJson(state["vm"], "vm"));
  TRY_CTX(ValidateVmState(vm_state), "vm");
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    TRY_CTX(RestoreVcpuState(vcpus_[i]->fd(), parsed[i], host_),
            "restoring vCPU " + std::to_string(i));
  }
  TRY_CTX(RestoreVmState(vm_, vm_state, clock_realtime), "restoring the VM state");
  TRY(registry_.RestoreAll(state["devices"]));
  // Every restore is a new generation (clones of one snapshot must not share RNG state): the
  // id changes before any vCPU runs; Start() tells the guest through the GED.
  if (config_.acpi) TRY(WriteVmGenId(memory_, NewVmGenId()));
  restored_ = true;
  return {};
}

Result<void> Vm::Start() {
  if (started_) return Err("the VM was already started");
  started_ = true;
  TRY(StartDevices(*devices_));
  // libslirp's sockets live on the loop: a user network now, or one a device_add may bring.
  bool user_net = config_.transport == VirtioTransportKind::kPci;
  for (const NetConfig& net : config_.nets) user_net |= net.backend == NetBackendKind::kUser;
  loop_.Start({.inet_sockets = user_net, .unix_connect = config_.vsock.has_value()});
  // Restored transports wait quiesced until the loop runs: now they look at their queues.
  if (restored_) registry_.ResumeAll();
  for (auto& vcpu : vcpus_) vcpu->Start();
  // The new VMGenID generation (Restore): the guest's _EVT notifies VGEN once a vCPU runs.
  if (restored_ && devices_->ged && GedInterruptRouted()) {
    devices_->ged->Trigger(kGedEventVmGenId);
  }
  return {};
}

// Whether the guest's OS routed the GED's interrupt (its IOAPIC pin is unmasked): one that did
// not (no ACPI driver; a tiny test guest) would take the edge through the PIC's reset state as a
// stray exception vector, so it gets no event.
bool Vm::GedInterruptRouted() const {
  auto ioapic = vm_.GetIrqchip(KVM_IRQCHIP_IOAPIC);
  if (!ioapic) return false;
  return ioapic->chip.ioapic.redirtbl[layout::kGedIrq].fields.mask == 0;
}

VirtioWiring Vm::Wiring() {
  return {&config_,   &vm_,        &mmio_bus_, &memory_,         &loop_,
          &registry_, &allocator_, pci_.get(), &throttle_groups_};
}

void Vm::KickAll() {
  for (auto& vcpu : vcpus_) vcpu->Kick();
}

Result<void> Vm::Pause() {
  control_.Set(VcpuControl::Want::kPause);
  KickAll();
  control_.WaitParked(static_cast<uint32_t>(vcpus_.size()));
  if (control_.want() != VcpuControl::Want::kPause) return Err("the VM is ending");
  // QEMU's stop: the guest's kvmclock stands still until cont.
  held_clock_ = TRY(vm_.GetClock());
  for (auto& vcpu : vcpus_) TRY(vcpu->fd().KvmclockCtrl());
  return {};
}

Result<void> Vm::Resume() {
  if (control_.want() == VcpuControl::Want::kExit) return Err("the VM is ending");
  if (held_clock_) {
    kvm_clock_data clock{};
    clock.clock = held_clock_->clock;
    TRY(vm_.SetClock(clock));
    held_clock_.reset();
  }
  if (devices_held_) {
    registry_.ResumeAll();
    devices_held_ = false;
  }
  control_.Set(VcpuControl::Want::kRun);
  return {};
}

Result<nlohmann::json> Vm::SaveState() {
  if (control_.want() != VcpuControl::Want::kPause || !held_clock_) {
    return Err("the VM must be paused");
  }
  // Devices first: draining them may raise interrupts the irqchip state must hold (FC).
  if (!devices_held_) TRY(registry_.QuiesceAll());
  nlohmann::json out;
  auto saved = [&]() -> Result<void> {
    out["devices"] = TRY(registry_.SaveAll());
    VmState vm_state = TRY(SaveVmState(vm_));
    vm_state.clock = *held_clock_;
    out["vm"] = snapshot::ToJson(vm_state);
    out["vcpus"] = nlohmann::json::array();
    for (auto& vcpu : vcpus_) {
      VcpuState state = TRY_CTX(SaveVcpuState(vcpu->fd(), host_, msr_indices_),
                                "vCPU " + std::to_string(vcpu->fd().index()));
      out["vcpus"].push_back(snapshot::ToJson(state));
    }
    return {};
  }();
  if (!saved) {
    if (!devices_held_) registry_.ResumeAll();
    return std::move(saved).error();
  }
  devices_held_ = true;  // until Resume
  return out;
}

Result<void> Vm::PowerButton() {
  if (!devices_->ged) {
    return Err(ErrorKind::kDeviceNotActive, "the VM has no ACPI power button (--no-acpi)");
  }
  devices_->ged->Trigger(kGedEventPowerButton);
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
  control_.Set(VcpuControl::Want::kExit);
  ended_.notify_all();
}

VmOutcome Vm::Wait() {
  VmOutcome outcome;
  {
    std::unique_lock lock(mutex_);
    ended_.wait(lock, [this] { return outcome_.has_value(); });
    outcome = *outcome_;
  }
  Teardown();
  return outcome;
}

void Vm::Teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  control_.Set(VcpuControl::Want::kExit);
  KickAll();
  for (auto& vcpu : vcpus_) vcpu->Join();
  if (devices_) StopDevices(*devices_);
  // Devices first (they wait for their in-flight I/O), then the loop their completions use.
  registry_.ShutdownAll();
  loop_.Stop();
}

// --- hotplug ---

void Vm::SetSlotEjectHandler(SlotEjectFn fn) {
  std::lock_guard lock(eject_mutex_);
  on_slot_eject_ = std::move(fn);
}

void Vm::OnSlotEjected(uint32_t slot) {
  std::lock_guard lock(eject_mutex_);
  if (on_slot_eject_) on_slot_eject_(slot);
}

Result<uint32_t> Vm::AddDevice(const DeviceAddRequest& request, const std::string& id) {
  if (!pci_ || !devices_->ged) {
    return Err(ErrorKind::kDeviceNotActive,
               "hotplug needs a machine with --transport pci (virtio-mmio devices cannot be "
               "added to a running VM: docs/PCI.md)");
  }
  if (registry_.Find(id) != nullptr) return Err("a device with id '" + id + "' already exists");
  uint32_t slot = request.slot;
  if (slot == 0) {
    slot = TRY(pci_->LowestFreeSlot());
  } else if (slot > 31) {
    return Err("PCI slot " + std::to_string(slot) + " does not exist (expected 1-31)");
  } else if (pci_->bus().occupied_slots() & (1u << slot)) {
    return Err("PCI slot " + std::to_string(slot) + " is taken");
  }
  VirtioWiring w = Wiring();
  const auto at = static_cast<uint8_t>(slot);
  DeviceEntry entry = request.driver == HotplugDriver::kVirtioBlk
                          ? TRY(CreateVirtioDisk(w, request.disk, id, at))
                          : TRY(CreateVirtioNet(w, request.net, id, at));
  TRY(registry_.Add(std::move(entry)));
  devices_->ged->SetSlotPresent(slot, true);
  return slot;
}

Result<uint32_t> Vm::RequestUnplug(const std::string& id) {
  const DeviceEntry* entry = registry_.Find(id);
  if (entry == nullptr) return Err(ErrorKind::kDeviceNotFound, "Device '" + id + "' not found");
  std::optional<uint8_t> slot = VirtioPciSlot(*entry);
  if (!slot || !devices_->ged) {
    return Err("device '" + id +
               "' cannot be unplugged (only virtio-pci devices can: "
               "--transport pci)");
  }
  devices_->ged->RequestSlotEject(*slot);
  return uint32_t{*slot};
}

std::unique_ptr<DeviceEntry> Vm::DetachDevice(uint32_t slot) {
  for (const auto& e : registry_.entries()) {
    if (VirtioPciSlot(*e) == std::optional<uint8_t>(slot)) return registry_.Remove(e->id);
  }
  return nullptr;
}

void Vm::ReleaseDevice(std::unique_ptr<DeviceEntry> entry) {
  UnplugVirtio(std::move(entry), loop_);
}

std::map<std::string, uint32_t> Vm::PciSlots() const {
  return VirtioPciSlots(registry_);
}

std::vector<CpuInfo> Vm::Cpus() const {
  std::vector<CpuInfo> out;
  for (const auto& vcpu : vcpus_) out.push_back({vcpu->fd().index(), vcpu->thread_id()});
  return out;
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
  return report + registry_.StatsReport();
}

nlohmann::json Vm::Counters() const {
  BusStats pio = pio_bus_.stats();
  BusStats mmio = mmio_bus_.stats();
  return {
      {"buses",
       {{"pio",
         {{"unclaimed_reads", pio.unclaimed_reads}, {"unclaimed_writes", pio.unclaimed_writes}}},
        {"mmio",
         {{"unclaimed_reads", mmio.unclaimed_reads},
          {"unclaimed_writes", mmio.unclaimed_writes}}}}},
      {"devices", registry_.Counters()}};
}

}  // namespace kite
