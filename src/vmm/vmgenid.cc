// The VMGenID id: a random GUID, and its place in guest memory (see vmgenid.h).
#include "vmm/vmgenid.h"

#include <sys/random.h>

#include <cerrno>
#include <random>

#include "vmm/layout.h"

namespace kite {
namespace {

static_assert(sizeof(VmGenId) == layout::kVmGenIdSize);

// Fills `out` from getrandom(2) (blocking only until the host's pool is first initialised,
// which a host already running VMs is past). Should the call be unavailable (an old kernel,
// a seccomp filter), std::random_device is the fallback, as for random MAC addresses.
void FillRandom(VmGenId& out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = getrandom(out.data() + done, out.size() - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      break;
    }
  }
  if (done == out.size()) return;
  std::random_device device;
  for (uint8_t& b : out) b = static_cast<uint8_t>(device());
}

}  // namespace

VmGenId NewVmGenId() {
  VmGenId id{};
  FillRandom(id);
  id[7] = static_cast<uint8_t>((id[7] & 0x0f) | 0x40);  // version 4: random
  id[8] = static_cast<uint8_t>((id[8] & 0x3f) | 0x80);  // variant 10: RFC 4122
  return id;
}

Result<void> WriteVmGenId(const GuestMemory& memory, const VmGenId& id) {
  TRY_CTX(memory.Write(GuestAddr(layout::kVmGenIdAddr), id.data(), id.size()),
          "writing the VM generation id");
  return {};
}

Result<VmGenId> ReadVmGenId(const GuestMemory& memory) {
  VmGenId id{};
  TRY_CTX(memory.Read(GuestAddr(layout::kVmGenIdAddr), id.data(), id.size()),
          "reading the VM generation id");
  return id;
}

}  // namespace kite
