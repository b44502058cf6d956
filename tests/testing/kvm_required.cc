#include "testing/kvm_required.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace kite::testing {

std::string KvmUnavailableReason() {
  const char* path = std::getenv("KITE_KVM_DEVICE");
  if (path == nullptr) path = "/dev/kvm";
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string(path) + " cannot be opened (" + std::strerror(errno) + ")";
  ::close(fd);
  return {};
}

bool RunningInCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::strcmp(ci, "true") == 0;
}

}  // namespace kite::testing
