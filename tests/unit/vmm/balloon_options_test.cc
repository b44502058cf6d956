// --balloon and the JSON config's "balloon" (vmm/balloon_options.h), through the command line
// parser and ValidateVmConfig too.
#include "vmm/balloon_options.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vmm/cli.h"
#include "vmm/config_json.h"

namespace kite::cli {
namespace {

using nlohmann::json;

Result<std::string> NoFiles(const std::string&) {
  return Err("no such file");
}

TEST(BalloonOption, AllKeys_CloudHypervisorNames) {
  auto b = ParseBalloonOption(
      "size=256M,deflate_on_oom=on,free_page_reporting=on,statistics_interval=5,id=bal");
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(b->size, 256u << 20);
  EXPECT_TRUE(b->deflate_on_oom);
  EXPECT_TRUE(b->free_page_reporting);
  EXPECT_EQ(b->statistics_interval, 5u);
  EXPECT_EQ(b->id, "bal");
  EXPECT_EQ(BalloonId(*b), "bal");
  EXPECT_EQ(BalloonId(BalloonConfig{}), "balloon0");
}

TEST(BalloonOption, BadValues_NameTheSetting) {
  EXPECT_NE(ParseBalloonOption("size=lots").error().message().find("size=lots"), std::string::npos);
  EXPECT_NE(ParseBalloonOption("deflate_on_oom=maybe").error().message().find("on or off"),
            std::string::npos);
  EXPECT_FALSE(ParseBalloonOption("statistics_interval=-1"));
  EXPECT_FALSE(ParseBalloonOption("statistics_interval=4294967296"));
  EXPECT_NE(ParseBalloonOption("bogus=1").error().message().find("unknown balloon setting"),
            std::string::npos);
  EXPECT_FALSE(ParseBalloonOption("size"));
}

TEST(BalloonOption, Validate_SizeWithinRamAndPageAligned) {
  BalloonConfig b;
  b.size = 512ull << 20;
  EXPECT_TRUE(ValidateBalloon(b, 512ull << 20));
  EXPECT_NE(ValidateBalloon(b, 256ull << 20).error().message().find("more than the guest"),
            std::string::npos);
  b.size = 4097;
  EXPECT_FALSE(ValidateBalloon(b, 512ull << 20));
  b.size = 0;
  b.id = "9bad";
  EXPECT_FALSE(ValidateBalloon(b, 512ull << 20));
}

TEST(BalloonOption, Json_RoundTrip_AndFirecrackerNames) {
  BalloonConfig b{.size = 64ull << 20,
                  .deflate_on_oom = true,
                  .free_page_reporting = false,
                  .statistics_interval = 3,
                  .id = "b1"};
  auto back = BalloonFromJson(BalloonToJson(b));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, b);
  auto fc = BalloonFromJson(
      json{{"amount_mib", 128}, {"deflate_on_oom", false}, {"stats_polling_interval_s", 1}});
  ASSERT_TRUE(fc) << fc.error().message();
  EXPECT_EQ(fc->size, 128ull << 20);
  EXPECT_EQ(fc->statistics_interval, 1u);
  EXPECT_EQ(BalloonFromJson(json{{"size", "1G"}})->size, 1ull << 30);
  EXPECT_FALSE(BalloonFromJson(json{{"deflate_on_oom", "yes"}}));
  EXPECT_FALSE(BalloonFromJson(json{{"amount_mib", -1}}));
  EXPECT_FALSE(BalloonFromJson(json{{"nope", 1}}));
  EXPECT_FALSE(BalloonFromJson(json::array()));
}

TEST(BalloonOption, CommandLine_ValidatedAndInTheConfigJson) {
  std::vector<std::string> args = {"run",
                                   "--kernel",
                                   "vmlinux",
                                   "--memory",
                                   "512M",
                                   "--balloon",
                                   "size=128M,free_page_reporting=on"};
  auto r = ParseCommandLine(args, NoFiles);
  ASSERT_TRUE(r) << r.error().message();
  const VmConfig& c = std::get<cli::Run>(*r).config;
  ASSERT_TRUE(c.balloon.has_value());
  EXPECT_EQ(c.balloon->size, 128ull << 20);
  EXPECT_TRUE(ValidateVmConfig(c));
  json j = ConfigToJson(c);
  EXPECT_EQ(j["balloon"]["size"], 128ull << 20);
  EXPECT_EQ(j["balloon"]["free_page_reporting"], true);
  VmConfig too_big = c;
  too_big.balloon->size = 1ull << 30;
  EXPECT_FALSE(ValidateVmConfig(too_big));
  VmConfig clash = c;
  clash.balloon->id = "vda";
  DiskConfig disk;
  disk.path = "d.raw";
  disk.format = "raw";
  clash.disks.push_back(disk);
  EXPECT_NE(ValidateVmConfig(clash).error().message().find("used twice"), std::string::npos);
}

}  // namespace
}  // namespace kite::cli
