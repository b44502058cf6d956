// IrqLine: how a device raises its interrupt. The VMM implements it on the in-kernel irqchip
// (KVM_IRQ_LINE, or an irqfd for devices on the event loop); tests use a fake that records
// every change. Safe to call from any thread.
#pragma once

#include <cstdint>

namespace kite {

class IrqLine {
 public:
  virtual ~IrqLine() = default;
  // Level-triggered lines (the UART's IRQ 4): asserted while the device wants service.
  virtual void SetLevel(bool asserted) = 0;
  // Edge-triggered lines: one interrupt.
  virtual void Pulse() {
    SetLevel(true);
    SetLevel(false);
  }
};

}  // namespace kite
