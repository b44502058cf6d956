// libslirp loaded with dlopen; see slirp_library.h.
#include "virtio/slirp_library.h"

#include <dlfcn.h>

#include <string>

namespace kite::virtio {
namespace {

constexpr const char* kInstallHint =
    "the user network needs libslirp 4.7 or later (Debian/Ubuntu: apt-get install libslirp0; "
    "Fedora: dnf install libslirp)";

template <typename Fn>
Result<void> Resolve(void* handle, const char* soname, const char* name, Fn* out) {
  dlerror();
  void* symbol = dlsym(handle, name);
  if (symbol == nullptr) {
    return Err(std::string(soname) + " has no " + name + " (too old?): " + kInstallHint);
  }
  *out = reinterpret_cast<Fn>(symbol);
  return {};
}

}  // namespace

Result<SlirpLibrary> OpenSlirpLibrary(const char* soname) {
  // RTLD_LOCAL: slirp's and glib's symbols stay out of the global namespace.
  void* handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return Err("cannot load " + std::string(soname) + " (" + (why != nullptr ? why : "unknown") +
               "): " + kInstallHint);
  }
  SlirpLibrary lib;
  TRY(Resolve(handle, soname, "slirp_new", &lib.slirp_new));
  TRY(Resolve(handle, soname, "slirp_cleanup", &lib.slirp_cleanup));
  TRY(Resolve(handle, soname, "slirp_add_hostfwd", &lib.slirp_add_hostfwd));
  TRY(Resolve(handle, soname, "slirp_input", &lib.slirp_input));
  TRY(Resolve(handle, soname, "slirp_pollfds_fill", &lib.slirp_pollfds_fill));
  TRY(Resolve(handle, soname, "slirp_pollfds_poll", &lib.slirp_pollfds_poll));
  TRY(Resolve(handle, soname, "slirp_version_string", &lib.slirp_version_string));
  return lib;
}

Result<const SlirpLibrary*> LoadSlirpLibrary() {
  static const Result<SlirpLibrary> loaded = OpenSlirpLibrary(kSlirpSoname);
  if (!loaded) return loaded.error();
  return &loaded.value();
}

}  // namespace kite::virtio
