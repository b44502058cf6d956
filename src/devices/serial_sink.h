// The two host-facing edges of a serial port, kept apart from the UART so that the UART can be
// tested without a terminal and the console without a UART.
//
//   SerialSink  where transmitted bytes go (stdout, a file, nowhere, a test buffer). Called on
//               vCPU threads with the UART's lock held: it must never block.
//   SerialInput where received bytes come in (the UART's RX FIFO). Called by the console's
//               input thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace kite {

class SerialSink {
 public:
  virtual ~SerialSink() = default;
  // Takes as many of `bytes` as it can without blocking and returns how many it took; the
  // caller counts the rest as dropped (BAD_INPUTS.md G29).
  virtual size_t Write(std::span<const uint8_t> bytes) = 0;
};

// A sink that discards everything (`--serial none`). Discarded bytes are not "dropped": the
// user asked for no output.
class NullSerialSink : public SerialSink {
 public:
  size_t Write(std::span<const uint8_t> bytes) override { return bytes.size(); }
};

class SerialInput {
 public:
  virtual ~SerialInput() = default;
  // Queues received bytes; returns how many fit. Bytes that did not fit are counted as
  // dropped by the receiver.
  virtual size_t QueueInput(std::span<const uint8_t> bytes) = 0;
  // How many bytes QueueInput() would accept now (lets the producer apply back-pressure
  // instead of dropping).
  virtual size_t InputSpace() const = 0;
};

}  // namespace kite
