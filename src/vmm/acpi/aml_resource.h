// AML resource descriptors for _CRS (ACPI 6.5 §6.4, "Resource Data Types for ACPI"): the
// few kinds kite's devices need, and ResourceTemplate(), which closes them with an End Tag
// and wraps them in a Buffer object, as ASL's ResourceTemplate () does.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/acpi/aml.h"

namespace kite::acpi::aml {

// I/O port descriptor (§6.4.2.5), 16-bit decode: IO (Decode16, min, max, align, length).
Bytes IoPort(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);

// IRQ descriptor without flags (§6.4.2.1): IRQNoFlags () {irq}, edge, active high. The mask
// holds ISA IRQs 0-15 only: irq >= 16 gives an empty mask (use Interrupt() for GSIs).
Bytes IrqNoFlags(uint8_t irq);

// 32-bit fixed memory range (§6.4.3.4): Memory32Fixed (ReadWrite|ReadOnly, base, length).
Bytes Memory32Fixed(bool read_write, uint32_t base, uint32_t length);

// Extended interrupt descriptor (§6.4.3.6):
// Interrupt (ResourceConsumer, Edge|Level, ActiveHigh|ActiveLow, Exclusive|Shared) {gsi}.
struct InterruptFlags {
  bool consumer = true;
  bool edge = true;
  bool active_low = false;
  bool shared = false;
};
Bytes Interrupt(InterruptFlags flags, uint32_t gsi);

// Address space descriptors (§6.4.3.5) for a bridge's windows: produced (ResourceProducer),
// positive decode, minimum and maximum fixed, no translation, granularity 0.
//   WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, first, last, 0, n)
Bytes WordBusNumber(uint16_t first, uint16_t last);
//   DWordMemory / QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
//   ReadWrite, 0, base, base + length - 1, 0, length). `length` > 0.
Bytes DWordMemory(uint32_t base, uint32_t length);
Bytes QWordMemory(uint64_t base, uint64_t length);

// Buffer { descriptors..., EndTag } (the End Tag's checksum byte 0 = "no checksum").
Bytes ResourceTemplate(const std::vector<Bytes>& descriptors);

}  // namespace kite::acpi::aml
