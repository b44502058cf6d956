// The emulation-failure fallback table (pure matching).
#include "vmm/emulation_fallbacks.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kite {
namespace {

TEST(EmulationFallbacks, Int3_AdvancesOneAndInjectsBreakpoint) {
  const uint8_t insn[] = {0xcc, 0x90, 0x90};
  const EmulationFallback* f = MatchFallback(insn);
  ASSERT_NE(f, nullptr);
  EXPECT_STREQ(f->name, "int3");
  EXPECT_EQ(f->action.advance_rip, 1);
  ASSERT_TRUE(f->action.inject_vector.has_value());
  EXPECT_EQ(*f->action.inject_vector, 3);
}

TEST(EmulationFallbacks, Fwait_AdvancesOneWithoutInjection) {
  const uint8_t insn[] = {0x9b};
  const EmulationFallback* f = MatchFallback(insn);
  ASSERT_NE(f, nullptr);
  EXPECT_STREQ(f->name, "fwait");
  EXPECT_EQ(f->action.advance_rip, 1);
  EXPECT_FALSE(f->action.inject_vector.has_value());
}

TEST(EmulationFallbacks, Xsave_NotHandled) {
  const uint8_t insn[] = {0x0f, 0xae, 0x27};  // xsave [rdi]
  EXPECT_EQ(MatchFallback(insn), nullptr);
}

TEST(EmulationFallbacks, NoBytes_NotHandled) {
  EXPECT_EQ(MatchFallback({}), nullptr);
}

TEST(EmulationFallbacks, PatternMustBeAtStart) {
  const uint8_t insn[] = {0x90, 0xcc};
  EXPECT_EQ(MatchFallback(insn), nullptr);
}

TEST(EmulationFallbacks, Table_PatternsNonEmptyAndAdvancePastThem) {
  for (const EmulationFallback& f : EmulationFallbacks()) {
    EXPECT_FALSE(f.pattern.empty()) << f.name;
    EXPECT_GE(f.action.advance_rip, f.pattern.size()) << f.name;
    EXPECT_EQ(MatchFallback(f.pattern), &f) << f.name;
  }
}

}  // namespace
}  // namespace kite
