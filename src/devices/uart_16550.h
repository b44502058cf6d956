// A 16550A UART (National Semiconductor PC16550D datasheet) as Linux's 8250 driver drives it:
// COM1 at I/O ports 0x3f8-0x3ff, IRQ 4, level-triggered.
//
// Transmission is instantaneous: a THR write goes straight to the SerialSink, so THRE and TEMT
// always read as set. The sink never blocks; bytes it refuses are dropped and counted (G29).
// Received bytes wait in a bounded RX FIFO; the FIFO's depth is larger than the chip's 16
// bytes so that pasted text survives, and with FIFOs disabled (16450 mode) it holds one byte.
// Overflow sets LSR.OE and is counted (R3: memory stays bounded).
//
// The interrupt line follows the PC wiring: it is driven only while MCR.OUT2 is set and
// loopback is off, and IrqLine::SetLevel is called only when the level changes.
//
// Threads: vCPU threads call Read/Write; the console input thread calls QueueInput and
// InputSpace; anyone may call stats(). One mutex guards everything, the sink and the IRQ line
// are called with it held (both are non-blocking).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <vector>

#include "devices/bus.h"
#include "devices/irq_line.h"
#include "devices/serial_sink.h"

namespace kite {

struct UartStats {
  uint64_t tx_bytes = 0;    // bytes the sink took
  uint64_t rx_bytes = 0;    // bytes queued for the guest
  uint64_t dropped_tx = 0;  // bytes the sink refused (slow or stalled consumer)
  uint64_t dropped_rx = 0;  // bytes lost because the RX FIFO was full (overrun)
};

class Uart16550 : public BusDevice, public SerialInput {
 public:
  static constexpr uint64_t kRegisterCount = 8;  // the bus range length
  static constexpr size_t kDefaultRxCapacity = 1024;

  // What a snapshot needs: the registers and the bytes waiting in the RX FIFO.
  struct State {
    uint8_t ier = 0, lcr = 0, mcr = 0, msr = 0, scr = 0, dll = 0x0c, dlm = 0;
    uint8_t lsr_errors = 0;  // sticky LSR error bits (OE), cleared by an LSR read
    bool fifo_enabled = false;
    bool thr_interrupt = false;  // the THRE interrupt is pending
    std::vector<uint8_t> rx_fifo;
  };

  // `sink` and `irq` must outlive the UART. `rx_capacity` (>= 1) bounds the RX FIFO.
  Uart16550(SerialSink* sink, IrqLine* irq, size_t rx_capacity = kDefaultRxCapacity);

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;

  size_t QueueInput(std::span<const uint8_t> bytes) override;
  size_t InputSpace() const override;

  UartStats stats() const;
  State GetState() const;
  // Restores a snapshot; RX bytes beyond the FIFO's capacity are dropped.
  void SetState(const State& state);

 private:
  uint8_t ReadRegister(uint64_t offset);
  void WriteRegister(uint64_t offset, uint8_t value);
  void Transmit(uint8_t byte);
  void WriteIer(uint8_t value);
  void WriteFcr(uint8_t value);
  void WriteMcr(uint8_t value);
  uint8_t ReadIir();
  uint8_t ReadLsr();
  uint8_t ReadMsr();
  // Pushes one byte into the RX FIFO, or records an overrun when it is full.
  bool Receive(uint8_t byte);
  size_t RxCapacityLocked() const;
  // Priority-ordered interrupt identification (IIR bits 0-3): 0x01 when none is pending.
  uint8_t PendingInterruptLocked() const;
  void UpdateIrqLocked();

  SerialSink* const sink_;
  IrqLine* const irq_;
  const size_t rx_capacity_;

  mutable std::mutex mutex_;
  State regs_;  // regs_.rx_fifo is unused: the live FIFO is rx_fifo_
  std::deque<uint8_t> rx_fifo_;
  bool irq_level_ = false;
  UartStats stats_;
};

}  // namespace kite
