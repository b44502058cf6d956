// KVM vCPU and VM state on a real /dev/kvm: a real-mode loop that counts in EBX and writes to
// port 0x10 every 1024 iterations runs in one VM, is saved, restored into a second fresh VM,
// saved again and compared, then run on: it must continue from the saved registers.
#include "vmm/kvm_state.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "testing/kvm_required.h"
#include "vmm/cpu_setup.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/snapshot/kvm_state_json.h"

namespace kite {
namespace {

constexpr uint64_t kMemorySize = 16ull << 20;
constexpr uint64_t kCodeAddr = 0x1000;
constexpr uint16_t kPort = 0x10;
constexpr uint64_t kIterationsPerExit = 1024;
constexpr uint64_t kSysenterEsp = 0xabcdef01;
// A guest TSC far from a fresh VM's: KVM 6.1 takes a host write of IA32_TSC within 1 s of
// the value it expects as a request to synchronise with the VM's other vCPUs and keeps its
// own value, so a TSC saved in the guest's first second would not come back as saved.
constexpr uint64_t kGuestTscStart = 1ull << 40;

// loop: inc ebx; test bx, 0x3ff; jnz loop; out 0x10, al; jmp loop   (16-bit code)
constexpr uint8_t kCode[] = {0x66, 0x43, 0xf7, 0xc3, 0xff, 0x03,
                             0x75, 0xf8, 0xe6, 0x10, 0xeb, 0xf4};
constexpr uint64_t kOutRip = kCodeAddr + 8;
constexpr uint64_t kAfterOutRip = kCodeAddr + 10;

struct TestVm {
  KvmSystem kvm;
  VmFd vm;
  GuestMemory memory;
  std::vector<kvm_cpuid_entry2> supported;
  HostKvm host;
};

// A VM as vm.cc builds one: TSS, identity map, irqchip, PIT, memory.
Result<TestVm> MakeVm() {
  KvmSystem kvm = TRY(KvmSystem::Open());
  VmFd vm = TRY(kvm.CreateVm());
  GuestMemory memory = TRY(GuestMemory::Create(kMemorySize));
  std::vector<kvm_cpuid_entry2> supported = TRY(kvm.GetSupportedCpuid());
  TRY(vm.SetTssAddr(0xfeffd000));
  TRY(vm.SetIdentityMapAddr(0xfeffc000));
  TRY(vm.CreateIrqchip());
  TRY(vm.CreatePit());
  TRY(vm.MapMemory(memory));
  HostKvm host = QueryHostKvm(vm);
  return TestVm{std::move(kvm), std::move(vm), std::move(memory), std::move(supported), host};
}

// vCPU 0 configured as kite does (CPUID, boot MSRs, FPU, LINT pins), in real mode at kCodeAddr.
Result<VcpuFd> MakeBootVcpu(TestVm& t) {
  VcpuFd vcpu = TRY(t.vm.CreateVcpu(0));
  TRY(ConfigureVcpu(vcpu, VcpuSetup{t.supported, {0, 1, CpuTemplate::kHost}}));
  kvm_sregs sregs = TRY(vcpu.GetSregs());
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  TRY(vcpu.SetSregs(sregs));
  kvm_regs regs{};
  regs.rip = kCodeAddr;
  regs.rflags = 2;
  TRY(vcpu.SetRegs(regs));
  const kvm_msr_entry msrs[] = {{kMsrIa32SysenterEsp, 0, kSysenterEsp},
                                {kMsrIa32Tsc, 0, kGuestTscStart}};
  TRY(vcpu.SetMsrs(msrs));
  kvm_debugregs dbg = TRY(vcpu.GetDebugRegs());
  dbg.db[0] = 0x1234;
  TRY(vcpu.SetDebugRegs(dbg));
  return vcpu;
}

// KVM_RUN until the loop's port write; fails on any other exit.
void RunToPortExit(VcpuFd& vcpu) {
  for (int i = 0; i < 1000; ++i) {
    Result<bool> ran = vcpu.Run();
    ASSERT_TRUE(ran) << ran.error().message();
    if (!*ran) continue;
    const kvm_run* run = reinterpret_cast<const kvm_run*>(vcpu.run_area().data());
    ASSERT_EQ(run->exit_reason, KVM_EXIT_IO) << "unexpected exit";
    ASSERT_EQ(run->io.port, kPort);
    ASSERT_EQ(run->io.direction, KVM_EXIT_IO_OUT);
    return;
  }
  FAIL() << "no port exit";
}

// What vcpu.cc's pause does: re-enter with immediate_exit so KVM completes the OUT.
void CompletePendingIo(VcpuFd& vcpu) {
  vcpu.RequestImmediateExit();
  Result<bool> ran = vcpu.Run();
  vcpu.ClearImmediateExit();
  ASSERT_TRUE(ran) << ran.error().message();
  EXPECT_FALSE(*ran);
}

std::vector<uint32_t> MsrIndices(const TestVm& t) {
  Result<std::vector<uint32_t>> list = t.kvm.GetMsrIndexList();
  EXPECT_TRUE(list) << list.error().message();
  return list ? SerializableMsrs(*list) : std::vector<uint32_t>{};
}

template <typename T>
bool SameBytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

const kvm_msr_entry* FindMsr(const std::vector<kvm_msr_entry>& msrs, uint32_t index) {
  for (const kvm_msr_entry& e : msrs) {
    if (e.index == index) return &e;
  }
  return nullptr;
}

void ExpectSameVcpuState(const VcpuState& a, const VcpuState& b) {
  EXPECT_EQ(a.mp_state.mp_state, b.mp_state.mp_state);
  EXPECT_TRUE(SameBytes(a.regs, b.regs));
  EXPECT_TRUE(SameBytes(a.sregs, b.sregs));
  EXPECT_TRUE(SameBytes(a.xcrs, b.xcrs));
  EXPECT_TRUE(SameBytes(a.debugregs, b.debugregs));
  EXPECT_TRUE(SameBytes(a.lapic, b.lapic));
  EXPECT_TRUE(SameBytes(a.events, b.events));
  EXPECT_EQ(a.xsave, b.xsave);
  EXPECT_EQ(a.tsc_khz, b.tsc_khz);
  ASSERT_EQ(a.msrs.size(), b.msrs.size());
  for (size_t i = 0; i < a.msrs.size(); ++i) {
    EXPECT_EQ(a.msrs[i].index, b.msrs[i].index);
    // The TSC (and a deadline derived from it) moved on while we restored.
    if (a.msrs[i].index == kMsrIa32Tsc || a.msrs[i].index == kMsrIa32TscDeadline) continue;
    EXPECT_EQ(a.msrs[i].data, b.msrs[i].data) << "MSR 0x" << std::hex << a.msrs[i].index;
  }
}

TEST(kvm_state, SaveRestore_SecondVmContinuesFromSavedRegisters) {
  KITE_REQUIRE_KVM();
  Result<TestVm> first = MakeVm();
  ASSERT_TRUE(first) << first.error().message();
  ASSERT_TRUE(first->memory.Write(GuestAddr(kCodeAddr), kCode, sizeof(kCode)));
  Result<VcpuFd> vcpu = MakeBootVcpu(*first);
  ASSERT_TRUE(vcpu) << vcpu.error().message();
  for (int i = 0; i < 3; ++i) ASSERT_NO_FATAL_FAILURE(RunToPortExit(*vcpu));
  ASSERT_NO_FATAL_FAILURE(CompletePendingIo(*vcpu));

  std::vector<uint32_t> msr_indices = MsrIndices(*first);
  Result<VcpuState> saved = SaveVcpuState(*vcpu, first->host, msr_indices);
  ASSERT_TRUE(saved) << saved.error().message();
  Result<VmState> saved_vm = SaveVmState(first->vm);
  ASSERT_TRUE(saved_vm) << saved_vm.error().message();
  EXPECT_EQ(saved->regs.rbx, 3 * kIterationsPerExit);
  EXPECT_EQ(saved->regs.rip, kAfterOutRip);
  EXPECT_FALSE(saved->cpuid.empty());
  ASSERT_NE(FindMsr(saved->msrs, kMsrIa32SysenterEsp), nullptr);
  EXPECT_EQ(FindMsr(saved->msrs, kMsrIa32SysenterEsp)->data, kSysenterEsp);
  ASSERT_NE(FindMsr(saved->msrs, kMsrIa32Tsc), nullptr);

  // Through the state file's JSON text and back, as a snapshot would.
  nlohmann::json text = nlohmann::json::parse(
      nlohmann::json{{"vcpu", snapshot::ToJson(*saved)}, {"vm", snapshot::ToJson(*saved_vm)}}
          .dump(),
      nullptr, false);
  ASSERT_FALSE(text.is_discarded());
  saved = snapshot::VcpuStateFromJson(text["vcpu"]);
  ASSERT_TRUE(saved) << saved.error().message();
  saved_vm = snapshot::VmStateFromJson(text["vm"]);
  ASSERT_TRUE(saved_vm) << saved_vm.error().message();

  // A second VM with a copy of the guest's memory.
  Result<TestVm> second = MakeVm();
  ASSERT_TRUE(second) << second.error().message();
  std::vector<uint8_t> page(4096);
  ASSERT_TRUE(first->memory.Read(GuestAddr(kCodeAddr), page.data(), page.size()));
  ASSERT_TRUE(second->memory.Write(GuestAddr(kCodeAddr), page.data(), page.size()));
  Result<VcpuFd> restored = second->vm.CreateVcpu(0);
  ASSERT_TRUE(restored) << restored.error().message();
  Result<void> r = RestoreVcpuState(*restored, *saved, second->host);
  ASSERT_TRUE(r) << r.error().message();
  r = RestoreVmState(second->vm, *saved_vm, false);
  ASSERT_TRUE(r) << r.error().message();

  Result<VcpuState> again = SaveVcpuState(*restored, second->host, MsrIndices(*second));
  ASSERT_TRUE(again) << again.error().message();
  ExpectSameVcpuState(*saved, *again);
  uint64_t saved_tsc = FindMsr(saved->msrs, kMsrIa32Tsc)->data;
  uint64_t tsc_now = FindMsr(again->msrs, kMsrIa32Tsc)->data;
  EXPECT_GE(tsc_now, saved_tsc);
  EXPECT_LT(tsc_now - saved_tsc, uint64_t{saved->tsc_khz} * 1000 * 60) << "more than 60 s";

  Result<VmState> vm_again = SaveVmState(second->vm);
  ASSERT_TRUE(vm_again) << vm_again.error().message();
  EXPECT_TRUE(SameBytes(saved_vm->pic_master, vm_again->pic_master));
  EXPECT_TRUE(SameBytes(saved_vm->pic_slave, vm_again->pic_slave));
  EXPECT_TRUE(SameBytes(saved_vm->ioapic, vm_again->ioapic));
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(saved_vm->pit.channels[c].count, vm_again->pit.channels[c].count);
    EXPECT_EQ(saved_vm->pit.channels[c].mode, vm_again->pit.channels[c].mode);
  }
  // kvmclock continues from the saved value: not behind it, and less than 10 s ahead.
  EXPECT_GE(vm_again->clock.clock, saved_vm->clock.clock);
  EXPECT_LT(vm_again->clock.clock - saved_vm->clock.clock, 10'000'000'000ull);

  // The restored loop continues: the next port write comes 1024 iterations later.
  ASSERT_NO_FATAL_FAILURE(RunToPortExit(*restored));
  Result<kvm_regs> regs = restored->GetRegs();
  ASSERT_TRUE(regs) << regs.error().message();
  EXPECT_EQ(regs->rbx, saved->regs.rbx + kIterationsPerExit);
  EXPECT_EQ(regs->rip, kOutRip);
}

TEST(kvm_state, Restore_WrongXsaveSize_FailsBeforeTouchingTheVcpu) {
  KITE_REQUIRE_KVM();
  Result<TestVm> first = MakeVm();
  ASSERT_TRUE(first) << first.error().message();
  Result<VcpuFd> vcpu = MakeBootVcpu(*first);
  ASSERT_TRUE(vcpu) << vcpu.error().message();
  Result<VcpuState> saved = SaveVcpuState(*vcpu, first->host, MsrIndices(*first));
  ASSERT_TRUE(saved) << saved.error().message();
  saved->xsave.resize(saved->xsave.size() + 64);

  Result<VcpuFd> fresh = first->vm.CreateVcpu(1);
  ASSERT_TRUE(fresh) << fresh.error().message();
  Result<kvm_regs> before = fresh->GetRegs();
  ASSERT_TRUE(before);
  Result<void> r = RestoreVcpuState(*fresh, *saved, first->host);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("xsave"), std::string::npos) << r.error().message();
  // Nothing was set: no CPUID yet, registers as KVM created them.
  Result<std::vector<kvm_cpuid_entry2>> cpuid = fresh->GetCpuid();
  ASSERT_TRUE(cpuid) << cpuid.error().message();
  EXPECT_TRUE(cpuid->empty());
  Result<kvm_regs> after = fresh->GetRegs();
  ASSERT_TRUE(after);
  EXPECT_TRUE(SameBytes(*before, *after));
}

TEST(kvm_state, Save_ReadsCpuidBackWhenNotGiven) {
  KITE_REQUIRE_KVM();
  Result<TestVm> t = MakeVm();
  ASSERT_TRUE(t) << t.error().message();
  Result<VcpuFd> vcpu = MakeBootVcpu(*t);
  ASSERT_TRUE(vcpu) << vcpu.error().message();
  Result<VcpuState> saved = SaveVcpuState(*vcpu, t->host, {});
  ASSERT_TRUE(saved) << saved.error().message();
  std::vector<kvm_cpuid_entry2> built = BuildVcpuCpuid(t->supported, {0, 1, CpuTemplate::kHost});
  ASSERT_EQ(saved->cpuid.size(), built.size());
  // The same leaves; KVM updates some registers at run time (leaf 0xd.0 EBX: the XSAVE size
  // for XCR0, OSXSAVE, APIC), so only the vendor and hypervisor leaves must match exactly.
  for (const kvm_cpuid_entry2& e : built) {
    const kvm_cpuid_entry2* got = FindCpuid(saved->cpuid, e.function, e.index);
    ASSERT_NE(got, nullptr) << std::hex << e.function << "." << e.index;
    if (e.function == 0 || e.function == 0x40000000) {
      EXPECT_TRUE(SameBytes(*got, e));
    }
  }
  EXPECT_TRUE(CheckCpuidCompatible(saved->cpuid, t->supported));
  EXPECT_EQ(saved->xsave.size(), t->host.xsave_size);
}

TEST(kvm_state, Restore_OtherTscFrequency_ScaledOrMissingCap) {
  KITE_REQUIRE_KVM();
  Result<TestVm> t = MakeVm();
  ASSERT_TRUE(t) << t.error().message();
  Result<VcpuFd> vcpu = MakeBootVcpu(*t);
  ASSERT_TRUE(vcpu) << vcpu.error().message();
  Result<VcpuState> saved = SaveVcpuState(*vcpu, t->host, MsrIndices(*t));
  ASSERT_TRUE(saved) << saved.error().message();
  ASSERT_NE(saved->tsc_khz, 0u);
  saved->tsc_khz = saved->tsc_khz / 2;  // a host at half this one's frequency

  Result<VcpuFd> fresh = t->vm.CreateVcpu(1);
  ASSERT_TRUE(fresh) << fresh.error().message();
  Result<void> r = RestoreVcpuState(*fresh, *saved, t->host);
  if (t->host.tsc_control) {
    ASSERT_TRUE(r) << r.error().message();
    Result<uint32_t> khz = fresh->GetTscKhz();
    ASSERT_TRUE(khz);
    EXPECT_EQ(*khz, saved->tsc_khz);
  } else {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind(), ErrorKind::kKvmMissingCap) << r.error().message();
    std::printf("no KVM_CAP_TSC_CONTROL here: %s\n", r.error().message().c_str());
  }
}

}  // namespace
}  // namespace kite
