// 16550A UART: register file, FIFOs and interrupt logic. See uart_16550.h for the model and the
// thread rules; section numbers refer to the PC16550D datasheet.
#include "devices/uart_16550.h"

#include <algorithm>

#include "base/log.h"

namespace kite {
namespace {

// Register offsets (Table II). With LCR.DLAB set, offsets 0 and 1 are the divisor latch.
constexpr uint64_t kRbrThr = 0;  // receiver buffer (read) / transmitter holding (write); DLL
constexpr uint64_t kIer = 1;     // interrupt enable; DLM
constexpr uint64_t kIirFcr = 2;  // interrupt identification (read) / FIFO control (write)
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

// IER bits.
constexpr uint8_t kIerRda = 0x01;   // received data available
constexpr uint8_t kIerThre = 0x02;  // transmitter holding register empty
constexpr uint8_t kIerRls = 0x04;   // receiver line status
constexpr uint8_t kIerMs = 0x08;    // modem status
constexpr uint8_t kIerMask = 0x0f;

// IIR values: bit 0 clear means "interrupt pending"; bits 6-7 mirror FCR.0 (FIFOs enabled).
constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirRls = 0x06;
constexpr uint8_t kIirRda = 0x04;
constexpr uint8_t kIirThre = 0x02;
constexpr uint8_t kIirMs = 0x00;
constexpr uint8_t kIirFifoEnabled = 0xc0;

// FCR bits.
constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;
constexpr uint8_t kFcrClearTx = 0x04;

constexpr uint8_t kLcrDlab = 0x80;

// MCR bits.
constexpr uint8_t kMcrDtr = 0x01;
constexpr uint8_t kMcrRts = 0x02;
constexpr uint8_t kMcrOut1 = 0x04;
constexpr uint8_t kMcrOut2 = 0x08;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMcrMask = 0x1f;

// LSR bits.
constexpr uint8_t kLsrDr = 0x01;
constexpr uint8_t kLsrOe = 0x02;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;
constexpr uint8_t kLsrErrorBits = 0x1e;  // OE, PE, FE, BI: the receiver-line-status sources

// MSR bits: current inputs in the high nibble, change ("delta") flags in the low nibble.
constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;
constexpr uint8_t kMsrDcts = 0x01;
constexpr uint8_t kMsrDdsr = 0x02;
constexpr uint8_t kMsrTeri = 0x04;
constexpr uint8_t kMsrDdcd = 0x08;
constexpr uint8_t kMsrDeltas = 0x0f;
// Outside loopback the port looks like a cable with carrier, data-set-ready and clear-to-send.
constexpr uint8_t kMsrIdleInputs = kMsrDcd | kMsrDsr | kMsrCts;

// The modem inputs MCR produces in loopback (section 8.6: DTR->DSR, RTS->CTS, OUT1->RI,
// OUT2->DCD), or the fixed idle inputs otherwise.
uint8_t ModemInputs(uint8_t mcr) {
  if (!(mcr & kMcrLoop)) return kMsrIdleInputs;
  uint8_t in = 0;
  if (mcr & kMcrDtr) in |= kMsrDsr;
  if (mcr & kMcrRts) in |= kMsrCts;
  if (mcr & kMcrOut1) in |= kMsrRi;
  if (mcr & kMcrOut2) in |= kMsrDcd;
  return in;
}

// Delta flags for a change of modem inputs from `before` to `after`. TERI is set only on the
// trailing edge of RI.
uint8_t ModemDeltas(uint8_t before, uint8_t after) {
  uint8_t changed = before ^ after;
  uint8_t deltas = 0;
  if (changed & kMsrCts) deltas |= kMsrDcts;
  if (changed & kMsrDsr) deltas |= kMsrDdsr;
  if ((before & kMsrRi) && !(after & kMsrRi)) deltas |= kMsrTeri;
  if (changed & kMsrDcd) deltas |= kMsrDdcd;
  return deltas;
}

}  // namespace

Uart16550::Uart16550(SerialSink* sink, IrqLine* irq, size_t rx_capacity)
    : sink_(sink), irq_(irq), rx_capacity_(std::max<size_t>(rx_capacity, 1)) {
  regs_.msr = kMsrIdleInputs;
}

// G30: a 2- or 4-byte access is defined as a 1-byte access to its first register; the upper
// bytes of a read are zero and those of a write are ignored.
void Uart16550::Read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  std::fill(data.begin(), data.end(), 0);
  std::lock_guard lock(mutex_);
  data[0] = ReadRegister(offset);
  UpdateIrqLocked();
}

