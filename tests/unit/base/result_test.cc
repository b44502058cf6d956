#include "base/result.h"

#include <gtest/gtest.h>

namespace kite {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Err("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  int half = TRY(Half(x));
  return TRY_CTX(Half(half), "second half");
}

TEST(Result, Value_IsReturned) {
  auto r = Half(8);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 4);
}

TEST(Result, Try_PropagatesFirstError) {
  auto r = Quarter(6);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "second half: odd: 3");
}

TEST(Result, SysErr_KeepsErrno) {
  Error e = SysErr("open /x", ENOENT);
  EXPECT_EQ(e.sys_errno(), ENOENT);
  EXPECT_EQ(e.message(), "open /x: No such file or directory");
}

TEST(Result, Void_OkAndError) {
  Result<void> ok;
  EXPECT_TRUE(ok);
  Result<void> bad = Err("nope");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "nope");
}

TEST(Result, ErrorKind_DefaultGeneric_KeptThroughContext) {
  EXPECT_EQ(Err("x").kind(), ErrorKind::kGeneric);
  Error e = Err(ErrorKind::kDeviceNotFound, "Device 'nope' not found").Context("device_del");
  EXPECT_EQ(e.kind(), ErrorKind::kDeviceNotFound);
  EXPECT_EQ(e.message(), "device_del: Device 'nope' not found");
}

}  // namespace
}  // namespace kite
