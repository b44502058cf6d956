// Exit decoding and dispatch, driven with a hand-filled kvm_run (no /dev/kvm).
#include "vmm/vcpu_exit.h"

#include <gtest/gtest.h>
#include <linux/kvm.h>

#include <cstring>
#include <memory>
#include <vector>

#include "devices/bus.h"

namespace kite {
namespace {

// Records accesses; reads return `fill` bytes.
class RecordingDevice : public BusDevice {
 public:
  struct Access {
    bool write;
    uint64_t offset;
    std::vector<uint8_t> data;
  };
  void Read(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(fill + i);
    accesses.push_back({false, offset, {data.begin(), data.end()}});
  }
  void Write(uint64_t offset, std::span<const uint8_t> data) override {
    accesses.push_back({true, offset, {data.begin(), data.end()}});
  }
  uint8_t fill = 0x40;
  std::vector<Access> accesses;
};

class VcpuExitTest : public ::testing::Test {
 protected:
  static constexpr size_t kRunSize = 8192;
  static constexpr uint64_t kPioDataOffset = 4096;

  void SetUp() override {
    area_.assign(kRunSize, 0);
    ASSERT_TRUE(pio_.Register(0x3f8, 8, uart_));
    ASSERT_TRUE(mmio_.Register(0xd0000000, 0x1000, mmio_dev_));
  }
  kvm_run& run() { return *reinterpret_cast<kvm_run*>(area_.data()); }
  std::span<uint8_t> area() { return area_; }
  uint8_t* pio_data() { return area_.data() + kPioDataOffset; }

  void SetIo(uint8_t direction, uint16_t port, uint8_t size, uint32_t count) {
    run().exit_reason = KVM_EXIT_IO;
    run().io.direction = direction;
    run().io.port = port;
    run().io.size = size;
    run().io.count = count;
    run().io.data_offset = kPioDataOffset;
  }
  void SetMmio(uint64_t addr, uint32_t len, bool write) {
    run().exit_reason = KVM_EXIT_MMIO;
    run().mmio.phys_addr = addr;
    run().mmio.len = len;
    run().mmio.is_write = write ? 1 : 0;
  }
  VcpuExit Dispatch() { return DispatchExit(area(), Buses{&pio_, &mmio_}); }

