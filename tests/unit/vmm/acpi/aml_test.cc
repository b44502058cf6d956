// AML encodings checked against the bytes iasl 20200925 produces for the same ASL (the ASL is
// quoted above each expectation).
#include "vmm/acpi/aml.h"

#include <gtest/gtest.h>

#include "vmm/acpi/aml_resource.h"

namespace kite::acpi::aml {
namespace {

Bytes NameBytes(const NameString& n) {
  return Bytes(n.bytes().begin(), n.bytes().end());
}

TEST(AmlName, SingleSegment_PaddedWithUnderscores) {
  EXPECT_EQ(NameBytes("GED"), (Bytes{'G', 'E', 'D', '_'}));
  EXPECT_EQ(NameBytes("_S5"), (Bytes{'_', 'S', '5', '_'}));
}

TEST(AmlName, RootDualAndMultiSegment_Prefixed) {
  EXPECT_EQ(NameBytes("\\_SB"), (Bytes{'\\', '_', 'S', 'B', '_'}));
  EXPECT_EQ(NameBytes("\\_SB.PWRB"), (Bytes{'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'W', 'R', 'B'}));
  EXPECT_EQ(NameBytes("A.B.C"),
            (Bytes{0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_'}));
  EXPECT_EQ(NameBytes("^^X"), (Bytes{'^', '^', 'X', '_', '_', '_'}));
  EXPECT_EQ(NameBytes("\\_SB.GED.GSLP"),
            (Bytes{'\\', 0x2f, 3, '_', 'S', 'B', '_', 'G', 'E', 'D', '_', 'G', 'S', 'L', 'P'}));
  EXPECT_EQ(NameBytes("\\"), (Bytes{'\\', 0x00}));
}

TEST(AmlName, Parse_InvalidNames_Refused) {
  EXPECT_FALSE(NameString::Parse("TOOLONG").has_value());
  EXPECT_FALSE(NameString::Parse("1ABC").has_value());
  EXPECT_FALSE(NameString::Parse("ab").has_value());
  EXPECT_FALSE(NameString::Parse("A..B").has_value());
  EXPECT_FALSE(NameString::Parse("A.").has_value());
  EXPECT_FALSE(NameString::Parse("\\^A").has_value());
  EXPECT_TRUE(NameString::Parse("A1_9").has_value());
}

TEST(AmlName, IndexedName_HexDigits) {
  auto n = IndexedName('V', 0x1a);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(NameBytes(*n), (Bytes{'V', '0', '1', 'A'}));
  EXPECT_FALSE(IndexedName('V', 0x1000).has_value());
  EXPECT_FALSE(IndexedName('1', 0).has_value());
}

TEST(AmlName, EisaId_CompressedLikeIasl) {
  static_assert(EisaIdValue("PNP0501") == 0x0105d041);
  // Name (_HID, EisaId ("PNP0C0C")) -> 0C 41 D0 0C 0C
  EXPECT_EQ(EisaId(EisaIdValue("PNP0C0C")), (Bytes{0x0c, 0x41, 0xd0, 0x0c, 0x0c}));
}

TEST(AmlPkgLength, OneToFourBytes_Boundaries) {
  EXPECT_EQ(*EncodePkgLength(0), Bytes{0x01});
  EXPECT_EQ(*EncodePkgLength(0x3e), Bytes{0x3f});
  // 0x3f bytes of content: 1 byte would say 0x40 (too big), so 2 bytes, total 0x41.
  EXPECT_EQ(*EncodePkgLength(0x3f), (Bytes{0x41, 0x04}));
  EXPECT_EQ(*EncodePkgLength(0xffd), (Bytes{0x4f, 0xff}));
  EXPECT_EQ(*EncodePkgLength(0xffe), (Bytes{0x81, 0x00, 0x01}));
  EXPECT_EQ(*EncodePkgLength(0xffffc), (Bytes{0x8f, 0xff, 0xff}));
  EXPECT_EQ(*EncodePkgLength(0xffffd), (Bytes{0xc1, 0x00, 0x00, 0x01}));
  EXPECT_EQ(*EncodePkgLength(0xffffffb), (Bytes{0xcf, 0xff, 0xff, 0xff}));
  EXPECT_FALSE(EncodePkgLength(0xffffffc).has_value());
}

TEST(AmlData, Integer_SmallestEncoding) {
  EXPECT_EQ(Integer(0), Bytes{0x00});
  EXPECT_EQ(Integer(1), Bytes{0x01});
  EXPECT_EQ(Integer(0x2a), (Bytes{0x0a, 0x2a}));
  EXPECT_EQ(Integer(0x1234), (Bytes{0x0b, 0x34, 0x12}));
  EXPECT_EQ(Integer(0x12345678), (Bytes{0x0c, 0x78, 0x56, 0x34, 0x12}));
  EXPECT_EQ(Integer(0x123456789a), (Bytes{0x0e, 0x9a, 0x78, 0x56, 0x34, 0x12, 0, 0, 0}));
  EXPECT_EQ(Integer(~uint64_t{0}), Bytes{0xff});
}

TEST(AmlData, String_NulTerminated) {
  // Name (S0, "LNRO0005") -> 08 S0__ 0D "LNRO0005" 00
  EXPECT_EQ(Name("S0", *String("LNRO0005")),
            (Bytes{0x08, 'S', '0', '_', '_', 0x0d, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0}));
}

TEST(AmlData, String_NonAscii_Refused) {
  EXPECT_FALSE(String("caf\xc3\xa9").has_value());
  EXPECT_FALSE(String(std::string_view("a\0b", 3)).has_value());
}

TEST(AmlData, PackageAndBuffer_LikeIasl) {
  // Name (_S5, Package (0x02) { 0x05, 0x05 })
  EXPECT_EQ(Name("_S5", Package({Integer(5), Integer(5)})),
            (Bytes{0x08, '_', 'S', '5', '_', 0x12, 0x06, 0x02, 0x0a, 0x05, 0x0a, 0x05}));
  // Name (B0, Buffer (3) { 1, 2, 3 })
  const uint8_t data[] = {1, 2, 3};
  EXPECT_EQ(Name("B0", Buffer(data)),
            (Bytes{0x08, 'B', '0', '_', '_', 0x11, 0x06, 0x0a, 0x03, 0x01, 0x02, 0x03}));
}

TEST(AmlResource, Com1Crs_LikeIasl) {
  // ResourceTemplate () { IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08, ) IRQNoFlags () {4} }
  EXPECT_EQ(ResourceTemplate({IoPort(0x3f8, 0x3f8, 0, 8), IrqNoFlags(4)}),
            (Bytes{0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, 0x22,
                   0x10, 0x00, 0x79, 0x00}));
}

TEST(AmlResource, GedCrs_LikeIasl) {
  // ResourceTemplate () { Memory32Fixed (ReadWrite, 0xD0100000, 0x00000100, )
  //   Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {9} }
  EXPECT_EQ(
      ResourceTemplate({Memory32Fixed(true, 0xd0100000, 0x100), Interrupt({}, 9)}),
      (Bytes{0x11, 0x1a, 0x0a, 0x17, 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x10, 0xd0, 0x00, 0x01,
             0x00, 0x00, 0x89, 0x06, 0x00, 0x03, 0x01, 0x09, 0x00, 0x00, 0x00, 0x79, 0x00}));
}

TEST(AmlResource, InterruptFlags_LevelLowShared) {
  Bytes irq = Interrupt({.consumer = true, .edge = false, .active_low = true, .shared = true}, 33);
  EXPECT_EQ(irq, (Bytes{0x89, 0x06, 0x00, 0x0d, 0x01, 33, 0, 0, 0}));
}

TEST(AmlObjects, DeviceWithNames_LikeIasl) {
  // Device (PWRB) { Name (_HID, EisaId ("PNP0C0C")) Name (_UID, Zero)
  //                 Method (_STA, 0, NotSerialized) { Return (0x0F) } }
  Bytes dev =
      Device("PWRB", {Name("_HID", EisaId(EisaIdValue("PNP0C0C"))), Name("_UID", Integer(0)),
                      Method("_STA", 0, MethodSync::kNotSerialized, {Return(Integer(0x0f))})});
  EXPECT_EQ(dev, (Bytes{0x5b, 0x82, 0x1f, 'P',  'W',  'R',  'B',  0x08, '_',  'H',  'I',
                        'D',  0x0c, 0x41, 0xd0, 0x0c, 0x0c, 0x08, '_',  'U',  'I',  'D',
                        0x00, 0x14, 0x09, '_',  'S',  'T',  'A',  0x00, 0xa4, 0x0a, 0x0f}));
}

TEST(AmlObjects, OperationRegionAndField_LikeIasl) {
  // OperationRegion (GDST, SystemMemory, 0xD0100000, 0x04)
  EXPECT_EQ(
      OperationRegion("GDST", RegionSpace::kSystemMemory, 0xd0100000, 4),
      (Bytes{0x5b, 0x80, 'G', 'D', 'S', 'T', 0x00, 0x0c, 0x00, 0x00, 0x10, 0xd0, 0x0a, 0x04}));
  // Field (GDST, DWordAcc, NoLock, WriteAsZeros) { GDAT, 32 }
  EXPECT_EQ(Field("GDST", FieldAccess::kDWord, FieldUpdate::kWriteAsZeros,
                  {FieldUnit::Named("GDAT", 32)}),
            (Bytes{0x5b, 0x81, 0x0b, 'G', 'D', 'S', 'T', 0x43, 'G', 'D', 'A', 'T', 0x20}));
  // OperationRegion (PIO, SystemIO, 0x600, 3)
  // Field (PIO, ByteAcc, NoLock, Preserve) { , 8, RST, 8 }
  EXPECT_EQ(
      Field("PIO", FieldAccess::kByte, FieldUpdate::kPreserve,
            {FieldUnit::Reserved(8), FieldUnit::Named("RST", 8)}),
      (Bytes{0x5b, 0x81, 0x0d, 'P', 'I', 'O', '_', 0x01, 0x00, 0x08, 'R', 'S', 'T', '_', 0x08}));
}

TEST(AmlObjects, Field_LargeBitCount_MultiBytePkgLength) {
  Bytes f = Field("R", FieldAccess::kAny, FieldUpdate::kPreserve, {FieldUnit::Named("BIG", 0x100)});
  // The unit's size is PkgLength-encoded without counting its own bytes: 0x100 -> 40 10.
  Bytes tail(f.end() - 6, f.end());
  EXPECT_EQ(tail, (Bytes{'B', 'I', 'G', '_', 0x40, 0x10}));
}

TEST(AmlObjects, EventMethod_LikeIasl) {
  // Method (_EVT, 1, Serialized) { Local0 = GDAT
  //   If (((Local0 & One) == One)) { Notify (PWRB, 0x80) } }
  Bytes m =
      Method("_EVT", 1, MethodSync::kSerialized,
             {Store(NameRef("GDAT"), Local(0)), If(LEqual(And(Local(0), Integer(1)), Integer(1)),
                                                   {Notify(NameRef("PWRB"), Integer(0x80))})});
  EXPECT_EQ(
      m, (Bytes{0x14, 0x1b, '_',  'E',  'V',  'T',  0x09, 0x70, 'G', 'D', 'A', 'T', 0x60, 0xa0,
                0x0e, 0x93, 0x7b, 0x60, 0x01, 0x00, 0x01, 0x86, 'P', 'W', 'R', 'B', 0x0a, 0x80}));
}

TEST(AmlObjects, ScopeAndElse_Encoded) {
  EXPECT_EQ(Scope("\\_SB", {}), (Bytes{0x10, 0x06, '\\', '_', 'S', 'B', '_'}));
  EXPECT_EQ(Else({Return(Arg(0))}), (Bytes{0xa1, 0x03, 0xa4, 0x68}));
}

}  // namespace
}  // namespace kite::acpi::aml
