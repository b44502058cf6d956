// KVM ioctl wrappers: /dev/kvm, the VM and its vCPUs. See kvm.h.
#include "vmm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>

#include "base/kvm_ioctls.h"
#include "base/units.h"

namespace kite {
namespace {

constexpr int kKvmApiVersion = 12;

// A header followed by `count` entries, 8-byte aligned and zeroed.
template <typename Header, typename Entry>
struct IoctlArray {
  explicit IoctlArray(size_t count)
      : storage(std::make_unique<uint64_t[]>((sizeof(Header) + count * sizeof(Entry) + 7) / 8)) {}
  Header* header() { return reinterpret_cast<Header*>(storage.get()); }
  Entry* entries() { return reinterpret_cast<Entry*>(header() + 1); }
  std::unique_ptr<uint64_t[]> storage;
};
constexpr uint64_t kPitSpeakerDummy = KVM_PIT_SPEAKER_DUMMY;

struct RequiredCap {
  int cap;
  const char* name;
};
constexpr RequiredCap kRequiredCaps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
};

// Errors for opening /dev/kvm, each naming the fix.
Error OpenError(const char* path, int err) {
  std::string p(path);
  switch (err) {
    case ENOENT:
    case ENXIO:
    case ENODEV:
      return Error(
          "no " + p + ": load kvm_intel or kvm_amd, or enable virtualization in the " + "BIOS/VM",
          err);
    case EACCES:
    case EPERM:
      return Error("permission denied on " + p + ": add your user to the kvm group", err);
    case EBUSY:
      return Error(p + " is busy: another hypervisor (VirtualBox, VMware) may hold VT-x/AMD-V",
                   err);
    default:
      return SysErr("opening " + p, err);
  }
}

template <typename T>
Result<T> GetIoctl(int fd, unsigned long request, const char* what) {
  T value{};
  if (::ioctl(fd, request, &value) < 0) return SysErr(what);
  return value;
}

template <typename T>
Result<void> SetIoctl(int fd, unsigned long request, const T& value, const char* what) {
  if (::ioctl(fd, request, &value) < 0) return SysErr(what);
  return {};
}

}  // namespace

Result<KvmSystem> KvmSystem::Open(const char* path) {
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return OpenError(path, errno);
  UniqueFd kvm(fd);
  int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != kKvmApiVersion) {
    return Err(std::string(path) + ": KVM API version " + std::to_string(version) +
               ", kite needs " + std::to_string(kKvmApiVersion) + ": the host kernel is too old");
  }
  for (const RequiredCap& c : kRequiredCaps) {
    if (::ioctl(fd, KVM_CHECK_EXTENSION, c.cap) <= 0) {
      return Err(std::string("the host KVM lacks ") + c.name + ": kite needs a newer host kernel");
    }
  }
  int mmap_size = ::ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size < static_cast<int>(sizeof(kvm_run))) return SysErr("KVM_GET_VCPU_MMAP_SIZE");
  return KvmSystem(std::move(kvm), mmap_size);
}

int KvmSystem::CheckExtension(int capability) const {
  return ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
}