  std::vector<uint8_t> area_;  // heap storage: aligned for kvm_run
  Bus pio_{"pio"};
  Bus mmio_{"mmio"};
  std::shared_ptr<RecordingDevice> uart_ = std::make_shared<RecordingDevice>();
  std::shared_ptr<RecordingDevice> mmio_dev_ = std::make_shared<RecordingDevice>();
};

TEST_F(VcpuExitTest, IoOut_GoesToPioBusAtOffset) {
  SetIo(KVM_EXIT_IO_OUT, 0x3f9, 1, 1);
  pio_data()[0] = 0x5a;
  VcpuExit e = Dispatch();
  ASSERT_TRUE(std::holds_alternative<exit::IoOut>(e));
  ASSERT_EQ(uart_->accesses.size(), 1u);
  EXPECT_TRUE(uart_->accesses[0].write);
  EXPECT_EQ(uart_->accesses[0].offset, 1u);
  EXPECT_EQ(uart_->accesses[0].data, std::vector<uint8_t>{0x5a});
}

TEST_F(VcpuExitTest, IoIn_DataCopiedBackIntoRun) {
  SetIo(KVM_EXIT_IO_IN, 0x3f8, 2, 1);
  uart_->fill = 0x77;
  VcpuExit e = Dispatch();
  ASSERT_TRUE(std::holds_alternative<exit::IoIn>(e));
  EXPECT_EQ(pio_data()[0], 0x77);
  EXPECT_EQ(pio_data()[1], 0x78);
  ASSERT_EQ(uart_->accesses.size(), 1u);
  EXPECT_EQ(uart_->accesses[0].data.size(), 2u);
}

TEST_F(VcpuExitTest, IoOutString_EachElementIsOneAccess) {
  SetIo(KVM_EXIT_IO_OUT, 0x3f8, 1, 3);
  std::memcpy(pio_data(), "abc", 3);
  (void)Dispatch();
  ASSERT_EQ(uart_->accesses.size(), 3u);
  EXPECT_EQ(uart_->accesses[2].data, std::vector<uint8_t>{'c'});
}

TEST_F(VcpuExitTest, IoIn_UnclaimedPortReadsAllOnes) {
  SetIo(KVM_EXIT_IO_IN, 0x80, 4, 1);
  (void)Dispatch();
  EXPECT_EQ(pio_data()[0], 0xff);
  EXPECT_EQ(pio_data()[3], 0xff);
  EXPECT_EQ(pio_.stats().unclaimed_reads, 1u);
}

TEST_F(VcpuExitTest, Io_DataOffsetOutsideMapping_Unknown) {
  SetIo(KVM_EXIT_IO_OUT, 0x3f8, 4, 1);
  run().io.data_offset = kRunSize - 2;
  VcpuExit e = Dispatch();
  ASSERT_TRUE(std::holds_alternative<exit::Unknown>(e));
  EXPECT_FALSE(std::get<exit::Unknown>(e).why.empty());
  EXPECT_TRUE(uart_->accesses.empty());
}

TEST_F(VcpuExitTest, Io_CountOverflowingMapping_Unknown) {
  SetIo(KVM_EXIT_IO_IN, 0x3f8, 4, 0xffffffff);
  VcpuExit e = Dispatch();
  EXPECT_TRUE(std::holds_alternative<exit::Unknown>(e));
  EXPECT_TRUE(uart_->accesses.empty());
}

TEST_F(VcpuExitTest, Io_BadSize_Unknown) {
  SetIo(KVM_EXIT_IO_OUT, 0x3f8, 3, 1);
  EXPECT_TRUE(std::holds_alternative<exit::Unknown>(Dispatch()));
}

TEST_F(VcpuExitTest, MmioWrite_GoesToMmioBusWithSize) {
  SetMmio(0xd0000070, 4, true);
  std::memcpy(run().mmio.data, "\x01\x02\x03\x04", 4);
  VcpuExit e = Dispatch();
  ASSERT_TRUE(std::holds_alternative<exit::MmioWrite>(e));
  ASSERT_EQ(mmio_dev_->accesses.size(), 1u);
  EXPECT_EQ(mmio_dev_->accesses[0].offset, 0x70u);
  EXPECT_EQ(mmio_dev_->accesses[0].data, (std::vector<uint8_t>{1, 2, 3, 4}));
}

TEST_F(VcpuExitTest, MmioRead_DataCopiedBackIntoRun) {
  SetMmio(0xd0000008, 8, false);
  mmio_dev_->fill = 0x10;
  (void)Dispatch();
  EXPECT_EQ(run().mmio.data[0], 0x10);
  EXPECT_EQ(run().mmio.data[7], 0x17);
}

TEST_F(VcpuExitTest, Mmio_LengthAboveEight_Unknown) {
  SetMmio(0xd0000000, 9, false);
  EXPECT_TRUE(std::holds_alternative<exit::Unknown>(Dispatch()));
  EXPECT_TRUE(mmio_dev_->accesses.empty());
}

TEST_F(VcpuExitTest, G35_Shutdown_Decoded) {
  run().exit_reason = KVM_EXIT_SHUTDOWN;
  VcpuExit e = Dispatch();
  EXPECT_TRUE(std::holds_alternative<exit::Shutdown>(e));
  EXPECT_FALSE(IsHandledIo(e));
  EXPECT_NE(DescribeExit(e).find("triple fault"), std::string::npos);
}

TEST_F(VcpuExitTest, G35_InternalErrorWithInstructionBytes_Decoded) {
  run().exit_reason = KVM_EXIT_INTERNAL_ERROR;
  run().emulation_failure.suberror = KVM_INTERNAL_ERROR_EMULATION;
  run().emulation_failure.ndata = 4;
  run().emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
  run().emulation_failure.insn_size = 2;
  run().emulation_failure.insn_bytes[0] = 0x0f;
  run().emulation_failure.insn_bytes[1] = 0xae;
  VcpuExit e = Dispatch();
  ASSERT_TRUE(std::holds_alternative<exit::InternalError>(e));
  const auto& error = std::get<exit::InternalError>(e);
  EXPECT_EQ(error.suberror, static_cast<uint32_t>(KVM_INTERNAL_ERROR_EMULATION));
  EXPECT_EQ(error.insn, (std::vector<uint8_t>{0x0f, 0xae}));
  EXPECT_NE(DescribeExit(e).find("0f ae"), std::string::npos);
}

TEST_F(VcpuExitTest, G35_InternalErrorWithoutBytesFlag_NoBytes) {
  run().exit_reason = KVM_EXIT_INTERNAL_ERROR;
  run().emulation_failure.suberror = KVM_INTERNAL_ERROR_EMULATION;
  run().emulation_failure.ndata = 3;
  run().emulation_failure.flags = 0;
  run().emulation_failure.insn_size = 2;
  VcpuExit e = Dispatch();
  EXPECT_TRUE(std::get<exit::InternalError>(e).insn.empty());
}

TEST_F(VcpuExitTest, G35_InternalErrorHugeNdata_Clamped) {
  run().exit_reason = KVM_EXIT_INTERNAL_ERROR;
  run().internal.suberror = KVM_INTERNAL_ERROR_SIMUL_EX;
  run().internal.ndata = 0xffffffff;
  VcpuExit e = Dispatch();
  EXPECT_EQ(std::get<exit::InternalError>(e).data.size(), 16u);
}

TEST_F(VcpuExitTest, G35_FailEntry_Decoded) {
  run().exit_reason = KVM_EXIT_FAIL_ENTRY;
  run().fail_entry.hardware_entry_failure_reason = 0x21;
  run().fail_entry.cpu = 1;
  VcpuExit e = Dispatch();
  ASSERT_TRUE(std::holds_alternative<exit::FailEntry>(e));
  EXPECT_EQ(std::get<exit::FailEntry>(e).hardware_reason, 0x21u);
  EXPECT_NE(DescribeExit(e).find("0x21"), std::string::npos);
}

TEST_F(VcpuExitTest, G35_UnknownReason_Decoded) {
  run().exit_reason = 0x1234;
  VcpuExit e = Dispatch();
  ASSERT_TRUE(std::holds_alternative<exit::Unknown>(e));
  EXPECT_EQ(std::get<exit::Unknown>(e).reason, 0x1234u);
  EXPECT_STREQ(ExitName(e), "unknown");
}

TEST_F(VcpuExitTest, SystemEvent_TypeDecoded) {
  run().exit_reason = KVM_EXIT_SYSTEM_EVENT;
  run().system_event.type = KVM_SYSTEM_EVENT_RESET;
  VcpuExit e = Dispatch();
  EXPECT_EQ(std::get<exit::SystemEvent>(e).type, static_cast<uint32_t>(KVM_SYSTEM_EVENT_RESET));
}

TEST_F(VcpuExitTest, Intr_Interrupted) {
  run().exit_reason = KVM_EXIT_INTR;
  EXPECT_TRUE(std::holds_alternative<exit::Interrupted>(Dispatch()));
}

TEST(VcpuExitDecode, AreaSmallerThanKvmRun_Unknown) {
  std::vector<uint8_t> small(16, 0);
  EXPECT_TRUE(std::holds_alternative<exit::Unknown>(DecodeExit(small)));
}

TEST(VcpuExitDecode, FormatBytes_SpaceSeparatedHex) {
  const uint8_t bytes[] = {0xcc, 0x0f, 0x1f};
  EXPECT_EQ(FormatBytes(bytes), "cc 0f 1f");
}

}  // namespace
}  // namespace kite
