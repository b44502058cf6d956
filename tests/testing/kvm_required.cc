#include "testing/kvm_required.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
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
  // A KVM device answers KVM_GET_API_VERSION with 12; a stray regular file does not.
  int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  int saved_errno = errno;
  ::close(fd);
  if (version < 0) {
    return std::string(path) + " is not a KVM device (" + std::strerror(saved_errno) + ")";
  }
  if (version != KVM_API_VERSION) {
    return std::string(path) + " has KVM API version " + std::to_string(version) + ", not 12";
  }
  return {};
}

bool RunningInCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::strcmp(ci, "true") == 0;
}

}  // namespace kite::testing
