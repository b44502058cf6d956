// Uart16550: the register catalogue as Linux's 8250 driver uses it, and the guest and host
// floods of BAD_INPUTS.md G29, G30 and R3.
#include "devices/uart_16550.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "testing/fake_irq_line.h"
#include "testing/fake_serial_sink.h"

namespace kite {
namespace {

constexpr uint64_t kRbr = 0, kThr = 0, kDll = 0, kIer = 1, kDlm = 1, kIir = 2, kFcr = 2, kLcr = 3,
                   kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint8_t kOut2 = 0x08, kLoop = 0x10;

class UartTest : public ::testing::Test {
 protected:
  uint8_t In(uint64_t offset) {
    uint8_t value = 0xaa;
    uart_.Read(offset, std::span(&value, 1));
    return value;
  }
  void Out(uint64_t offset, uint8_t value) { uart_.Write(offset, std::span(&value, 1)); }
  void Queue(const std::string& s) {
    uart_.QueueInput(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }

  testing::FakeSerialSink sink_;
  testing::FakeIrqLine irq_;
  Uart16550 uart_{&sink_, &irq_, /*rx_capacity=*/64};
};

TEST_F(UartTest, Thr_Write_ReachesSink) {
  for (char c : std::string("hi\n")) Out(kThr, static_cast<uint8_t>(c));
  EXPECT_EQ(sink_.output(), "hi\n");
  EXPECT_EQ(uart_.stats().tx_bytes, 3u);
}

TEST_F(UartTest, Dlab_DivisorLatchSeparateFromThrAndIer) {
  Out(kLcr, 0x80);
  Out(kDll, 0x01);
  Out(kDlm, 0x02);
  EXPECT_EQ(In(kDll), 0x01);
  EXPECT_EQ(In(kDlm), 0x02);
  Out(kLcr, 0x03);  // 8N1, DLAB off
  EXPECT_EQ(In(kIer), 0x00);
  EXPECT_EQ(sink_.output(), "");  // the DLL write was not transmitted
  Out(kLcr, 0x83);
  EXPECT_EQ(In(kDll), 0x01);
  EXPECT_EQ(In(kLcr), 0x83);
}

TEST_F(UartTest, Scratch_ReadsBack) {
  Out(kScr, 0x5a);
  EXPECT_EQ(In(kScr), 0x5a);
}

TEST_F(UartTest, Ier_OnlyLowNibbleStored) {
  Out(kIer, 0xff);
  EXPECT_EQ(In(kIer), 0x0f);
}

TEST_F(UartTest, Lsr_IdleTransmitterEmptyNoData) {
  EXPECT_EQ(In(kLsr), 0x60);  // THRE | TEMT
}

TEST_F(UartTest, Iir_FifoEnableBitsFollowFcr) {
  EXPECT_EQ(In(kIir), 0x01);
  Out(kFcr, 0x01);
  EXPECT_EQ(In(kIir) & 0xc0, 0xc0);  // Linux detects a 16550A this way
  Out(kFcr, 0x00);
  EXPECT_EQ(In(kIir) & 0xc0, 0x00);
}

TEST_F(UartTest, Thre_InterruptOnIerEnable) {
  Out(kMcr, kOut2);
  EXPECT_FALSE(irq_.level());
  Out(kIer, 0x02);
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(In(kIir), 0x02);
  // Reading IIR that reports THRE clears it.
  EXPECT_FALSE(irq_.level());
  EXPECT_EQ(In(kIir), 0x01);
}

TEST_F(UartTest, Thre_RaisedAgainAfterEachWrite) {
  Out(kMcr, kOut2);
  Out(kIer, 0x02);
  EXPECT_EQ(In(kIir), 0x02);
  Out(kThr, 'x');
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(In(kIir), 0x02);
}

TEST_F(UartTest, Rx_DataInterruptAndRead) {
  Out(kFcr, 0x01);
  Out(kMcr, kOut2);
  Out(kIer, 0x01);
  Queue("ab");
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(In(kIir), 0xc4);
  EXPECT_EQ(In(kLsr) & 0x01, 0x01);
  EXPECT_EQ(In(kRbr), 'a');
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(In(kRbr), 'b');
  EXPECT_FALSE(irq_.level());
  EXPECT_EQ(In(kLsr) & 0x01, 0x00);
  EXPECT_EQ(In(kRbr), 0x00);  // reading an empty RBR is harmless
}

TEST_F(UartTest, Iir_PriorityLineStatusThenDataThenThreThenModem) {
  Out(kFcr, 0x01);
  Out(kMcr, kOut2 | kLoop);         // loopback, to raise modem-status deltas and overrun
  Out(kMcr, kOut2 | kLoop | 0x03);  // DTR, RTS toggled: DDSR, DCTS
  for (int i = 0; i < 65; ++i) Out(kThr, 'z');  // one more than the FIFO holds: overrun
  Out(kMcr, kOut2);  // leave loopback (gate the IRQ open again), deltas stay
  Out(kIer, 0x0f);
  EXPECT_EQ(In(kIir) & 0x0f, 0x06);  // line status
  EXPECT_EQ(In(kLsr) & 0x02, 0x02);  // OE, cleared by this read
  EXPECT_EQ(In(kIir) & 0x0f, 0x04);  // received data
  Out(kFcr, 0x03);                   // clear the RX FIFO
  EXPECT_EQ(In(kIir) & 0x0f, 0x02);  // THR empty (cleared by this read)
  EXPECT_EQ(In(kIir) & 0x0f, 0x00);  // modem status
  EXPECT_NE(In(kMsr) & 0x0f, 0);     // reading MSR clears the deltas
  EXPECT_EQ(In(kIir) & 0x0f, 0x01);
}

TEST_F(UartTest, Loopback_TransmitReceivedNotSent) {
  Out(kMcr, kLoop);
  Out(kThr, 'q');
  EXPECT_EQ(sink_.output(), "");
  EXPECT_EQ(In(kLsr) & 0x01, 0x01);
  EXPECT_EQ(In(kRbr), 'q');
}

TEST_F(UartTest, Loopback_ModemLinesFollowMcr) {
  // Linux's autoconfig: MCR = LOOP | OUT2 | RTS must read MSR high nibble 0x90.
  Out(kMcr, kLoop | kOut2 | 0x02);
  EXPECT_EQ(In(kMsr) & 0xf0, 0x90);
  Out(kMcr, kLoop | 0x01 | 0x04);  // DTR -> DSR, OUT1 -> RI
  EXPECT_EQ(In(kMsr) & 0xf0, 0x60);
}

TEST_F(UartTest, Msr_NoLoopback_CarrierAndClearToSend) {
  EXPECT_EQ(In(kMsr), 0xb0);
}

TEST_F(UartTest, Irq_GatedByOut2) {
  Out(kIer, 0x02);
  EXPECT_FALSE(irq_.level());
  EXPECT_EQ(irq_.set_level_calls(), 0u);
  Out(kMcr, kOut2);
  EXPECT_TRUE(irq_.level());
  Out(kMcr, 0);
  EXPECT_FALSE(irq_.level());
}

TEST_F(UartTest, Irq_GatedOffInLoopback) {
  Out(kIer, 0x01);
  Out(kMcr, kOut2 | kLoop);
  Out(kThr, 'x');
  EXPECT_FALSE(irq_.level());
  EXPECT_EQ(In(kIir), 0x04);  // the interrupt is still identified
}

TEST_F(UartTest, Fifo_ClearRxEmptiesIt) {
  Out(kFcr, 0x01);
  Queue("abc");
  Out(kFcr, 0x03);
  EXPECT_EQ(In(kLsr) & 0x01, 0);
  EXPECT_EQ(uart_.InputSpace(), 64u);
}

TEST_F(UartTest, Fifo_Disabled_HoldsOneByteThenOverruns) {
  Queue("ab");
  EXPECT_EQ(uart_.stats().rx_bytes, 1u);
  EXPECT_EQ(uart_.stats().dropped_rx, 1u);
  EXPECT_EQ(In(kLsr) & 0x03, 0x03);  // DR | OE
  EXPECT_EQ(In(kLsr) & 0x02, 0x00);  // OE cleared by the read
  EXPECT_EQ(In(kRbr), 'a');
}

TEST_F(UartTest, Overrun_RaisesLineStatusInterrupt) {
  Out(kMcr, kOut2);
  Out(kIer, 0x04);
  Out(kFcr, 0x01);
  Queue(std::string(65, 'x'));
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(In(kIir) & 0x0f, 0x06);
  In(kLsr);
  EXPECT_FALSE(irq_.level());
}

TEST_F(UartTest, G30_WideRead_LowByteIsRegisterRestZero) {
  Out(kScr, 0x42);
  uint8_t data[4] = {0xaa, 0xaa, 0xaa, 0xaa};
  uart_.Read(kLsr, std::span(data, 2));
  EXPECT_EQ(data[0], 0x60);
  EXPECT_EQ(data[1], 0x00);
  uart_.Read(kMcr, data);  // 4 bytes at offset 4: only MCR is read (MSR deltas untouched)
  EXPECT_EQ(data[0], 0x00);
  EXPECT_EQ(data[3], 0x00);
}

TEST_F(UartTest, G30_WideWrite_OnlyLowByteUsed) {
  uint8_t data[4] = {'k', 'x', 'y', 'z'};
  uart_.Write(kThr, data);
  EXPECT_EQ(sink_.output(), "k");
  uart_.Write(kIer, std::span<const uint8_t>(data, 2));  // 'k' & 0x0f
  EXPECT_EQ(In(kIer), 'k' & 0x0f);
}

TEST_F(UartTest, G30_IerToggleStorm_IrqTouchedOnlyOnChanges) {
  Out(kMcr, kOut2);
  for (int i = 0; i < 1000; ++i) {
    Out(kIer, 0x02);
    Out(kIer, 0x02);  // no change: no second edge
    Out(kIer, 0x00);
  }
  EXPECT_EQ(irq_.set_level_calls(), 2000u);
  EXPECT_FALSE(irq_.level());
}

TEST_F(UartTest, G29_StalledSink_WritesNeverBlockAndDropsCounted) {
  sink_.SetBudget(10);
  for (int i = 0; i < 100000; ++i) Out(kThr, 'a');
  EXPECT_EQ(sink_.output().size(), 10u);
  EXPECT_EQ(uart_.stats().tx_bytes, 10u);
  EXPECT_EQ(uart_.stats().dropped_tx, 99990u);
  EXPECT_EQ(In(kLsr) & 0x60, 0x60);  // the transmitter still looks idle to the guest
}

TEST_F(UartTest, R3_InputFlood_BoundedAndCounted) {
  Out(kFcr, 0x01);
  std::vector<uint8_t> chunk(4096, 'm');
  size_t accepted = 0;
  for (int i = 0; i < 256; ++i) accepted += uart_.QueueInput(chunk);  // 1 MiB
  EXPECT_EQ(accepted, 64u);
  EXPECT_EQ(uart_.stats().rx_bytes, 64u);
  EXPECT_EQ(uart_.stats().dropped_rx, 256u * 4096 - 64);
  EXPECT_EQ(uart_.InputSpace(), 0u);
  int read = 0;
  while (In(kLsr) & 0x01) {
    In(kRbr);
    ++read;
  }
  EXPECT_EQ(read, 64);
}

TEST_F(UartTest, InputSpace_ReflectsFifoMode) {
  EXPECT_EQ(uart_.InputSpace(), 1u);
  Out(kFcr, 0x01);
  EXPECT_EQ(uart_.InputSpace(), 64u);
  Queue("abcd");
  EXPECT_EQ(uart_.InputSpace(), 60u);
}

TEST_F(UartTest, State_RoundTrip) {
  Out(kLcr, 0x83);
  Out(kDll, 0x03);
  Out(kLcr, 0x03);
  Out(kScr, 0x77);
  Out(kMcr, kOut2 | 0x03);
  Out(kFcr, 0x01);
  Out(kIer, 0x01);
  Queue("pending");
  testing::FakeSerialSink sink2;
  testing::FakeIrqLine irq2;
  Uart16550 restored(&sink2, &irq2);
  restored.SetState(uart_.GetState());
  uint8_t v = 0;
  restored.Read(kScr, std::span(&v, 1));
  EXPECT_EQ(v, 0x77);
  restored.Read(kIer, std::span(&v, 1));
  EXPECT_EQ(v, 0x01);
  restored.Read(kIir, std::span(&v, 1));
  EXPECT_EQ(v, 0xc4);
  EXPECT_TRUE(irq2.level());  // OUT2 set and data waiting: the line comes back up
  std::string received;
  for (int i = 0; i < 7; ++i) {
    restored.Read(kRbr, std::span(&v, 1));
    received += static_cast<char>(v);
  }
  EXPECT_EQ(received, "pending");
  restored.Read(kLcr, std::span(&v, 1));
  EXPECT_EQ(v, 0x03);
}

}  // namespace
}  // namespace kite

namespace kite {
namespace {

// G30: random registers, sizes and values, interleaved with host input. Nothing crashes, the
// RX FIFO stays within its bound, and the IRQ line only ever sees real level changes.
TEST(UartStormTest, G30_RandomAccesses_BoundedAndIrqOnlyOnChanges) {
  testing::FakeSerialSink sink;
  testing::FakeIrqLine irq;
  Uart16550 uart(&sink, &irq, 32);
  uint32_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 1103515245 + 12345;
    return seed >> 8;
  };
  uint8_t data[4];
  for (int i = 0; i < 200000; ++i) {
    uint32_t r = next();
    uint64_t offset = r % 8;
    size_t size = size_t{1} << ((r >> 3) % 3);
    if (offset + size > 8) size = 1;
    for (auto& b : data) b = static_cast<uint8_t>(next());
    switch ((r >> 5) % 4) {
      case 0:
      case 1:
        uart.Write(offset, std::span<const uint8_t>(data, size));
        break;
      case 2:
        uart.Read(offset, std::span(data, size));
        break;
      case 3:
        uart.QueueInput(std::span<const uint8_t>(data, size));
        break;
    }
    ASSERT_LE(32 - uart.InputSpace(), 32u);
  }
  std::vector<bool> levels = irq.levels();
  EXPECT_FALSE(levels.empty());
  for (size_t i = 0; i < levels.size(); ++i) {
    bool previous = i == 0 ? false : levels[i - 1];
    ASSERT_NE(levels[i], previous) << "redundant SetLevel at change " << i;
  }
}

}  // namespace
}  // namespace kite

