#include "base/key_values.h"

#include <gtest/gtest.h>

namespace kite {
namespace {

std::vector<std::string> Texts(std::string_view text) {
  std::vector<std::string> out;
  for (const KeyValue& kv : SplitKeyValues(text)) out.push_back(kv.text());
  return out;
}

TEST(KeyValues, KeysValuesAndBareKeys) {
  std::vector<KeyValue> kv = SplitKeyValues("path=/a/b.qcow2,readonly,serial=,x=1=2");
  ASSERT_EQ(kv.size(), 4u);
  EXPECT_EQ(kv[0].key, "path");
  EXPECT_EQ(kv[0].value, "/a/b.qcow2");
  EXPECT_TRUE(kv[0].has_value);
  EXPECT_EQ(kv[1].key, "readonly");
  EXPECT_FALSE(kv[1].has_value);
  EXPECT_EQ(kv[2].key, "serial");
  EXPECT_TRUE(kv[2].has_value);
  EXPECT_EQ(kv[2].value, "");
  EXPECT_EQ(kv[3].key, "x");
  EXPECT_EQ(kv[3].value, "1=2");  // the first '=' splits
}

TEST(KeyValues, EmptyItemsKept_TextAsWritten) {
  EXPECT_EQ(Texts(""), (std::vector<std::string>{""}));
  EXPECT_EQ(Texts("a,"), (std::vector<std::string>{"a", ""}));
  EXPECT_EQ(Texts(",b=2"), (std::vector<std::string>{"", "b=2"}));
  EXPECT_EQ(Texts("a=1,,b"), (std::vector<std::string>{"a=1", "", "b"}));
}

}  // namespace
}  // namespace kite
