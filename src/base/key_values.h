// "a=1,b,c=x": the comma-separated settings of an option (--disk, --net, --cgroup, --rlimit),
// split into keys and values. Values cannot contain commas (as in QEMU without its ",,"
// escaping). Pure code; each parser checks the keys and values it takes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kite {

struct KeyValue {
  std::string key;
  std::string value;
  bool has_value = false;  // "b" alone: false; "b=" : true with an empty value
  // The item as written ("key=value" or "key").
  std::string text() const { return has_value ? key + "=" + value : key; }
};

// "a=1,b,c=x" → {a,1} {b} {c,x}; "" → one empty key; "a," → {a} and an empty key.
std::vector<KeyValue> SplitKeyValues(std::string_view text);

}  // namespace kite
