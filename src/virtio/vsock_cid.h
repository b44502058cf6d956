// The guest CIDs virtio-vsock accepts (virtio 1.2 section 5.10.4: "The upper 32 bits of the
// CID are reserved and zeroed"). Header-only: the configuration checks use it too.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace kite::virtio {

// Not 0 (hypervisor), 1 (local), 2 (host) or 0xffffffff (VMADDR_CID_ANY), and 32 bits wide.
inline Result<void> CheckGuestCid(uint64_t cid) {
  if (cid < 3 || cid > 0xfffffffe) {
    return Err("guest CID " + std::to_string(cid) +
               " is reserved or too large (expected 3 to 4294967294; 0, 1 and 2 are the "
               "hypervisor, local and host addresses)");
  }
  return {};
}

}  // namespace kite::virtio
