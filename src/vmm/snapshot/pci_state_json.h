// JSON form of a virtio-pci function's state (virtio/pci_transport_state.h):
//
//   {"virtio": {<TransportStateToJson>}, "config": "<base64 of 256 bytes>",
//    "msix": {"entries": [{"address_low": .., "address_high": .., "data": .., "control": ..}],
//             "pending": [false, ...]},
//    "msix_config": 65535, "queue_vectors": [0, 1]}
//
// Loading checks types and ranges and names the member that is wrong; whether the values fit
// the device (read-only configuration bits, vector numbers, the table size) is
// PciTransport::RestorePciState's to check.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/result.h"
#include "virtio/pci_transport_state.h"

namespace kite::snapshot {

nlohmann::json PciTransportStateToJson(const virtio::PciTransportState& state);
Result<virtio::PciTransportState> PciTransportStateFromJson(const nlohmann::json& value,
                                                            const std::string& where = "pci");

}  // namespace kite::snapshot
