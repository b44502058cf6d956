// A small AML (ACPI Machine Language) builder: the bytes of DSDT objects, built as nested
// byte vectors, following ACPI 6.5 chapter 20 ("ACPI Machine Language Specification").
//
//   Bytes com1 = aml::Device("COM1", {aml::Name("_HID", aml::EisaId(aml::EisaIdValue("PNP0501"))),
//                                     aml::Name("_UID", aml::Integer(0))});
//
// Names are checked when the program is compiled: a NameString built from a literal is
// consteval, so "TOOLONG" or "1ABC" does not compile. Names made at run time (one per CPU or
// device slot) come from IndexedName() or NameString::Parse(), which return an Error.
// Everything here is VMM-built (no guest input) and sizes are bounded by the table builders'
// limits, so the remaining misuses — a package beyond AML's 2^28-byte limit or 255 elements,
// Local8, Arg7, a method with 8 arguments, a multi-segment field name — are invariant
// violations: logged, then abort, not Errors.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "vmm/acpi/aml_name.h"

namespace kite::acpi::aml {

using Bytes = std::vector<uint8_t>;

// "<prefix><3 hex digits>", e.g. IndexedName('V', 10) = "V00A". Fails for index > 0xfff.
Result<NameString> IndexedName(char prefix, uint32_t index);

// PkgLength (§20.2.4) for a package whose contents (after the PkgLength) are `content_len`
// bytes: 1 to 4 bytes, the smallest that fits. nullopt beyond 2^28 - 1 bytes in total.
std::optional<Bytes> EncodePkgLength(size_t content_len);

// Data objects.
Bytes Integer(uint64_t value);  // ZeroOp, OneOp, OnesOp or the smallest Byte/Word/DWord/QWord
Result<Bytes> String(std::string_view s);  // ASCII 0x01-0x7f only
Bytes Buffer(std::span<const uint8_t> data);
Bytes Package(const std::vector<Bytes>& elements);  // at most 255 elements

// A compressed EISA id (EisaIdValue(), aml_name.h) as an Integer object.
Bytes EisaId(uint32_t eisa_id_value);

// Named objects and scopes.
Bytes Name(const NameString& name, const Bytes& object);
Bytes Scope(const NameString& name, const std::vector<Bytes>& terms);
Bytes Device(const NameString& name, const std::vector<Bytes>& terms);
enum class MethodSync { kNotSerialized, kSerialized };
Bytes Method(const NameString& name, uint8_t arg_count, MethodSync sync,
             const std::vector<Bytes>& terms);

// Operation regions and fields (§19.6.100, §19.6.48).
enum class RegionSpace : uint8_t { kSystemMemory = 0, kSystemIO = 1 };
Bytes OperationRegion(const NameString& name, RegionSpace space, uint64_t offset, uint64_t length);
enum class FieldAccess : uint8_t { kAny = 0, kByte = 1, kWord = 2, kDWord = 3, kQWord = 4 };
enum class FieldUpdate : uint8_t { kPreserve = 0, kWriteAsOnes = 1, kWriteAsZeros = 2 };
struct FieldUnit {
  static FieldUnit Named(const NameString& name, uint32_t bits) { return {name, bits}; }
  static FieldUnit Reserved(uint32_t bits) { return {std::nullopt, bits}; }
  std::optional<NameString> name;  // nullopt: a reserved (unnamed) gap
  uint32_t bits = 0;
};
Bytes Field(const NameString& region, FieldAccess access, FieldUpdate update,
            const std::vector<FieldUnit>& units);

// Statements and expressions. Operands are already-encoded terms.
Bytes Local(uint8_t n);  // Local0..Local7
Bytes Arg(uint8_t n);    // Arg0..Arg6
Bytes NameRef(const NameString& name);
Bytes If(const Bytes& predicate, const std::vector<Bytes>& terms);
Bytes Else(const std::vector<Bytes>& terms);
Bytes Return(const Bytes& value);
Bytes LEqual(const Bytes& a, const Bytes& b);
Bytes And(const Bytes& a, const Bytes& b, const Bytes& target = {0x00});  // NullName target
Bytes Store(const Bytes& value, const Bytes& target);
Bytes Notify(const Bytes& object, const Bytes& value);

// Appends `part` to `out`.
inline void Append(Bytes& out, std::span<const uint8_t> part) {
  out.insert(out.end(), part.begin(), part.end());
}

}  // namespace kite::acpi::aml
