// libslirp is loaded at run time (src/virtio/slirp_library.h): a process that builds a VM
// configuration without a user network has neither libslirp nor glib mapped; the first user
// network maps both; a missing library is a clear error. This executable links what the
// `kite` executable links (kite_vmm) and nothing in it opens a user network before the test
// does, so /proc/self/maps tells.
#include "virtio/slirp_library.h"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "virtio/net_backend.h"
#include "vmm/cli.h"

namespace kite::virtio {
namespace {

// Whether a mapping of this process names a file containing `name`.
bool Mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(name) != std::string::npos) return true;
  }
  return false;
}

// One test, in this order: "not mapped" can only be seen before the library is loaded.
TEST(SlirpLibraryTest, VmWithoutUserNet_NoGlibMapped_UserNetLoadsIt) {
  std::vector<std::string> args = {"run",  "--kernel", "/nonexistent/vmlinux", "--memory",
                                   "128M", "--net",    "tap=kite-test0"};
  auto command = cli::ParseCommandLine(args, [](const std::string&) -> Result<std::string> {
    return Err("no config file in this test");
  });
  ASSERT_TRUE(command.has_value()) << command.error().message();
  ASSERT_TRUE(std::holds_alternative<cli::Run>(*command));
  ASSERT_EQ(std::get<cli::Run>(*command).config.nets.size(), 1u);
  EXPECT_FALSE(Mapped("libglib-2.0")) << "glib is mapped though no user network was opened";
  EXPECT_FALSE(Mapped("libslirp")) << "libslirp is mapped though no user network was opened";

  // The check above can fail: opening a user network maps both.
  asio::io_context loop;
  auto backend = OpenUserBackend({}, &loop);
  ASSERT_TRUE(backend.has_value()) << backend.error().message();
  EXPECT_TRUE(Mapped("libslirp"));
  EXPECT_TRUE(Mapped("libglib-2.0"));
  (*backend)->Stop();
}

TEST(SlirpLibraryTest, Load_Twice_SameTable) {
  auto first = LoadSlirpLibrary();
  ASSERT_TRUE(first.has_value()) << first.error().message();
  auto second = LoadSlirpLibrary();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(*first, *second);
  EXPECT_NE((*first)->slirp_new, nullptr);
  EXPECT_NE(std::string((*first)->slirp_version_string()), "");
}

TEST(SlirpLibraryTest, Open_MissingLibrary_ErrorNamesItAndThePackage) {
  auto lib = OpenSlirpLibrary("libkite-no-such-slirp.so.0");
  ASSERT_FALSE(lib.has_value());
  const std::string& message = lib.error().message();
  EXPECT_NE(message.find("cannot load libkite-no-such-slirp.so.0"), std::string::npos) << message;
  EXPECT_NE(message.find("libslirp0"), std::string::npos) << message;
}

TEST(SlirpLibraryTest, Open_LibraryWithoutSlirp_ErrorNamesTheSymbol) {
  auto lib = OpenSlirpLibrary("libz.so.1");  // kite links it anyway: loading adds nothing
  ASSERT_FALSE(lib.has_value());
  EXPECT_NE(lib.error().message().find("libz.so.1 has no slirp_new"), std::string::npos)
      << lib.error().message();
}

}  // namespace
}  // namespace kite::virtio
