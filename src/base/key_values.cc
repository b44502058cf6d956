// Comma-separated settings. See key_values.h.
#include "base/key_values.h"

namespace kite {

std::vector<KeyValue> SplitKeyValues(std::string_view text) {
  std::vector<KeyValue> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(pos, comma - pos);
    size_t eq = item.find('=');
    KeyValue kv;
    kv.key = std::string(item.substr(0, eq));
    if (eq != std::string_view::npos) {
      kv.value = std::string(item.substr(eq + 1));
      kv.has_value = true;
    }
    out.push_back(std::move(kv));
    pos = comma + 1;
  }
  return out;
}

}  // namespace kite
