// JSON form of the virtio state (virtio/virtio_state.h) in a snapshot's state file:
//
//   {"device_id": 2, "offered_features": ..., "status": 15, "queue_sel": 0,
//    "device_features_sel": 1, "driver_features_sel": 1, "driver_features": ...,
//    "interrupt_status": 0, "config_generation": 0, "device": "<base64>",
//    "queues": [{"max_size": 256, "size": 256, "ready": true, "desc_addr": ..., "avail_addr": ...,
//                "used_addr": ..., "next_avail": 17, "next_used": 17, "signalled_used": 17,
//                "signalled_used_valid": true}]}
//
// Loading checks types and ranges of every member and names the one that is wrong
// ("queues[0].next_avail: expected an integer 0..65535"); whether the values make sense for the
// device (ring addresses in RAM, indices, features) is MmioTransport::RestoreState's to check.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/result.h"
#include "virtio/virtio_state.h"

namespace kite::snapshot {

nlohmann::json TransportStateToJson(const virtio::TransportState& state);
Result<virtio::TransportState> TransportStateFromJson(const nlohmann::json& value,
                                                      const std::string& where = "transport");

}  // namespace kite::snapshot
