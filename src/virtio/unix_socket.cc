// Unix socket helpers: see unix_socket.h.
#include "virtio/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/unique_fd.h"

namespace kite::virtio {

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Err("socket path '" + path + "' must be 1 to " +
               std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

Result<void> ClearStaleSocket(const std::string& path, int type) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return {};
  if (!S_ISSOCK(st.st_mode)) return Err(path + " exists and is not a socket");
  UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!probe) return SysErr("socket");
  sockaddr_un addr = TRY(UnixAddress(path));
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    return Err(path + " is in use (another process listens on it)");
  }
  if (errno != ECONNREFUSED) return SysErr("checking socket " + path);
  if (::unlink(path.c_str()) != 0) return SysErr("removing stale socket " + path);
  return {};
}

}  // namespace kite::virtio