namespace kite {
namespace {

// The console thread queues input with back-pressure (InputSpace) while a vCPU thread drains
// RBR: every byte arrives once, in order, and nothing is dropped.
TEST(UartConcurrencyTest, InputWithBackPressure_NoLossInOrder) {
  testing::FakeSerialSink sink;
  testing::FakeIrqLine irq;
  Uart16550 uart(&sink, &irq, 16);
  uint8_t fcr = 0x01;
  uart.Write(2, std::span<const uint8_t>(&fcr, 1));
  constexpr size_t kTotal = 50000;
  std::thread host([&] {
    size_t sent = 0;
    while (sent < kTotal) {
      size_t n = std::min(uart.InputSpace(), kTotal - sent);
      std::vector<uint8_t> chunk(n);
      for (size_t i = 0; i < n; ++i) chunk[i] = static_cast<uint8_t>((sent + i) * 7);
      sent += uart.QueueInput(chunk);
      if (n == 0) std::this_thread::yield();
    }
  });
  size_t received = 0;
  bool in_order = true;
  while (received < kTotal) {
    uint8_t lsr = 0;
    uart.Read(5, std::span(&lsr, 1));
    if (!(lsr & 0x01)) {
      std::this_thread::yield();
      continue;
    }
    uint8_t byte = 0;
    uart.Read(0, std::span(&byte, 1));
    in_order = in_order && byte == static_cast<uint8_t>(received * 7);
    ++received;
  }
  host.join();
  EXPECT_TRUE(in_order);
  EXPECT_EQ(uart.stats().rx_bytes, kTotal);
  EXPECT_EQ(uart.stats().dropped_rx, 0u);
}

}  // namespace
}  // namespace kite