void Uart16550::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mutex_);
  WriteRegister(offset, data[0]);
  UpdateIrqLocked();
}

uint8_t Uart16550::ReadRegister(uint64_t offset) {
  bool dlab = regs_.lcr & kLcrDlab;
  switch (offset) {
    case kRbrThr: {
      if (dlab) return regs_.dll;
      if (rx_fifo_.empty()) return 0;
      uint8_t byte = rx_fifo_.front();
      rx_fifo_.pop_front();
      return byte;
    }
    case kIer:
      return dlab ? regs_.dlm : regs_.ier;
    case kIirFcr:
      return ReadIir();
    case kLcr:
      return regs_.lcr;
    case kMcr:
      return regs_.mcr;
    case kLsr:
      return ReadLsr();
    case kMsr:
      return ReadMsr();
    case kScr:
      return regs_.scr;
    default:
      return 0xff;  // not reachable through a bus range of kRegisterCount bytes
  }
}

void Uart16550::WriteRegister(uint64_t offset, uint8_t value) {
  bool dlab = regs_.lcr & kLcrDlab;
  switch (offset) {
    case kRbrThr:
      if (dlab) {
        regs_.dll = value;
      } else {
        Transmit(value);
      }
      break;
    case kIer:
      if (dlab) {
        regs_.dlm = value;
      } else {
        WriteIer(value);
      }
      break;
    case kIirFcr:
      WriteFcr(value);
      break;
    case kLcr:
      regs_.lcr = value;
      break;
    case kMcr:
      WriteMcr(value);
      break;
    case kScr:
      regs_.scr = value;
      break;
    default:
      break;  // LSR and MSR are read-only (factory-test writes are ignored)
  }
}

void Uart16550::Transmit(uint8_t byte) {
  if (regs_.mcr & kMcrLoop) {
    // Loopback (section 8.6): the transmitter feeds the receiver; nothing leaves the chip.
    Receive(byte);
  } else if (sink_->Write(std::span(&byte, 1)) == 1) {
    ++stats_.tx_bytes;
  } else {
    ++stats_.dropped_tx;
    KITE_LOG_RATELIMITED(Debug, "uart: output consumer is slow, dropped %llu bytes so far",
                         static_cast<unsigned long long>(stats_.dropped_tx));
  }
  // The byte left the holding register at once: THR is empty again, which raises THRE.
  regs_.thr_interrupt = (regs_.ier & kIerThre) != 0;
}

void Uart16550::WriteIer(uint8_t value) {
  uint8_t before = regs_.ier;
  regs_.ier = value & kIerMask;
  // Enabling the THRE interrupt while THR is empty (always, here) raises it at once; Linux's
  // 8250 driver relies on this to start transmission.
  if (!(before & kIerThre) && (regs_.ier & kIerThre)) regs_.thr_interrupt = true;
  if (!(regs_.ier & kIerThre)) regs_.thr_interrupt = false;
}

void Uart16550::WriteFcr(uint8_t value) {
  bool enable = value & kFcrEnable;
  // Changing FCR.0 clears both FIFOs (section 8.4); so do the explicit clear bits. The TX
  // FIFO is always empty here; clearing it re-arms THRE, as an emptied FIFO would.
  if (enable != regs_.fifo_enabled || (value & kFcrClearRx)) rx_fifo_.clear();
  if ((value & kFcrClearTx) && (regs_.ier & kIerThre)) regs_.thr_interrupt = true;
  regs_.fifo_enabled = enable;
  // Trigger levels (bits 6-7) are accepted and ignored: an RX interrupt is raised as soon as
  // one byte is waiting, as if every read were a character timeout.
}

