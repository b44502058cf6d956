// Unix socket helpers shared by the devices whose host side is a Unix socket: the net socket
// backends (socket_backend.cc) and virtio-vsock (vsock_host.cc).
#pragma once

#include <sys/un.h>

#include <string>

#include "base/result.h"

namespace kite::virtio {

// The address of `path`; an error when it is empty or longer than sun_path holds.
Result<sockaddr_un> UnixAddress(const std::string& path);

// Removes a socket file nothing listens on any more (a kite or QEMU that ended); refuses one
// that is alive or a file that is not a socket. Nothing at `path`: nothing to do.
Result<void> ClearStaleSocket(const std::string& path, int type);

}  // namespace kite::virtio
