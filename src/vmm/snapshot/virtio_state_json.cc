// See virtio_state_json.h.
#include "vmm/snapshot/virtio_state_json.h"

#include <limits>

#include "vmm/snapshot/base64.h"

namespace kite::snapshot {
namespace {

using nlohmann::json;

// An unsigned member no larger than T's range.
template <typename T>
Result<T> Unsigned(const json& object, const char* key, const std::string& where) {
  auto it = object.find(key);
  if (it == object.end()) return Err(where + "." + key + ": missing");
  if (!it->is_number_unsigned() || it->get<uint64_t>() > std::numeric_limits<T>::max()) {
    return Err(where + "." + key + ": expected an integer 0.." +
               std::to_string(std::numeric_limits<T>::max()));
  }
  return static_cast<T>(it->get<uint64_t>());
}

Result<bool> Bool(const json& object, const char* key, const std::string& where) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_boolean())
    return Err(where + "." + key + ": expected true or false");
  return it->get<bool>();
}

Result<virtio::QueueState> QueueFromJson(const json& q, const std::string& where) {
  if (!q.is_object()) return Err(where + ": expected an object");
  virtio::QueueState s;
  s.max_size = TRY(Unsigned<uint16_t>(q, "max_size", where));
  s.size = TRY(Unsigned<uint16_t>(q, "size", where));
  s.ready = TRY(Bool(q, "ready", where));
  s.desc_addr = TRY(Unsigned<uint64_t>(q, "desc_addr", where));
  s.avail_addr = TRY(Unsigned<uint64_t>(q, "avail_addr", where));
  s.used_addr = TRY(Unsigned<uint64_t>(q, "used_addr", where));
  s.next_avail = TRY(Unsigned<uint16_t>(q, "next_avail", where));
  s.next_used = TRY(Unsigned<uint16_t>(q, "next_used", where));
  s.signalled_used = TRY(Unsigned<uint16_t>(q, "signalled_used", where));
  s.signalled_used_valid = TRY(Bool(q, "signalled_used_valid", where));
  return s;
}

}  // namespace

json TransportStateToJson(const virtio::TransportState& s) {
  json queues = json::array();
  for (const virtio::QueueState& q : s.queues) {
    queues.push_back({{"max_size", q.max_size},
                      {"size", q.size},
                      {"ready", q.ready},
                      {"desc_addr", q.desc_addr},
                      {"avail_addr", q.avail_addr},
                      {"used_addr", q.used_addr},
                      {"next_avail", q.next_avail},
                      {"next_used", q.next_used},
                      {"signalled_used", q.signalled_used},
                      {"signalled_used_valid", q.signalled_used_valid}});
  }
  return {{"device_id", s.device_id},
          {"offered_features", s.offered_features},
          {"status", s.status},
          {"queue_sel", s.queue_sel},
          {"device_features_sel", s.device_features_sel},
          {"driver_features_sel", s.driver_features_sel},
          {"driver_features", s.driver_features},
          {"interrupt_status", s.interrupt_status},
          {"config_generation", s.config_generation},
          {"device", Base64Encode(s.device)},
          {"queues", std::move(queues)}};
}

Result<virtio::TransportState> TransportStateFromJson(const json& v, const std::string& where) {
  if (!v.is_object()) return Err(where + ": expected an object");
  virtio::TransportState s;
  s.device_id = TRY(Unsigned<uint32_t>(v, "device_id", where));
  s.offered_features = TRY(Unsigned<uint64_t>(v, "offered_features", where));
  s.status = TRY(Unsigned<uint32_t>(v, "status", where));
  s.queue_sel = TRY(Unsigned<uint32_t>(v, "queue_sel", where));
  s.device_features_sel = TRY(Unsigned<uint32_t>(v, "device_features_sel", where));
  s.driver_features_sel = TRY(Unsigned<uint32_t>(v, "driver_features_sel", where));
  s.driver_features = TRY(Unsigned<uint64_t>(v, "driver_features", where));
  s.interrupt_status = TRY(Unsigned<uint32_t>(v, "interrupt_status", where));
  s.config_generation = TRY(Unsigned<uint32_t>(v, "config_generation", where));
  auto device = v.find("device");
  if (device == v.end() || !device->is_string()) return Err(where + ".device: expected base64");
  s.device = TRY_CTX(Base64Decode(device->get<std::string>()), where + ".device");
  auto queues = v.find("queues");
  if (queues == v.end() || !queues->is_array() || queues->size() > 64) {
    return Err(where + ".queues: expected an array of at most 64 queues");
  }
  for (size_t i = 0; i < queues->size(); ++i) {
    s.queues.push_back(
        TRY(QueueFromJson((*queues)[i], where + ".queues[" + std::to_string(i) + "]")));
  }
  return s;
}

}  // namespace kite::snapshot
