// QMP requests and replies: QEMU's checks and texts (research/CONTROL-PLANE.md §1, measured on
// QEMU 7.2), the id echo, ASCII-only output, events and the greeting.
#include <gtest/gtest.h>

#include "vmm/control/qmp_protocol.h"

namespace kite::qmp {
namespace {

using nlohmann::json;

BadRequest Bad(std::string_view text) {
  auto parsed = ParseRequest(text);
  EXPECT_TRUE(std::holds_alternative<BadRequest>(parsed)) << text;
  if (auto* bad = std::get_if<BadRequest>(&parsed)) return *bad;
  return {Err("not bad"), {}};
}

TEST(ParseRequest, Valid_AllMembers) {
  auto parsed = ParseRequest(R"({"execute":"stop","arguments":{"a":1},"id":"x"})");
  ASSERT_TRUE(std::holds_alternative<Request>(parsed));
  const Request& r = std::get<Request>(parsed);
  EXPECT_EQ(r.execute, "stop");
  EXPECT_EQ(r.arguments, json({{"a", 1}}));
  EXPECT_EQ(r.id, json("x"));
}

TEST(ParseRequest, NoArguments_EmptyObject) {
  auto parsed = ParseRequest(R"({"execute":"stop"})");
  ASSERT_TRUE(std::holds_alternative<Request>(parsed));
  EXPECT_EQ(std::get<Request>(parsed).arguments, json::object());
  EXPECT_FALSE(std::get<Request>(parsed).id.has_value());
}

TEST(ParseRequest, NotAnObject_NoId) {
  for (const char* text : {"[1,2]", "1", "\"abc\"", "null"}) {
    BadRequest bad = Bad(text);
    EXPECT_EQ(bad.error.message(), "QMP input must be a JSON object") << text;
    EXPECT_FALSE(bad.id.has_value());
  }
}

TEST(ParseRequest, ExecuteNotString_IdEchoed) {
  BadRequest bad = Bad(R"({"execute": 1, "id": 7})");
  EXPECT_EQ(bad.error.message(), "QMP input member 'execute' must be a string");
  EXPECT_EQ(bad.id, json(7));
}

TEST(ParseRequest, MissingExecute) {
  BadRequest bad = Bad(R"({"arguments": {}, "id": 8})");
  EXPECT_EQ(bad.error.message(), "QMP input lacks member 'execute'");
  EXPECT_EQ(bad.id, json(8));
}

TEST(ParseRequest, ArgumentsNotObject) {
  for (const char* text :
       {R"({"execute":"x","arguments":[]})", R"({"execute":"x","arguments":null})"}) {
    EXPECT_EQ(Bad(text).error.message(), "QMP input member 'arguments' must be an object");
  }
}

TEST(ParseRequest, ExtraMember_Unexpected) {
  EXPECT_EQ(Bad(R"({"execute":"x","foo":1})").error.message(),
            "QMP input member 'foo' is unexpected");
  EXPECT_EQ(Bad(R"({"exec-oob":"x"})").error.message(),
            "QMP input member 'exec-oob' is unexpected");
}

TEST(ParseRequest, BadJson_ParseError) {
  BadRequest bad = Bad(R"({"execute": })");
  EXPECT_EQ(bad.error.message().rfind("JSON parse error, ", 0), 0u) << bad.error.message();
  EXPECT_EQ(bad.error.kind(), ErrorKind::kGeneric);
  EXPECT_FALSE(bad.id.has_value());
}

TEST(ParseRequest, InvalidUtf8_ParseError) {
  BadRequest bad = Bad("{\"execute\": \"query-\xc3\x28\"}");
  EXPECT_EQ(bad.error.message().rfind("JSON parse error, ", 0), 0u);
}

TEST(ParseRequest, DuplicateKey_Refused) {
  EXPECT_EQ(Bad(R"({"execute":"query-status","execute":"quit"})").error.message(),
            "JSON parse error, duplicate key");
  EXPECT_EQ(Bad(R"({"execute":"x","arguments":{"a":1,"a":2}})").error.message(),
            "JSON parse error, duplicate key");
}

TEST(ParseJson, SameKeyInSiblingObjects_Fine) {
  EXPECT_TRUE(ParseJson(R"([{"a":1},{"a":2}])"));
}

TEST(ErrorClass, EveryKind) {
  EXPECT_STREQ(ErrorClass(ErrorKind::kGeneric), "GenericError");
  EXPECT_STREQ(ErrorClass(ErrorKind::kCommandNotFound), "CommandNotFound");
  EXPECT_STREQ(ErrorClass(ErrorKind::kDeviceNotFound), "DeviceNotFound");
  EXPECT_STREQ(ErrorClass(ErrorKind::kDeviceNotActive), "DeviceNotActive");
  EXPECT_STREQ(ErrorClass(ErrorKind::kKvmMissingCap), "KVMMissingCap");
}

TEST(ReturnLine, CompactWithIdAndCrlf) {
  EXPECT_EQ(ReturnLine(json::object(), std::nullopt), "{\"return\":{}}\r\n");
  EXPECT_EQ(ReturnLine(json::object(), json({{"x", {1, 2}}})),
            "{\"return\":{},\"id\":{\"x\":[1,2]}}\r\n");
}

TEST(ErrorLine, ClassAndDesc) {
  EXPECT_EQ(ErrorLine(Err(ErrorKind::kDeviceNotFound, "Device 'x' not found"), json(nullptr)),
            "{\"error\":{\"class\":\"DeviceNotFound\",\"desc\":\"Device 'x' not found\"},"
            "\"id\":null}\r\n");
}

TEST(ToWire, NonAsciiEscaped_InvalidUtf8Replaced) {
  EXPECT_EQ(ToWire(json("\xc3\xa9\xf0\x9f\x98\x80")), "\"\\u00e9\\ud83d\\ude00\"");
  EXPECT_EQ(ToWire(json("a\xff")), "\"a\\ufffd\"");
  EXPECT_EQ(ToWire(json("\x01")), "\"\\u0001\"");
}

TEST(EventLine, TimestampEventData) {
  Event event{"SHUTDOWN", {{"guest", false}, {"reason", "host-qmp-quit"}}, 12, 34};
  EXPECT_EQ(EventLine(event),
            "{\"timestamp\":{\"seconds\":12,\"microseconds\":34},\"event\":\"SHUTDOWN\","
            "\"data\":{\"guest\":false,\"reason\":\"host-qmp-quit\"}}\r\n");
  EXPECT_EQ(EventLine({"STOP", nullptr, 1, 2}),
            "{\"timestamp\":{\"seconds\":1,\"microseconds\":2},\"event\":\"STOP\"}\r\n");
}

TEST(GreetingLine, VersionAndNoCapabilities) {
  std::string line = GreetingLine();
  ASSERT_GE(line.size(), 2u);
  EXPECT_EQ(line.substr(line.size() - 2), "\r\n");
  json greeting = json::parse(line);
  EXPECT_EQ(greeting["QMP"]["capabilities"], json::array());
  EXPECT_EQ(greeting["QMP"]["version"], VersionJson());
  EXPECT_EQ(VersionJson()["package"], std::string("kite ") + Version());
  EXPECT_TRUE(VersionJson()["qemu"]["major"].is_number_integer());
}

}  // namespace
}  // namespace kite::qmp
