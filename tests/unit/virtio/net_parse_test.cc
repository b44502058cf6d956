// Unit tests of virtio-net's pure parts: MAC parsing/formatting/generation (net_mac.cc), the
// hostfwd parser (host_forward.cc) and the header/feature checks (net_header.cc).
#include <gtest/gtest.h>

#include "net_test_frames.h"
#include "virtio/net.h"
#include "virtio/net_backend.h"
#include "virtio/net_header.h"

namespace kite::virtio {
namespace {

using nettest::Hdr;

TEST(NetMac, Parse_Valid_RoundTrips) {
  auto mac = ParseMac("52:54:00:AB:cd:0f");
  ASSERT_TRUE(mac.has_value()) << mac.error().message();
  EXPECT_EQ(*mac, (MacAddress{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f}));
  EXPECT_EQ(FormatMac(*mac), "52:54:00:ab:cd:0f");
}

TEST(NetMac, Parse_Malformed_Refused) {
  for (const char* text : {"", "52:54:00:12:34", "52:54:00:12:34:567", "52-54-00-12-34-56",
                           "52:54:00:12:34:5g", "52:54:00:12:34:56:", " 52:54:00:12:34:5"}) {
    EXPECT_FALSE(ParseMac(text).has_value()) << text;
  }
}

TEST(NetMac, Parse_MulticastOrZero_Refused) {
  EXPECT_FALSE(ParseMac("01:00:5e:00:00:01").has_value());
  EXPECT_FALSE(ParseMac("ff:ff:ff:ff:ff:ff").has_value());
  EXPECT_FALSE(ParseMac("00:00:00:00:00:00").has_value());
}

TEST(NetMac, Generate_QemuPrefixUnicastAndVaries) {
  MacAddress a = GenerateMac();
  EXPECT_EQ(a[0], 0x52);
  EXPECT_EQ(a[1], 0x54);
  EXPECT_EQ(a[2], 0x00);
  bool differs = false;
  for (int i = 0; i < 8 && !differs; ++i) differs = GenerateMac() != a;
  EXPECT_TRUE(differs);
}

TEST(HostForward, Parse_QemuShortForm) {
  auto fwd = ParseHostForward("tcp::2222-:22");
  ASSERT_TRUE(fwd.has_value()) << fwd.error().message();
  EXPECT_FALSE(fwd->udp);
  EXPECT_EQ(fwd->host_addr, "");
  EXPECT_EQ(fwd->host_port, 2222);
  EXPECT_EQ(fwd->guest_addr, "");
  EXPECT_EQ(fwd->guest_port, 22);
}

TEST(HostForward, Parse_UdpWithAddresses) {
  auto fwd = ParseHostForward("udp:127.0.0.1:5555-10.0.2.15:6666");
  ASSERT_TRUE(fwd.has_value()) << fwd.error().message();
  EXPECT_TRUE(fwd->udp);
  EXPECT_EQ(fwd->host_addr, "127.0.0.1");
  EXPECT_EQ(fwd->host_port, 5555);
  EXPECT_EQ(fwd->guest_addr, "10.0.2.15");
  EXPECT_EQ(fwd->guest_port, 6666);
}

TEST(HostForward, Parse_EmptyProtocolIsTcp) {
  auto fwd = ParseHostForward("::8080-:80");
  ASSERT_TRUE(fwd.has_value());
  EXPECT_FALSE(fwd->udp);
}

TEST(HostForward, Parse_Malformed_Refused) {
  for (const char* text :
       {"", "tcp", "sctp::1-:2", "tcp::2222", "tcp::0-:22", "tcp::2222-:0", "tcp::65536-:22",
        "tcp::22x-:22", "tcp:1.2.3:22-:22", "tcp::22-999.0.0.1:22", "tcp::-:22", "tcp:2222-22"}) {
    EXPECT_FALSE(ParseHostForward(text).has_value()) << text;
  }
}

constexpr uint64_t kAll = kNetOffloadFeatures;

TEST(NetHeader, CheckTx_NoOffloads_Ok) {
  net::Header hdr{};
  EXPECT_EQ(CheckTxHeader(&hdr, 0, 60), TxHeaderVerdict::kOk);
}

TEST(NetHeader, CheckTx_DataValidAndUnknownFlagsCleared) {
  net::Header hdr = Hdr(net::kHdrFlagDataValid | 0x80);
  EXPECT_EQ(CheckTxHeader(&hdr, 0, 60), TxHeaderVerdict::kOk);
  EXPECT_EQ(hdr.flags, 0);
}

TEST(NetHeader, G25_CheckTx_CsumOffsetsBeyondFrame_Refused) {
  net::Header hdr = Hdr(net::kHdrFlagNeedsCsum, net::kGsoNone, 0, 50, 10);
  EXPECT_EQ(CheckTxHeader(&hdr, kAll, 61), TxHeaderVerdict::kBadCsumOffsets);
  EXPECT_EQ(CheckTxHeader(&hdr, kAll, 62), TxHeaderVerdict::kOk);
}

TEST(NetHeader, G25_CheckTx_UdpEcnOrZeroGsoSize_Refused) {
  net::Header udp = Hdr(1, net::kGsoUdp, 1400, 34, 6);
  EXPECT_EQ(CheckTxHeader(&udp, kAll, 3000), TxHeaderVerdict::kBadGso);
  net::Header ecn = Hdr(1, net::kGsoTcpv4 | net::kGsoEcn, 1400, 34, 16);
  EXPECT_EQ(CheckTxHeader(&ecn, kAll, 3000), TxHeaderVerdict::kGsoNotNegotiated);
  net::Header zero = Hdr(1, net::kGsoTcpv6, 0, 54, 16);
  EXPECT_EQ(CheckTxHeader(&zero, kAll, 3000), TxHeaderVerdict::kBadGso);
  net::Header nocsum = Hdr(0, net::kGsoTcpv4, 1400);
  EXPECT_EQ(CheckTxHeader(&nocsum, kAll, 3000), TxHeaderVerdict::kBadGso);
}

TEST(NetHeader, CheckRx_DataValidClearedWithoutGuestCsum) {
  net::Header hdr = Hdr(net::kHdrFlagDataValid);
  EXPECT_TRUE(CheckRxHeader(&hdr, 0));
  EXPECT_EQ(hdr.flags, 0);
  net::Header kept = Hdr(net::kHdrFlagDataValid);
  EXPECT_TRUE(CheckRxHeader(&kept, FeatureBit(net::kFeatureGuestCsum)));
  EXPECT_EQ(kept.flags, net::kHdrFlagDataValid);
}

}  // namespace
}  // namespace kite::virtio