void Uart16550::WriteMcr(uint8_t value) {
  uint8_t before = ModemInputs(regs_.mcr);
  regs_.mcr = value & kMcrMask;
  uint8_t after = ModemInputs(regs_.mcr);
  regs_.msr = static_cast<uint8_t>(after | (regs_.msr & kMsrDeltas) | ModemDeltas(before, after));
}

uint8_t Uart16550::ReadIir() {
  uint8_t id = PendingInterruptLocked();
  // Reading IIR while it reports THRE clears that interrupt (Table IV).
  if (id == kIirThre) regs_.thr_interrupt = false;
  return static_cast<uint8_t>(id | (regs_.fifo_enabled ? kIirFifoEnabled : 0));
}

uint8_t Uart16550::ReadLsr() {
  uint8_t lsr = kLsrThre | kLsrTemt | regs_.lsr_errors;
  if (!rx_fifo_.empty()) lsr |= kLsrDr;
  regs_.lsr_errors = 0;  // error bits clear on read
  return lsr;
}

uint8_t Uart16550::ReadMsr() {
  uint8_t msr = regs_.msr;
  regs_.msr &= static_cast<uint8_t>(~kMsrDeltas);
  return msr;
}

bool Uart16550::Receive(uint8_t byte) {
  if (rx_fifo_.size() >= RxCapacityLocked()) {
    regs_.lsr_errors |= kLsrOe;
    ++stats_.dropped_rx;
    return false;
  }
  rx_fifo_.push_back(byte);
  ++stats_.rx_bytes;
  return true;
}

size_t Uart16550::RxCapacityLocked() const {
  return regs_.fifo_enabled ? rx_capacity_ : 1;
}

size_t Uart16550::QueueInput(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  size_t accepted = 0;
  for (uint8_t byte : bytes) {
    if (Receive(byte)) ++accepted;
  }
  if (accepted != bytes.size()) {
    KITE_LOG_RATELIMITED(Debug, "uart: RX FIFO full, dropped %zu input bytes",
                         bytes.size() - accepted);
  }
  UpdateIrqLocked();
  return accepted;
}

size_t Uart16550::InputSpace() const {
  std::lock_guard lock(mutex_);
  return RxCapacityLocked() - std::min(rx_fifo_.size(), RxCapacityLocked());
}

uint8_t Uart16550::PendingInterruptLocked() const {
  if ((regs_.ier & kIerRls) && (regs_.lsr_errors & kLsrErrorBits)) return kIirRls;
  if ((regs_.ier & kIerRda) && !rx_fifo_.empty()) return kIirRda;
  if ((regs_.ier & kIerThre) && regs_.thr_interrupt) return kIirThre;
  if ((regs_.ier & kIerMs) && (regs_.msr & kMsrDeltas)) return kIirMs;
  return kIirNone;
}

void Uart16550::UpdateIrqLocked() {
  // On a PC the UART's interrupt output reaches the PIC only through the OUT2-controlled gate;
  // in loopback the OUT2 pin is forced inactive, so the line is quiet (section 8.6).
  bool gate = (regs_.mcr & kMcrOut2) && !(regs_.mcr & kMcrLoop);
  bool level = gate && PendingInterruptLocked() != kIirNone;
  if (level == irq_level_) return;
  irq_level_ = level;
  irq_->SetLevel(level);
}

UartStats Uart16550::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

Uart16550::State Uart16550::GetState() const {
  std::lock_guard lock(mutex_);
  State state = regs_;
  state.rx_fifo.assign(rx_fifo_.begin(), rx_fifo_.end());
  return state;
}

void Uart16550::SetState(const State& state) {
  std::lock_guard lock(mutex_);
  regs_ = state;
  regs_.rx_fifo.clear();
  regs_.ier &= kIerMask;
  regs_.mcr &= kMcrMask;
  size_t keep = std::min(state.rx_fifo.size(), RxCapacityLocked());
  rx_fifo_.assign(state.rx_fifo.begin(), state.rx_fifo.begin() + static_cast<ptrdiff_t>(keep));
  UpdateIrqLocked();
}

}  // namespace kite