Result<VmFd> KvmSystem::CreateVm() const {
  int fd;
  do {
    fd = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return SysErr("KVM_CREATE_VM");
  return VmFd(UniqueFd(fd), vcpu_mmap_size_);
}

Result<std::vector<kvm_cpuid_entry2>> KvmSystem::GetSupportedCpuid() const {
  // Grow the buffer until KVM stops answering E2BIG.
  for (uint32_t nent = 128; nent <= 4096; nent *= 2) {
    IoctlArray<KvmCpuid2Header, kvm_cpuid_entry2> cpuid(nent);
    cpuid.header()->nent = nent;
    if (::ioctl(fd_.get(), kKvmGetSupportedCpuid, cpuid.header()) == 0) {
      uint32_t n = std::min(cpuid.header()->nent, nent);
      return std::vector<kvm_cpuid_entry2>(cpuid.entries(), cpuid.entries() + n);
    }
    if (errno != E2BIG) return SysErr("KVM_GET_SUPPORTED_CPUID");
  }
  return Err("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

Result<std::vector<uint32_t>> KvmSystem::GetMsrIndexList() const {
  // First call with room for none: KVM answers E2BIG and says how many there are.
  KvmMsrListHeader probe{0};
  if (::ioctl(fd_.get(), kKvmGetMsrIndexList, &probe) == 0) return std::vector<uint32_t>{};
  if (errno != E2BIG) return SysErr("KVM_GET_MSR_INDEX_LIST");
  IoctlArray<KvmMsrListHeader, uint32_t> list(probe.nmsrs);
  list.header()->nmsrs = probe.nmsrs;
  if (::ioctl(fd_.get(), kKvmGetMsrIndexList, list.header()) < 0) {
    return SysErr("KVM_GET_MSR_INDEX_LIST");
  }
  uint32_t n = std::min(list.header()->nmsrs, probe.nmsrs);
  return std::vector<uint32_t>(list.entries(), list.entries() + n);
}

Result<void> VmFd::MapMemory(const GuestMemory& memory) {
  uint32_t slot = 0;
  for (const MemoryRegion& r : memory.regions()) {
    kvm_userspace_memory_region region{};
    region.slot = slot++;
    region.guest_phys_addr = r.guest_base.value;
    region.memory_size = r.size;
    region.userspace_addr = reinterpret_cast<uint64_t>(r.host);
    if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
      return SysErr("KVM_SET_USER_MEMORY_REGION for guest RAM at 0x" + ToHex(r.guest_base.value) +
                    " (" + FormatSize(r.size) + ")");
    }
  }
  return {};
}

Result<void> VmFd::SetTssAddr(uint64_t addr) {
  if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0) {
    return SysErr("KVM_SET_TSS_ADDR");
  }
  return {};
}

Result<void> VmFd::SetIdentityMapAddr(uint64_t addr) {
  return SetIoctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, addr, "KVM_SET_IDENTITY_MAP_ADDR");
}

Result<void> VmFd::CreateIrqchip() {
  if (::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) return SysErr("KVM_CREATE_IRQCHIP");
  return {};
}

Result<void> VmFd::CreatePit() {
  kvm_pit_config config{};
  config.flags = kPitSpeakerDummy;
  return SetIoctl(fd_.get(), KVM_CREATE_PIT2, config, "KVM_CREATE_PIT2");
}

Result<void> VmFd::SetIrqLine(uint32_t gsi, bool level) const {
  kvm_irq_level irq{};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  return SetIoctl(fd_.get(), KVM_IRQ_LINE, irq, "KVM_IRQ_LINE");
}

static Result<void> Ioeventfd(int vm_fd, int eventfd, uint64_t addr, uint32_t len, uint32_t flags,
                              std::optional<uint64_t> datamatch) {
  kvm_ioeventfd io{};
  io.addr = addr;
  io.len = len;
  io.fd = eventfd;
  io.flags = flags;
  if (datamatch) {
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    io.datamatch = *datamatch;
  }
  return SetIoctl(vm_fd, KVM_IOEVENTFD, io, "KVM_IOEVENTFD");
}

Result<void> VmFd::RegisterIoeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio,
                                     std::optional<uint64_t> datamatch) {
  return Ioeventfd(fd_.get(), eventfd, addr, len, pio ? KVM_IOEVENTFD_FLAG_PIO : 0, datamatch);
}

Result<void> VmFd::UnregisterIoeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio,
                                       std::optional<uint64_t> datamatch) {
  uint32_t flags = KVM_IOEVENTFD_FLAG_DEASSIGN | (pio ? KVM_IOEVENTFD_FLAG_PIO : 0);
  return Ioeventfd(fd_.get(), eventfd, addr, len, flags, datamatch);
}

Result<void> VmFd::RegisterIrqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = eventfd;
  irqfd.gsi = gsi;
  return SetIoctl(fd_.get(), KVM_IRQFD, irqfd, "KVM_IRQFD");
}

Result<void> VmFd::UnregisterIrqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = eventfd;
  irqfd.gsi = gsi;
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  return SetIoctl(fd_.get(), KVM_IRQFD, irqfd, "KVM_IRQFD (deassign)");
}

Result<void> VmFd::SetGsiRouting(std::span<const kvm_irq_routing_entry> routes) {
  IoctlArray<KvmIrqRoutingHeader, kvm_irq_routing_entry> table(routes.size());
  table.header()->nr = static_cast<uint32_t>(routes.size());
  std::copy(routes.begin(), routes.end(), table.entries());
  if (::ioctl(fd_.get(), kKvmSetGsiRouting, table.header()) < 0) {
    return SysErr("KVM_SET_GSI_ROUTING (" + std::to_string(routes.size()) + " routes)");
  }
  return {};
}

