// libslirp, loaded at run time: kite does not link libslirp (and through it glib and pcre2,
// about 1.5 MiB of mapped code and a few hundred KiB of resident pages at start), so a VM
// without a `user` network never maps them. The first user network loads the library with
// dlopen(); a missing or too old library is a one-line error naming the package.
//
// The types come from <slirp/libslirp.h> (which needs no glib); the functions are called
// through the table below. The library stays loaded until the process exits (glib cannot be
// unloaded safely).
//
// Threads: LoadSlirpLibrary() may be called from any thread; the table is immutable.
#pragma once

#include <slirp/libslirp.h>

#include "base/result.h"

namespace kite::virtio {

// The ABI name every libslirp since 4.0 is installed under.
inline constexpr const char* kSlirpSoname = "libslirp.so.0";

struct SlirpLibrary {
  decltype(&::slirp_new) slirp_new = nullptr;
  decltype(&::slirp_cleanup) slirp_cleanup = nullptr;
  decltype(&::slirp_add_hostfwd) slirp_add_hostfwd = nullptr;
  decltype(&::slirp_input) slirp_input = nullptr;
  decltype(&::slirp_pollfds_fill) slirp_pollfds_fill = nullptr;
  decltype(&::slirp_pollfds_poll) slirp_pollfds_poll = nullptr;
  decltype(&::slirp_version_string) slirp_version_string = nullptr;
};

// Loads kSlirpSoname once per process; later calls return the same table, or the same error.
Result<const SlirpLibrary*> LoadSlirpLibrary();

// Loads the library named `soname` (a file name searched as dlopen does, or a path), uncached:
// for tests of the error messages. A library it loads is never unloaded.
Result<SlirpLibrary> OpenSlirpLibrary(const char* soname);

}  // namespace kite::virtio
