// VirtioRng: virtio-rng / entropy device (virtio 1.2 section 5.4). One queue; every writable
// buffer the guest offers is filled from the host's getrandom(2), so guests have entropy early
// in boot. A request is capped (64 KiB per chain) so a guest cannot make the loop do unbounded
// work per kick.
#pragma once

#include <asio/io_context.hpp>
#include <memory>

#include "base/result.h"
#include "virtio/virtio_device.h"

namespace kite::virtio {

Result<std::shared_ptr<VirtioDevice>> CreateVirtioRng(asio::io_context* loop);

}  // namespace kite::virtio