std::vector<kvm_irq_routing_entry> DefaultIrqchipRoutes() {
  std::vector<kvm_irq_routing_entry> routes;
  auto add = [&](uint32_t gsi, uint32_t chip, uint32_t pin) {
    kvm_irq_routing_entry e{};
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_IRQCHIP;
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    routes.push_back(e);
  };
  for (uint32_t gsi = 0; gsi < kIoapicPins; ++gsi) {
    add(gsi, KVM_IRQCHIP_IOAPIC, gsi);
    if (gsi < 16) add(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
  }
  return routes;
}

kvm_irq_routing_entry MsiRoute(uint32_t gsi, uint64_t address, uint32_t data) {
  kvm_irq_routing_entry e{};
  e.gsi = gsi;
  e.type = KVM_IRQ_ROUTING_MSI;
  e.u.msi.address_lo = static_cast<uint32_t>(address);
  e.u.msi.address_hi = static_cast<uint32_t>(address >> 32);
  e.u.msi.data = data;
  return e;
}

int VmFd::CheckExtension(int capability) const {
  return ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
}

size_t VmFd::XsaveSize() const {
  int size = CheckExtension(KVM_CAP_XSAVE2);
  return std::max(static_cast<size_t>(std::max(size, 0)), sizeof(KvmXsaveRegion));
}

Result<kvm_clock_data> VmFd::GetClock() const {
  return GetIoctl<kvm_clock_data>(fd_.get(), KVM_GET_CLOCK, "KVM_GET_CLOCK");
}
Result<void> VmFd::SetClock(const kvm_clock_data& clock) {
  return SetIoctl(fd_.get(), KVM_SET_CLOCK, clock, "KVM_SET_CLOCK");
}

Result<kvm_irqchip> VmFd::GetIrqchip(uint32_t chip_id) const {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  if (::ioctl(fd_.get(), KVM_GET_IRQCHIP, &chip) < 0) {
    return SysErr("KVM_GET_IRQCHIP " + std::to_string(chip_id));
  }
  return chip;
}
Result<void> VmFd::SetIrqchip(const kvm_irqchip& chip) {
  if (::ioctl(fd_.get(), KVM_SET_IRQCHIP, &chip) < 0) {
    return SysErr("KVM_SET_IRQCHIP " + std::to_string(chip.chip_id));
  }
  return {};
}

Result<kvm_pit_state2> VmFd::GetPit2() const {
  return GetIoctl<kvm_pit_state2>(fd_.get(), KVM_GET_PIT2, "KVM_GET_PIT2");
}
Result<void> VmFd::SetPit2(const kvm_pit_state2& pit) {
  return SetIoctl(fd_.get(), KVM_SET_PIT2, pit, "KVM_SET_PIT2");
}

Result<VcpuFd> VmFd::CreateVcpu(uint32_t index) const {
  int fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(index));
  if (fd < 0) return SysErr("KVM_CREATE_VCPU " + std::to_string(index));
  UniqueFd vcpu(fd);
  void* run = ::mmap(nullptr, vcpu_mmap_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (run == MAP_FAILED) return SysErr("mapping kvm_run of vCPU " + std::to_string(index));
  return VcpuFd(std::move(vcpu), index, static_cast<kvm_run*>(run), vcpu_mmap_size_);
}

VcpuFd::VcpuFd(UniqueFd fd, uint32_t index, kvm_run* run, size_t run_size)
    : fd_(std::move(fd)), index_(index), run_(run), run_size_(run_size) {}

VcpuFd::VcpuFd(VcpuFd&& other) noexcept
    : fd_(std::move(other.fd_)),
      index_(other.index_),
      run_(std::exchange(other.run_, nullptr)),
      run_size_(std::exchange(other.run_size_, 0)) {}

VcpuFd::~VcpuFd() {
  if (run_ != nullptr) ::munmap(run_, run_size_);
}

Result<bool> VcpuFd::Run() {
  if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return true;
  if (errno == EINTR || errno == EAGAIN) return false;
  return SysErr("KVM_RUN on vCPU " + std::to_string(index_));
}

void VcpuFd::RequestImmediateExit() {
  std::atomic_ref<uint8_t>(run_->immediate_exit).store(1, std::memory_order_release);
}

void VcpuFd::ClearImmediateExit() {
  std::atomic_ref<uint8_t>(run_->immediate_exit).store(0, std::memory_order_release);
}

Result<kvm_regs> VcpuFd::GetRegs() const {
  return GetIoctl<kvm_regs>(fd_.get(), KVM_GET_REGS, "KVM_GET_REGS");
}
Result<void> VcpuFd::SetRegs(const kvm_regs& regs) {
  return SetIoctl(fd_.get(), KVM_SET_REGS, regs, "KVM_SET_REGS");
}
Result<kvm_sregs> VcpuFd::GetSregs() const {
  return GetIoctl<kvm_sregs>(fd_.get(), KVM_GET_SREGS, "KVM_GET_SREGS");
}
Result<void> VcpuFd::SetSregs(const kvm_sregs& sregs) {
  return SetIoctl(fd_.get(), KVM_SET_SREGS, sregs, "KVM_SET_SREGS");
}
Result<kvm_fpu> VcpuFd::GetFpu() const {
  return GetIoctl<kvm_fpu>(fd_.get(), KVM_GET_FPU, "KVM_GET_FPU");
}
Result<void> VcpuFd::SetFpu(const kvm_fpu& fpu) {
  return SetIoctl(fd_.get(), KVM_SET_FPU, fpu, "KVM_SET_FPU");
}
Result<kvm_lapic_state> VcpuFd::GetLapic() const {
  return GetIoctl<kvm_lapic_state>(fd_.get(), KVM_GET_LAPIC, "KVM_GET_LAPIC");
}
Result<void> VcpuFd::SetLapic(const kvm_lapic_state& lapic) {
  return SetIoctl(fd_.get(), KVM_SET_LAPIC, lapic, "KVM_SET_LAPIC");
}
Result<kvm_vcpu_events> VcpuFd::GetEvents() const {
  return GetIoctl<kvm_vcpu_events>(fd_.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
}
Result<void> VcpuFd::SetEvents(const kvm_vcpu_events& events) {
  return SetIoctl(fd_.get(), KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS");
}
Result<kvm_mp_state> VcpuFd::GetMpState() const {
  return GetIoctl<kvm_mp_state>(fd_.get(), KVM_GET_MP_STATE, "KVM_GET_MP_STATE");
}
Result<void> VcpuFd::SetMpState(uint32_t mp_state) {
  kvm_mp_state state{mp_state};
  return SetIoctl(fd_.get(), KVM_SET_MP_STATE, state, "KVM_SET_MP_STATE");
}

Result<void> VcpuFd::SetMpState(const kvm_mp_state& mp_state) {
  return SetIoctl(fd_.get(), KVM_SET_MP_STATE, mp_state, "KVM_SET_MP_STATE");
}

Result<std::vector<kvm_cpuid_entry2>> VcpuFd::GetCpuid() const {
  // KVM 6.1 never reports the entry count of KVM_GET_CPUID2 (nent is written back neither on
  // success nor with E2BIG). It copies exactly its entries, so the buffer is pre-filled with
  // all-ones entries (a real one has zero padding) and the count is where they start.
  kvm_cpuid_entry2 unused;
  std::memset(&unused, 0xff, sizeof(unused));
  for (uint32_t nent = 64; nent <= 4096; nent *= 2) {
    IoctlArray<KvmCpuid2Header, kvm_cpuid_entry2> cpuid(nent);
    cpuid.header()->nent = nent;
    std::fill(cpuid.entries(), cpuid.entries() + nent, unused);
    if (::ioctl(fd_.get(), kKvmGetCpuid2, cpuid.header()) == 0) {
      uint32_t n = 0;
      while (n < nent && std::memcmp(&cpuid.entries()[n], &unused, sizeof(unused)) != 0) ++n;
      return std::vector<kvm_cpuid_entry2>(cpuid.entries(), cpuid.entries() + n);
    }
    if (errno != E2BIG) return SysErr("KVM_GET_CPUID2");
  }
  return Err("KVM_GET_CPUID2: more than 4096 entries");
}

Result<std::vector<uint8_t>> VcpuFd::GetXsave(size_t size) const {
  // 8-byte aligned storage: KVM copies the area straight into it.
  size = std::max(size, sizeof(KvmXsaveRegion));
  std::vector<uint64_t> area((size + 7) / 8);
  bool big = size > sizeof(KvmXsaveRegion);
  if (::ioctl(fd_.get(), big ? kKvmGetXsave2 : kKvmGetXsave, area.data()) < 0) {
    return SysErr(big ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE");
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(area.data());
  return std::vector<uint8_t>(bytes, bytes + size);
}
Result<void> VcpuFd::SetXsave(std::span<const uint8_t> xsave) {
  if (xsave.size() < sizeof(KvmXsaveRegion)) {
    return Err("KVM_SET_XSAVE: " + std::to_string(xsave.size()) + " bytes, at least " +
               std::to_string(sizeof(KvmXsaveRegion)) + " needed");
  }
  std::vector<uint64_t> area((xsave.size() + 7) / 8);
  std::memcpy(area.data(), xsave.data(), xsave.size());
  if (::ioctl(fd_.get(), kKvmSetXsave, area.data()) < 0) return SysErr("KVM_SET_XSAVE");
  return {};
}
Result<kvm_xcrs> VcpuFd::GetXcrs() const {
  return GetIoctl<kvm_xcrs>(fd_.get(), KVM_GET_XCRS, "KVM_GET_XCRS");
}
Result<void> VcpuFd::SetXcrs(const kvm_xcrs& xcrs) {
  return SetIoctl(fd_.get(), KVM_SET_XCRS, xcrs, "KVM_SET_XCRS");
}
Result<kvm_debugregs> VcpuFd::GetDebugRegs() const {
  return GetIoctl<kvm_debugregs>(fd_.get(), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
}
Result<void> VcpuFd::SetDebugRegs(const kvm_debugregs& debugregs) {
  return SetIoctl(fd_.get(), KVM_SET_DEBUGREGS, debugregs, "KVM_SET_DEBUGREGS");
}

Result<uint32_t> VcpuFd::GetTscKhz() const {
  int khz = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (khz < 0) return SysErr("KVM_GET_TSC_KHZ");
  return static_cast<uint32_t>(khz);
}
Result<void> VcpuFd::SetTscKhz(uint32_t khz) {
  if (::ioctl(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)) < 0) {
    return SysErr("KVM_SET_TSC_KHZ " + std::to_string(khz));
  }
  return {};
}

Result<void> VcpuFd::KvmclockCtrl() {
  if (::ioctl(fd_.get(), KVM_KVMCLOCK_CTRL, 0) == 0 || errno == EINVAL) return {};
  return SysErr("KVM_KVMCLOCK_CTRL");
}

Result<void> VcpuFd::SetCpuid(std::span<const kvm_cpuid_entry2> entries) {
  IoctlArray<KvmCpuid2Header, kvm_cpuid_entry2> cpuid(entries.size());
  cpuid.header()->nent = static_cast<uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), cpuid.entries());
  if (::ioctl(fd_.get(), kKvmSetCpuid2, cpuid.header()) < 0) return SysErr("KVM_SET_CPUID2");
  return {};
}

Result<void> VcpuFd::SetMsrs(std::span<const kvm_msr_entry> msrs) {
  IoctlArray<KvmMsrsHeader, kvm_msr_entry> list(msrs.size());
  list.header()->nmsrs = static_cast<uint32_t>(msrs.size());
  std::copy(msrs.begin(), msrs.end(), list.entries());
  int set = ::ioctl(fd_.get(), kKvmSetMsrs, list.header());
  if (set < 0) return SysErr("KVM_SET_MSRS");
  if (static_cast<size_t>(set) < msrs.size()) {
    return Err("KVM_SET_MSRS: the host refused MSR 0x" + ToHex(msrs[set].index));
  }
  return {};
}

Result<std::vector<kvm_msr_entry>> VcpuFd::GetMsrs(std::span<const uint32_t> indices) const {
  IoctlArray<KvmMsrsHeader, kvm_msr_entry> list(indices.size());
  list.header()->nmsrs = static_cast<uint32_t>(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) list.entries()[i].index = indices[i];
  int got = ::ioctl(fd_.get(), kKvmGetMsrs, list.header());
  if (got < 0) return SysErr("KVM_GET_MSRS");
  if (static_cast<size_t>(got) < indices.size()) {
    return Err("KVM_GET_MSRS: the host cannot read MSR 0x" + ToHex(indices[got]));
  }
  return std::vector<kvm_msr_entry>(list.entries(), list.entries() + indices.size());
}

Result<uint64_t> VcpuFd::Translate(uint64_t linear) const {
  kvm_translation tr{};
  tr.linear_address = linear;
  if (::ioctl(fd_.get(), KVM_TRANSLATE, &tr) < 0) return SysErr("KVM_TRANSLATE");
  if (!tr.valid) return Err("guest address 0x" + ToHex(linear) + " is not mapped");
  return static_cast<uint64_t>(tr.physical_address);
}

}  // namespace kite
