// --vsock and the config file's "vsock" object (src/vmm/vsock_options.cc), through the
// command line parser and ValidateVmConfig.
#include "vmm/vsock_options.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "vmm/cli.h"
#include "vmm/config_json.h"
#include "vmm/device_options.h"

namespace kite::cli {
namespace {

Result<std::string> NoFiles(const std::string&) {
  return Err("no files");
}

Result<VmConfig> ParseRun(std::vector<std::string> args) {
  args.insert(args.begin(), {"run", "--kernel", "k"});
  Command command = TRY(ParseCommandLine(args, NoFiles));
  return std::get<kite::cli::Run>(command).config;
}

TEST(VsockOptions, CidAndUds_Parsed_SocketAndUdsPathAliases) {
  for (const char* key : {"uds", "socket", "uds_path"}) {
    Result<VmConfig> c = ParseRun({"--vsock", std::string("cid=42,") + key + "=/run/v.sock"});
    ASSERT_TRUE(c) << c.error().message();
    ASSERT_TRUE(c->vsock);
    EXPECT_EQ(c->vsock->cid, 42u);
    EXPECT_EQ(c->vsock->uds_path, "/run/v.sock");
  }
}

TEST(VsockOptions, ReservedCid_RefusedWithReason) {
  for (const char* cid : {"0", "1", "2", "4294967295", "4294967296", "x", ""}) {
    Result<VmConfig> c = ParseRun({"--vsock", std::string("cid=") + cid + ",uds=/v"});
    ASSERT_FALSE(c) << cid;
    EXPECT_NE(c.error().message().find("cid"), std::string::npos) << c.error().message();
  }
}

TEST(VsockOptions, MissingOrLongPath_UnknownKey_Refused) {
  EXPECT_FALSE(ParseRun({"--vsock", "cid=3"}));
  EXPECT_FALSE(ParseRun({"--vsock", "cid=3,uds=" + std::string(100, 'a')}));
  Result<VmConfig> c = ParseRun({"--vsock", "cid=3,uds=/v,port=5"});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("port=5"), std::string::npos);
}

TEST(VsockOptions, Json_ReadAndWritten) {
  VmConfig c;
  ASSERT_TRUE(ApplyConfigJson(R"({"vsock": {"cid": 7, "uds_path": "/tmp/v"}})", "", c));
  ASSERT_TRUE(c.vsock);
  EXPECT_EQ(c.vsock->cid, 7u);
  VmConfig back;
  ASSERT_TRUE(ApplyConfigJson(ConfigToJson(c).dump(), "", back));
  ASSERT_TRUE(back.vsock);
  EXPECT_EQ(back.vsock->uds_path, "/tmp/v");
  EXPECT_FALSE(ConfigToJson(VmConfig{}).contains("vsock"));
  VmConfig bad;
  EXPECT_FALSE(ApplyConfigJson(R"({"vsock": {"cid": 2, "uds_path": "/tmp/v"}})", "", bad));
  EXPECT_FALSE(ApplyConfigJson(R"({"vsock": {"cid": "7", "uds_path": "/tmp/v"}})", "", bad));
}

TEST(VsockOptions, CountsAsAVirtioDevice_IdTaken) {
  VmConfig c;
  c.kernel = "k";
  c.vsock = VsockConfig{3, "/v"};
  EXPECT_TRUE(ValidateVmConfig(c));
  DiskConfig disk;
  disk.path = "a";
  disk.format = "raw";
  disk.id = "vsock0";
  c.disks.push_back(disk);
  EXPECT_FALSE(ValidateDeviceIds(c));
}

}  // namespace
}  // namespace kite::cli
