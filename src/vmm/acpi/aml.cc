// AML encoders: opcodes and encodings from ACPI 6.5 chapter 20 (§20.2 "AML Grammar
// Definition"). Reference bytes for the tests come from iasl (acpica-tools).
#include "vmm/acpi/aml.h"

#include <cstdlib>

#include "base/log.h"
#include "vmm/acpi/aml_resource.h"

namespace kite::acpi::aml {
namespace {

// Opcodes (§20.3).
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kOpRegionOp = 0x80;  // after ExtOpPrefix
constexpr uint8_t kFieldOp = 0x81;     // after ExtOpPrefix
constexpr uint8_t kDeviceOp = 0x82;    // after ExtOpPrefix
constexpr uint8_t kLocal0Op = 0x60;
constexpr uint8_t kArg0Op = 0x68;
constexpr uint8_t kStoreOp = 0x70;
constexpr uint8_t kAndOp = 0x7b;
constexpr uint8_t kNotifyOp = 0x86;
constexpr uint8_t kLEqualOp = 0x93;
constexpr uint8_t kIfOp = 0xa0;
constexpr uint8_t kElseOp = 0xa1;
constexpr uint8_t kReturnOp = 0xa4;
constexpr uint8_t kOnesOp = 0xff;

[[noreturn]] void InvariantBroken(const char* what) {
  KITE_LOG(Error, "AML builder invariant broken: %s", what);
  std::abort();
}

void AppendLe(Bytes& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

// A PkgLength-style encoding of `value` itself: 1 byte up to 0x3f, else a lead byte (bits
// 7-6: count of following bytes, bits 3-0: low nibble) and 1-3 more bytes.
size_t EncodedLengthBytes(size_t value) {
  if (value <= 0x3f) return 1;
  for (size_t extra = 1; extra <= 3; ++extra) {
    if (value < (size_t{1} << (4 + 8 * extra))) return extra + 1;
  }
  return 0;  // does not fit
}

std::optional<Bytes> EncodeLengthValue(size_t value) {
  size_t n = EncodedLengthBytes(value);
  if (n == 0) return std::nullopt;
  if (n == 1) return Bytes{static_cast<uint8_t>(value)};
  size_t extra = n - 1;
  Bytes out{static_cast<uint8_t>((extra << 6) | (value & 0xf))};
  for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(value >> (4 + 8 * i)));
  return out;
}

// `prefix` (opcode bytes), PkgLength, then `body`.
Bytes WithPkgLength(std::initializer_list<uint8_t> prefix, const Bytes& body) {
  std::optional<Bytes> len = EncodePkgLength(body.size());
  if (!len) InvariantBroken("package longer than 2^28 bytes");
  Bytes out(prefix);
  Append(out, *len);
  Append(out, body);
  return out;
}

Bytes Concat(const std::vector<Bytes>& parts) {
  Bytes out;
  for (const Bytes& p : parts) Append(out, p);
  return out;
}

Bytes NamedBlock(std::initializer_list<uint8_t> opcode, const NameString& name,
                 const std::vector<Bytes>& terms) {
  Bytes body(name.bytes().begin(), name.bytes().end());
  Append(body, Concat(terms));
  return WithPkgLength(opcode, body);
}

}  // namespace

Result<NameString> NameString::Parse(std::string_view path) {
  NameString n;
  if (!n.Encode(path)) return Err("invalid ACPI name \"" + std::string(path) + "\"");
  return n;
}

Result<NameString> IndexedName(char prefix, uint32_t index) {
  if (index > 0xfff) return Err("ACPI name index " + std::to_string(index) + " above 0xfff");
  constexpr char kHex[] = "0123456789ABCDEF";
  char name[5] = {prefix, kHex[(index >> 8) & 0xf], kHex[(index >> 4) & 0xf], kHex[index & 0xf],
                  '\0'};
  return NameString::Parse(name);
}

std::optional<Bytes> EncodePkgLength(size_t content_len) {
  // The encoded length counts the PkgLength bytes themselves.
  for (size_t extra = 0; extra <= 3; ++extra) {
    size_t total = content_len + 1 + extra;
    if (EncodedLengthBytes(total) == extra + 1) return EncodeLengthValue(total);
  }
  return std::nullopt;
}

Bytes Integer(uint64_t value) {
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  if (value == ~uint64_t{0}) return {kOnesOp};
  Bytes out;
  if (value <= 0xff) {
    out.push_back(kBytePrefix);
    AppendLe(out, value, 1);
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    AppendLe(out, value, 2);
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    AppendLe(out, value, 4);
  } else {
    out.push_back(kQWordPrefix);
    AppendLe(out, value, 8);
  }
  return out;
}

Result<Bytes> String(std::string_view s) {
  Bytes out{kStringPrefix};
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u == 0 || u > 0x7f) return Err("AML string: byte " + std::to_string(u) + " is not ASCII");
    out.push_back(u);
  }
  out.push_back(0);
  return out;
}

