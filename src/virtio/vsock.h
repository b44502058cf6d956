// VirtioVsock: virtio-vsock (virtio 1.2 section 5.10) with Firecracker's hybrid host side —
// the host end of every connection is a Unix stream socket, so nothing needs vhost or root:
//   * host -> guest: a host program connects to `uds_path`, writes "CONNECT <port>\n" and gets
//     "OK <host_port>\n" once the guest accepted (the socket is closed when it refused);
//   * guest -> host: a guest connecting to (CID 2, port P) reaches the Unix socket
//     "<uds_path>_P"; nothing listening there means a reset (RST) to the guest.
// See docs/VSOCK.md for the protocol, credit, limits and snapshot behaviour.
#pragma once

#include <asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "virtio/virtio_device.h"
#include "virtio/vsock_cid.h"

namespace kite::virtio {

struct VsockOptions {
  uint64_t guest_cid = 0;  // 3 .. 0xfffffffe
  std::string uds_path;    // the socket kite listens on for host-initiated connections
};

// Binds and listens on options.uds_path (a stale socket file there is replaced; a live one or
// a file that is not a socket is refused). The device removes the file when it is destroyed.
Result<std::shared_ptr<VirtioDevice>> CreateVirtioVsock(const VsockOptions& options,
                                                        asio::io_context* loop);

}  // namespace kite::virtio
