// See pci_state_json.h.
#include "vmm/snapshot/pci_state_json.h"

#include <limits>

#include "vmm/snapshot/base64.h"
#include "vmm/snapshot/virtio_state_json.h"

namespace kite::snapshot {
namespace {

using nlohmann::json;

template <typename T>
Result<T> UnsignedValue(const json& v, const std::string& where) {
  if (!v.is_number_unsigned() || v.get<uint64_t>() > std::numeric_limits<T>::max()) {
    return Err(where + ": expected an integer 0.." + std::to_string(std::numeric_limits<T>::max()));
  }
  return static_cast<T>(v.get<uint64_t>());
}

template <typename T>
Result<T> Member(const json& object, const char* key, const std::string& where) {
  auto it = object.find(key);
  if (it == object.end()) return Err(where + "." + key + ": missing");
  return UnsignedValue<T>(*it, where + "." + key);
}

const json* Array(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_array() ? &*it : nullptr;
}

Result<pci::MsixState> MsixFromJson(const json& v, const std::string& where) {
  const json* entries = v.is_object() ? Array(v, "entries") : nullptr;
  const json* pending = v.is_object() ? Array(v, "pending") : nullptr;
  if (!entries || !pending)
    return Err(where + ": expected {\"entries\": [...], \"pending\": [...]}");
  pci::MsixState s;
  for (size_t i = 0; i < entries->size(); ++i) {
    std::string at = where + ".entries[" + std::to_string(i) + "]";
    const json& e = (*entries)[i];
    if (!e.is_object()) return Err(at + ": expected an object");
    s.entries.push_back(
        {TRY(Member<uint32_t>(e, "address_low", at)), TRY(Member<uint32_t>(e, "address_high", at)),
         TRY(Member<uint32_t>(e, "data", at)), TRY(Member<uint32_t>(e, "control", at))});
  }
  for (size_t i = 0; i < pending->size(); ++i) {
    if (!(*pending)[i].is_boolean()) {
      return Err(where + ".pending[" + std::to_string(i) + "]: expected true or false");
    }
    s.pending.push_back((*pending)[i].get<bool>());
  }
  return s;
}

}  // namespace

json PciTransportStateToJson(const virtio::PciTransportState& s) {
  json entries = json::array();
  for (const pci::MsixEntry& e : s.msix.entries) {
    entries.push_back({{"address_low", e.address_low},
                       {"address_high", e.address_high},
                       {"data", e.data},
                       {"control", e.control}});
  }
  json pending = json::array();
  for (bool p : s.msix.pending) pending.push_back(p);
  return {{"virtio", TransportStateToJson(s.virtio)},
          {"config", Base64Encode(s.config)},
          {"msix", {{"entries", std::move(entries)}, {"pending", std::move(pending)}}},
          {"msix_config", s.msix_config},
          {"queue_vectors", s.queue_vectors}};
}

Result<virtio::PciTransportState> PciTransportStateFromJson(const json& v,
                                                            const std::string& where) {
  if (!v.is_object()) return Err(where + ": expected an object");
  virtio::PciTransportState s;
  auto virtio = v.find("virtio");
  if (virtio == v.end()) return Err(where + ".virtio: missing");
  s.virtio = TRY(TransportStateFromJson(*virtio, where + ".virtio"));
  auto config = v.find("config");
  if (config == v.end() || !config->is_string()) return Err(where + ".config: expected base64");
  s.config = TRY_CTX(Base64Decode(config->get<std::string>()), where + ".config");
  auto msix = v.find("msix");
  if (msix == v.end()) return Err(where + ".msix: missing");
  s.msix = TRY(MsixFromJson(*msix, where + ".msix"));
  s.msix_config = TRY(Member<uint16_t>(v, "msix_config", where));
  const json* vectors = Array(v, "queue_vectors");
  if (!vectors) return Err(where + ".queue_vectors: expected an array");
  for (size_t i = 0; i < vectors->size(); ++i) {
    s.queue_vectors.push_back(TRY(UnsignedValue<uint16_t>(
        (*vectors)[i], where + ".queue_vectors[" + std::to_string(i) + "]")));
  }
  return s;
}

}  // namespace kite::snapshot