Bytes Buffer(std::span<const uint8_t> data) {
  Bytes body = Integer(data.size());
  Append(body, data);
  return WithPkgLength({kBufferOp}, body);
}

Bytes Package(const std::vector<Bytes>& elements) {
  if (elements.size() > 255) InvariantBroken("package with more than 255 elements");
  Bytes body{static_cast<uint8_t>(elements.size())};
  Append(body, Concat(elements));
  return WithPkgLength({kPackageOp}, body);
}

Bytes EisaId(uint32_t eisa_id_value) {
  Bytes out{kDWordPrefix};  // iasl always emits a DWord for EisaId
  AppendLe(out, eisa_id_value, 4);
  return out;
}

Bytes Name(const NameString& name, const Bytes& object) {
  Bytes out{kNameOp};
  Append(out, name.bytes());
  Append(out, object);
  return out;
}

Bytes Scope(const NameString& name, const std::vector<Bytes>& terms) {
  return NamedBlock({kScopeOp}, name, terms);
}

Bytes Device(const NameString& name, const std::vector<Bytes>& terms) {
  return NamedBlock({kExtOpPrefix, kDeviceOp}, name, terms);
}

Bytes Method(const NameString& name, uint8_t arg_count, MethodSync sync,
             const std::vector<Bytes>& terms) {
  if (arg_count > 7) InvariantBroken("method with more than 7 arguments");
  Bytes body(name.bytes().begin(), name.bytes().end());
  // MethodFlags: bits 0-2 ArgCount, bit 3 SerializeFlag, bits 4-7 SyncLevel (0).
  body.push_back(static_cast<uint8_t>(arg_count | (sync == MethodSync::kSerialized ? 0x08 : 0)));
  Append(body, Concat(terms));
  return WithPkgLength({kMethodOp}, body);
}

Bytes OperationRegion(const NameString& name, RegionSpace space, uint64_t offset, uint64_t length) {
  Bytes out{kExtOpPrefix, kOpRegionOp};
  Append(out, name.bytes());
  out.push_back(static_cast<uint8_t>(space));
  Append(out, Integer(offset));
  Append(out, Integer(length));
  return out;
}

Bytes Field(const NameString& region, FieldAccess access, FieldUpdate update,
            const std::vector<FieldUnit>& units) {
  Bytes body(region.bytes().begin(), region.bytes().end());
  // FieldFlags: bits 0-3 AccessType, bit 4 LockRule (NoLock), bits 5-6 UpdateRule.
  body.push_back(
      static_cast<uint8_t>(static_cast<uint8_t>(access) | (static_cast<uint8_t>(update) << 5)));
  for (const FieldUnit& unit : units) {
    if (unit.name) {
      std::span<const uint8_t> seg = unit.name->bytes();
      if (seg.size() != 4) InvariantBroken("field unit name must be one name segment");
      Append(body, seg);
    } else {
      body.push_back(0x00);  // ReservedField
    }
    // The field's size in bits, PkgLength-encoded but not counting its own bytes.
    std::optional<Bytes> bits = EncodeLengthValue(unit.bits);
    if (!bits || unit.bits == 0) InvariantBroken("field unit size out of range");
    Append(body, *bits);
  }
  return WithPkgLength({kExtOpPrefix, kFieldOp}, body);
}

Bytes Local(uint8_t n) {
  if (n > 7) InvariantBroken("Local index above 7");
  return {static_cast<uint8_t>(kLocal0Op + n)};
}

Bytes Arg(uint8_t n) {
  if (n > 6) InvariantBroken("Arg index above 6");
  return {static_cast<uint8_t>(kArg0Op + n)};
}

Bytes NameRef(const NameString& name) {
  return Bytes(name.bytes().begin(), name.bytes().end());
}

Bytes If(const Bytes& predicate, const std::vector<Bytes>& terms) {
  Bytes body = predicate;
  Append(body, Concat(terms));
  return WithPkgLength({kIfOp}, body);
}

Bytes Else(const std::vector<Bytes>& terms) {
  return WithPkgLength({kElseOp}, Concat(terms));
}

Bytes Return(const Bytes& value) {
  Bytes out{kReturnOp};
  Append(out, value);
  return out;
}

Bytes LEqual(const Bytes& a, const Bytes& b) {
  return Concat({{kLEqualOp}, a, b});
}

Bytes And(const Bytes& a, const Bytes& b, const Bytes& target) {
  return Concat({{kAndOp}, a, b, target});
}

Bytes Store(const Bytes& value, const Bytes& target) {
  return Concat({{kStoreOp}, value, target});
}

Bytes Notify(const Bytes& object, const Bytes& value) {
  return Concat({{kNotifyOp}, object, value});
}

}  // namespace kite::acpi::aml
