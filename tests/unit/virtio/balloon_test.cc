// Unit tests of the virtio memory balloon (src/virtio/balloon.cc, balloon_request.cc), driven
// through real virtio::Queues by the fake driver: inflate really gives host memory back
// (mincore), bad PFNs and bad chains are ignored and counted, free page reports, statistics
// and their polls, BALLOON_CHANGE's rate, device state. No KVM.
#include "virtio/balloon.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <asio/io_context.hpp>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "testing/huge_page_pool.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/queue.h"
#include "virtio/virtio_spec.h"

namespace kite::virtio {
namespace {

using testing::FakeDriver;

constexpr uint16_t kSize = 32;
constexpr uint64_t kPage = 4096;

// A clock and one-shot timer the test drives (ThrottleTime).
struct FakeClock {
  uint64_t now = 1'000'000'000'000;
};
class FakeTime : public ThrottleTime {
 public:
  FakeTime(FakeClock* clock, std::vector<FakeTime*>* all) : clock_(clock) { all->push_back(this); }
  uint64_t NowNs() override { return clock_->now; }
  void RunAfter(uint64_t delay_ns, std::function<void()> fn) override {
    due_ = clock_->now + delay_ns;
    fn_ = std::move(fn);
  }
  // Runs the pending callback if it is due.
  bool FireIfDue() {
    if (!fn_ || clock_->now < due_) return false;
    auto fn = std::move(fn_);
    fn_ = nullptr;
    fn();
    return true;
  }
  bool pending() const { return static_cast<bool>(fn_); }

 private:
  FakeClock* clock_;
  uint64_t due_ = 0;
  std::function<void()> fn_;
};

uint64_t AllFeatures() {
  return FeatureBit(kFeatureVersion1) | FeatureBit(balloon::kFeatureStatsVq) |
         FeatureBit(balloon::kFeatureReporting);
}

class BalloonTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(AllFeatures()); }

  void Start(uint64_t features, const GuestMemory* memory = nullptr) {
    device_.reset();  // its timers go with it
    times_.clear();
    BalloonOptions options;
    options.target_pages = 100;
    options.free_page_reporting = true;
    options.stats_interval_s = 5;
    options.make_time = [this] { return std::make_unique<FakeTime>(&clock_, &times_); };
    Result<std::shared_ptr<BalloonDevice>> dev = CreateVirtioBalloon(options, &loop_);
    ASSERT_TRUE(dev.has_value()) << dev.error().message();
    device_ = *dev;
    device_->OnActualChange([this](uint32_t actual) { events_.push_back(actual); });
    for (size_t q = 0; q < 4; ++q) {
      queues_[q]->Reset();
      drivers_[q]->Configure(queues_[q].get());
      ASSERT_TRUE(queues_[q]->Activate(&drivers_[0]->memory(), false, true));
    }
    ActiveQueues active;
    active.memory = memory ? memory : &drivers_[0]->memory();
    active.features = features;
    active.queues = std::span<Queue* const>(queue_ptrs_);
    active.signal_used = [this](uint16_t q) {
      if (queues_[q]->NeedsInterrupt()) signals_.push_back(q);
    };
    active.mark_broken = [this](const std::string& why) { broken_.push_back(why); };
    ASSERT_TRUE(device_->Activate(std::move(active)));
    Run();
  }

  void Run() {
    loop_.restart();
    loop_.run();
  }
  // Publishes queue q's chains, kicks it and runs the loop.
  void Kick(uint16_t q) {
    drivers_[q]->Publish();
    device_->ProcessQueue(q);
    Run();
  }
  // `pages` touched pages (bytes 0x5a), page-aligned, in the low region.
  uint64_t TouchedPages(uint32_t pages) {
    uint64_t addr = (drivers_[0]->Alloc((pages + 1) * kPage) + kPage - 1) / kPage * kPage;
    std::vector<uint8_t> bytes(pages * kPage, 0x5a);
    drivers_[0]->WriteBytes(addr, bytes.data(), bytes.size());
    return addr;
  }
  size_t Resident(uint64_t addr, uint32_t pages) {
    std::span<uint8_t> host = drivers_[0]->memory().Slice(GuestAddr(addr), pages * kPage);
    std::vector<unsigned char> vec(pages);
    EXPECT_EQ(::mincore(host.data(), host.size(), vec.data()), 0);
    size_t n = 0;
    for (unsigned char v : vec) n += v & 1;
    return n;
  }
  // A chain on queue q carrying `pfns` as le32, then kicked; returns its used element.
  std::optional<UsedElement> SendPfns(uint16_t q, const std::vector<uint32_t>& pfns) {
    uint32_t len = static_cast<uint32_t>(pfns.size() * 4);
    uint64_t buf = drivers_[0]->Alloc(std::max<uint32_t>(len, 4));
    drivers_[0]->WriteBytes(buf, pfns.data(), len);
    drivers_[q]->AddChain({{buf, len, false}});
    Kick(q);
    return drivers_[q]->PopUsed();
  }
  static std::vector<uint32_t> Pfns(uint64_t addr, uint32_t pages) {
    std::vector<uint32_t> out;
    for (uint32_t i = 0; i < pages; ++i) out.push_back(static_cast<uint32_t>(addr / kPage + i));
    return out;
  }
  // A stats buffer with (tag, value) entries on queue 2, kicked.
  uint16_t SendStats(const std::vector<std::pair<uint16_t, uint64_t>>& entries) {
    std::vector<uint8_t> bytes;
    for (auto [tag, value] : entries) {
      uint8_t e[10];
      std::memcpy(e, &tag, 2);
      std::memcpy(e + 2, &value, 8);
      bytes.insert(bytes.end(), e, e + 10);
    }
    uint64_t buf = drivers_[0]->Alloc(static_cast<uint32_t>(bytes.size()));
    drivers_[0]->WriteBytes(buf, bytes.data(), bytes.size());
    uint16_t head = drivers_[2]->AddChain({{buf, static_cast<uint32_t>(bytes.size()), false}});
    Kick(2);
    return head;
  }
  void FireTimers() {
    for (FakeTime* t : times_) t->FireIfDue();
    Run();
  }

  asio::io_context loop_;
  FakeClock clock_;
  std::vector<FakeTime*> times_;  // [0] statistics polls, [1] BALLOON_CHANGE's rate
  FakeDriver first_{{.queue_size = kSize, .low_size = 8ull << 20}};
  FakeDriver deflate_{&first_, kSize}, stats_{&first_, kSize}, report_{&first_, kSize};
  std::vector<FakeDriver*> drivers_ = {&first_, &deflate_, &stats_, &report_};
  std::vector<std::unique_ptr<Queue>> queues_ = [] {
    std::vector<std::unique_ptr<Queue>> out;
    for (int i = 0; i < 4; ++i) out.push_back(std::make_unique<Queue>(kSize));
    return out;
  }();
  std::vector<Queue*> queue_ptrs_ = {queues_[0].get(), queues_[1].get(), queues_[2].get(),
                                     queues_[3].get()};
  std::shared_ptr<BalloonDevice> device_;
  std::vector<uint16_t> signals_;
  std::vector<std::string> broken_;
  std::vector<uint32_t> events_;
};

uint32_t ConfigWord(BalloonDevice& d, uint64_t offset) {
  uint8_t b[4] = {};
  d.ReadConfig(offset, b);
  uint32_t v;
  std::memcpy(&v, b, 4);
  return v;
}

TEST(BalloonDevice, Identity_FeaturesQueuesConfig) {
  asio::io_context loop;
  BalloonOptions options;
  options.target_pages = 0x1234;
  options.deflate_on_oom = true;
  auto dev = CreateVirtioBalloon(options, &loop);
  ASSERT_TRUE(dev.has_value());
  EXPECT_EQ((*dev)->device_id(), kDeviceIdBalloon);
  uint64_t f = (*dev)->device_features();
  EXPECT_TRUE(f & FeatureBit(kFeatureVersion1));
  EXPECT_TRUE(f & FeatureBit(balloon::kFeatureStatsVq));
  EXPECT_TRUE(f & FeatureBit(balloon::kFeatureDeflateOnOom));
  EXPECT_FALSE(f & FeatureBit(balloon::kFeatureReporting));
  EXPECT_FALSE(f & FeatureBit(balloon::kFeatureMustTellHost));  // 4 KiB pages
  EXPECT_EQ((*dev)->queue_max_sizes().size(), 3u);
  EXPECT_EQ(ConfigWord(**dev, balloon::kConfigNumPages), 0x1234u);
  EXPECT_EQ(ConfigWord(**dev, balloon::kConfigActual), 0u);
  EXPECT_EQ(ConfigWord(**dev, 8), 0u);
  EXPECT_EQ(ConfigWord(**dev, 0x100), 0u);  // out of range: zeros
  options.free_page_reporting = true;
  options.host_page_size = 2ull << 20;
  auto huge = CreateVirtioBalloon(options, &loop);
  ASSERT_TRUE(huge.has_value());
  EXPECT_TRUE((*huge)->device_features() & FeatureBit(balloon::kFeatureReporting));
  EXPECT_TRUE((*huge)->device_features() & FeatureBit(balloon::kFeatureMustTellHost));
  EXPECT_EQ((*huge)->queue_max_sizes().size(), 4u);
}

TEST(BalloonDevice, Create_BadArguments_Refused) {
  asio::io_context loop;
  EXPECT_FALSE(CreateVirtioBalloon({}, nullptr).has_value());
  BalloonOptions options;
  options.queue_size = 100;
  EXPECT_FALSE(CreateVirtioBalloon(options, &loop).has_value());
}

// Linux numbers the queues of the features it accepted without gaps.
TEST(BalloonRequest, QueueRole_CompactAfterRefusedFeatures) {
  using balloon::Role;
  uint64_t all = AllFeatures();
  EXPECT_EQ(balloon::QueueRole(0, all), Role::kInflate);
  EXPECT_EQ(balloon::QueueRole(1, all), Role::kDeflate);
  EXPECT_EQ(balloon::QueueRole(2, all), Role::kStats);
  EXPECT_EQ(balloon::QueueRole(3, all), Role::kReporting);
  EXPECT_EQ(balloon::QueueRole(4, all), Role::kNone);
  uint64_t no_stats = all & ~FeatureBit(balloon::kFeatureStatsVq);
  EXPECT_EQ(balloon::QueueRole(2, no_stats), Role::kReporting);
  EXPECT_EQ(balloon::QueueRole(3, no_stats), Role::kNone);
  EXPECT_EQ(balloon::QueueRole(2, FeatureBit(kFeatureVersion1)), Role::kNone);
}

TEST_F(BalloonTest, Config_DriverWritesActual_NumPagesReadOnly_EventAtOnce) {
  uint32_t actual = 42;
  device_->WriteConfig(balloon::kConfigActual, {reinterpret_cast<uint8_t*>(&actual), 4});
  uint32_t bogus = 7;
  device_->WriteConfig(balloon::kConfigNumPages, {reinterpret_cast<uint8_t*>(&bogus), 4});
  Run();
  EXPECT_EQ(device_->actual(), 42u);
  EXPECT_EQ(ConfigWord(*device_, balloon::kConfigActual), 42u);
  EXPECT_EQ(ConfigWord(*device_, balloon::kConfigNumPages), 100u);
  EXPECT_EQ(events_, std::vector<uint32_t>{42});
  device_->SetTarget(300);
  EXPECT_EQ(ConfigWord(*device_, balloon::kConfigNumPages), 300u);
}

TEST_F(BalloonTest, ActualChanges_EventsAtMostOncePerSecond_LatestValue) {
  for (uint32_t actual : {256u, 512u, 768u}) {
    device_->WriteConfig(balloon::kConfigActual, {reinterpret_cast<uint8_t*>(&actual), 4});
    Run();
  }
  EXPECT_EQ(events_, std::vector<uint32_t>{256});  // the rest wait for the second to pass
  clock_.now += 999'000'000;
  FireTimers();
  EXPECT_EQ(events_.size(), 1u);
  clock_.now += 1'000'000;
  FireTimers();
  EXPECT_EQ(events_, (std::vector<uint32_t>{256, 768}));
  clock_.now += 5'000'000'000;
  uint32_t actual = 0;
  device_->WriteConfig(balloon::kConfigActual, {reinterpret_cast<uint8_t*>(&actual), 4});
  Run();
  EXPECT_EQ(events_, (std::vector<uint32_t>{256, 768, 0}));  // a second later: at once
}

TEST_F(BalloonTest, Inflate_GivesHostPagesBack_UsedLen0) {
  uint64_t addr = TouchedPages(64);
  uint64_t other = TouchedPages(4);
  ASSERT_EQ(Resident(addr, 64), 64u);
  std::optional<UsedElement> used = SendPfns(0, Pfns(addr, 64));
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(Resident(addr, 64), 0u);
  EXPECT_EQ(Resident(other, 4), 4u);  // pages not inflated stay
  EXPECT_EQ(drivers_[0]->ReadObj<uint8_t>(other), 0x5a);
  BalloonCounters c = device_->balloon_counters();
  EXPECT_EQ(c.inflated_pages, 64u);
  EXPECT_EQ(c.released_bytes, 64 * kPage);
  EXPECT_EQ(c.bad_pfns, 0u);
  EXPECT_EQ(signals_, std::vector<uint16_t>{0});
}

TEST_F(BalloonTest, Inflate_ScatteredPfns_EachReleased) {
  uint64_t addr = TouchedPages(16);
  std::vector<uint32_t> pfns;
  for (uint32_t i = 0; i < 16; i += 2) pfns.push_back(static_cast<uint32_t>(addr / kPage + i));
  ASSERT_TRUE(SendPfns(0, pfns).has_value());
  EXPECT_EQ(Resident(addr, 16), 8u);
  for (uint32_t i = 0; i < 16; ++i) {
    EXPECT_EQ(drivers_[0]->ReadObj<uint8_t>(addr + i * kPage), i % 2 == 0 ? 0 : 0x5a) << i;
  }
}

// A PFN outside guest RAM (past its end, in the hole between the regions) is never touched.
TEST_F(BalloonTest, Inflate_BadPfns_IgnoredAndCounted_GoodOnesReleased) {
  uint64_t addr = TouchedPages(2);
  uint32_t past_end = static_cast<uint32_t>(drivers_[0]->EndAddr() / kPage);
  uint32_t in_hole = static_cast<uint32_t>(drivers_[0]->HoleAddr() / kPage);
  std::optional<UsedElement> used =
      SendPfns(0, {past_end, static_cast<uint32_t>(addr / kPage), 0xffffffffu, in_hole,
                   static_cast<uint32_t>(addr / kPage + 1)});
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, 0u);
  BalloonCounters c = device_->balloon_counters();
  EXPECT_EQ(c.bad_pfns, 3u);
  EXPECT_EQ(c.inflated_pages, 2u);
  EXPECT_EQ(Resident(addr, 2), 0u);
  EXPECT_TRUE(broken_.empty());
  EXPECT_EQ(device_->counters().drops, 3u);
}

TEST_F(BalloonTest, Inflate_TrailingBytes_WholePfnsOnly) {
  uint64_t addr = TouchedPages(2);
  uint32_t pfns[2] = {static_cast<uint32_t>(addr / kPage), static_cast<uint32_t>(addr / kPage + 1)};
  uint64_t buf = drivers_[0]->Alloc(8);
  drivers_[0]->WriteBytes(buf, pfns, 8);
  drivers_[0]->AddChain({{buf, 6, false}});  // one PFN and two stray bytes
  Kick(0);
  ASSERT_TRUE(drivers_[0]->PopUsed().has_value());
  EXPECT_EQ(Resident(addr, 2), 1u);
  EXPECT_EQ(device_->balloon_counters().inflated_pages, 1u);
}

TEST_F(BalloonTest, Inflate_WritableOnlyChain_ReturnedUnused) {
  uint64_t addr = TouchedPages(1);
  drivers_[0]->AddChain({{addr, 4096, true}});
  Kick(0);
  std::optional<UsedElement> used = drivers_[0]->PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(Resident(addr, 1), 1u);
  EXPECT_EQ(device_->balloon_counters().inflated_pages, 0u);
}

// More PFNs in one chain than the device reads (4096): the rest are counted, not released.
TEST_F(BalloonTest, Inflate_HugeChain_CappedPfnsCounted) {
  uint64_t addr = TouchedPages(1);
  std::vector<uint32_t> pfns(5000, static_cast<uint32_t>(addr / kPage));
  ASSERT_TRUE(SendPfns(0, pfns).has_value());
  BalloonCounters c = device_->balloon_counters();
  EXPECT_EQ(c.inflated_pages, 4096u);
  EXPECT_EQ(c.bad_pfns, 5000u - 4096u);
}

TEST_F(BalloonTest, Deflate_CountsPages_BadPfnsIgnored) {
  uint64_t addr = TouchedPages(3);
  ASSERT_TRUE(SendPfns(0, Pfns(addr, 3)).has_value());
  std::optional<UsedElement> used = SendPfns(1, {static_cast<uint32_t>(addr / kPage), 0xfffffff0u});
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, 0u);
  BalloonCounters c = device_->balloon_counters();
  EXPECT_EQ(c.deflated_pages, 1u);
  EXPECT_EQ(c.bad_pfns, 1u);
  // The guest may use the page again: it reads zeros, writes stick.
  drivers_[0]->WriteObj<uint8_t>(addr, 0x33);
  EXPECT_EQ(drivers_[0]->ReadObj<uint8_t>(addr), 0x33);
}

TEST_F(BalloonTest, Report_FreePagesReleased_ChainReturned) {
  uint64_t addr = TouchedPages(32);
  drivers_[3]->AddChain({{addr, 16 * kPage, true}, {addr + 16 * kPage, 16 * kPage, true}});
  Kick(3);
  std::optional<UsedElement> used = drivers_[3]->PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(Resident(addr, 32), 0u);
  EXPECT_EQ(device_->balloon_counters().reported_bytes, 32 * kPage);
  EXPECT_EQ(device_->balloon_counters().inflated_pages, 0u);
}

// A report may be larger than the queues' usual 64 MiB cap (Linux: 32 blocks of 4 MiB); here
// 20 descriptors of 4 MiB over the same memory (80 MiB) are still a report, not a bad chain.
TEST_F(BalloonTest, Report_LargerThan64MiB_Accepted) {
  std::vector<testing::FakeBuffer> buffers(20, {drivers_[0]->HighAddr(), 4u << 20, true});
  drivers_[3]->AddChain(buffers);
  Kick(3);
  std::optional<UsedElement> used = drivers_[3]->PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(queues_[3]->stats().bad_chains, 0u);
  EXPECT_GT(device_->balloon_counters().reported_bytes, 0u);
}

TEST_F(BalloonTest, Stats_Read_HeldUntilPoll_ThenRefreshed) {
  SendStats({{4, 1000}, {5, 5000}, {99, 7}, {0, 3}});
  BalloonStats s = device_->stats();
  EXPECT_EQ(s.values[4], 1000u);  // free memory
  EXPECT_EQ(s.values[5], 5000u);  // total memory
  EXPECT_EQ(s.values[0], 3u);
  EXPECT_EQ(s.values[1], balloon::kStatUnset);
  EXPECT_GT(s.last_update, 0);
  EXPECT_FALSE(drivers_[2]->PopUsed().has_value());  // held: the device asks later
  clock_.now += 5'000'000'000;                       // stats_interval_s = 5
  FireTimers();
  std::optional<UsedElement> used = drivers_[2]->PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->len, 0u);
  SendStats({{4, 2000}});
  EXPECT_EQ(device_->stats().values[4], 2000u);
  EXPECT_EQ(device_->stats().values[5], 5000u);  // kept
}

// Linux primes statsq and kicks before DRIVER_OK (a kick the transport drops): the device reads
// the buffer when it is activated.
TEST_F(BalloonTest, Stats_BufferBeforeActivation_ReadAtActivation) {
  std::vector<uint8_t> entry(10, 0);
  entry[0] = 5;     // total memory
  entry[3] = 0x20;  // 0x2000 bytes
  uint64_t buf = drivers_[0]->Alloc(10);
  drivers_[0]->WriteBytes(buf, entry.data(), entry.size());
  drivers_[2]->AddChain({{buf, 10, false}});
  drivers_[2]->Publish();  // no kick
  Start(AllFeatures());
  EXPECT_EQ(device_->stats().values[5], 0x2000u);
  EXPECT_FALSE(drivers_[2]->PopUsed().has_value());  // held
}

TEST_F(BalloonTest, Stats_IntervalZero_NeverAsks_SetInterval_AsksAtOnce) {
  SendStats({{4, 1}});
  device_->SetStatsInterval(0);
  Run();
  clock_.now += 60'000'000'000;
  FireTimers();
  EXPECT_FALSE(drivers_[2]->PopUsed().has_value());
  device_->SetStatsInterval(2);
  Run();
  FireTimers();
  EXPECT_TRUE(drivers_[2]->PopUsed().has_value());
  EXPECT_EQ(device_->stats_interval(), 2u);
}

TEST_F(BalloonTest, Stats_SecondBufferWhileHeld_ReturnsTheFirst) {
  uint16_t first = SendStats({{4, 1}});
  SendStats({{4, 2}});
  std::optional<UsedElement> used = drivers_[2]->PopUsed();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, first);
  EXPECT_EQ(device_->stats().values[4], 2u);
}

TEST_F(BalloonTest, G5_BrokenRing_MarksBroken_LaterKicksIgnored) {
  drivers_[0]->AddAvail(kSize + 3);
  Kick(0);
  ASSERT_EQ(broken_.size(), 1u);
  uint64_t addr = TouchedPages(1);
  SendPfns(1, Pfns(addr, 1));
  EXPECT_EQ(device_->balloon_counters().deflated_pages, 0u);
}

TEST_F(BalloonTest, G33_AfterReset_KickReleasesNothing_ActualZero) {
  uint32_t actual = 10;
  device_->WriteConfig(balloon::kConfigActual, {reinterpret_cast<uint8_t*>(&actual), 4});
  Run();
  device_->Reset();
  Run();
  EXPECT_EQ(device_->actual(), 0u);
  uint64_t addr = TouchedPages(1);
  uint64_t buf = drivers_[0]->Alloc(4);
  drivers_[0]->WriteObj<uint32_t>(buf, static_cast<uint32_t>(addr / kPage));
  drivers_[0]->AddChain({{buf, 4, false}});
  Kick(0);
  EXPECT_EQ(Resident(addr, 1), 1u);
  EXPECT_EQ(device_->target(), 100u);  // the host's request stays
}

TEST_F(BalloonTest, DeviceState_RoundTrip_BadBytesRefused) {
  device_->SetTarget(777);
  uint32_t actual = 555;
  device_->WriteConfig(balloon::kConfigActual, {reinterpret_cast<uint8_t*>(&actual), 4});
  device_->SetStatsInterval(9);
  std::vector<uint8_t> state = device_->SaveDeviceState();
  BalloonOptions options;
  options.free_page_reporting = true;
  auto fresh = CreateVirtioBalloon(options, &loop_);
  ASSERT_TRUE(fresh.has_value());
  std::vector<uint8_t> bad = state;
  bad[0] = 9;
  EXPECT_FALSE((*fresh)->RestoreDeviceState(bad));
  EXPECT_FALSE((*fresh)->RestoreDeviceState(std::span<const uint8_t>(state).first(5)));
  EXPECT_FALSE((*fresh)->RestoreDeviceState({}));
  EXPECT_EQ((*fresh)->target(), 0u);
  ASSERT_TRUE((*fresh)->RestoreDeviceState(state));
  EXPECT_EQ((*fresh)->target(), 777u);
  EXPECT_EQ((*fresh)->actual(), 555u);
  EXPECT_EQ((*fresh)->stats_interval(), 9u);
  EXPECT_EQ((*fresh)->SaveDeviceState(), state);
}

TEST(BalloonRequest, ParseStats_UnknownTagsAndTrailingBytes) {
  uint8_t bytes[25] = {};
  uint16_t tag = 7;
  uint64_t value = 123;
  std::memcpy(bytes, &tag, 2);
  std::memcpy(bytes + 2, &value, 8);
  tag = 200;
  std::memcpy(bytes + 10, &tag, 2);
  iovec iov{bytes, sizeof(bytes)};
  balloon::StatValues values;
  values.fill(balloon::kStatUnset);
  balloon::StatsParse p = balloon::ParseStats({&iov, 1}, &values);
  EXPECT_EQ(p.entries, 1u);
  EXPECT_EQ(p.unknown, 1u);
  EXPECT_TRUE(p.trailing);
  EXPECT_EQ(values[7], 123u);
}

// Huge-page RAM (4 pages added to the host's 2 MiB pool: root needed). The PFNs name pages of
// that memory; the queues live in the fake driver's. A huge page goes back only when all 512
// of its 4 KiB pages are inflated; a deflate in between keeps it.
TEST_F(BalloonTest, HugePages_OnlyWholeHugePagesGoBack) {
  GuestMemory::Backing backing;
  backing.hugepage_size = 2ull << 20;
  testing::HugePagePool pool(4);
  KITE_REQUIRE_HUGE_PAGES(pool);
  auto huge = GuestMemory::Create(8ull << 20, backing);
  ASSERT_TRUE(huge) << huge.error().message();
  std::span<uint8_t> all = huge->Slice(GuestAddr(0), 8 << 20);
  std::memset(all.data(), 0x77, all.size());
  device_->Reset();
  Start(AllFeatures() | FeatureBit(balloon::kFeatureMustTellHost), &*huge);
  const uint32_t first = (2u << 20) / kPage;  // the second huge page
  std::vector<uint32_t> most;
  for (uint32_t i = 0; i < 511; ++i) most.push_back(first + i);
  ASSERT_TRUE(SendPfns(0, most).has_value());
  EXPECT_EQ(device_->balloon_counters().released_bytes, 0u);
  ASSERT_TRUE(SendPfns(1, {first}).has_value());        // one back to the guest
  ASSERT_TRUE(SendPfns(0, {first + 511}).has_value());  // 511 of 512 inflated
  EXPECT_EQ(device_->balloon_counters().released_bytes, 0u);
  EXPECT_EQ(huge->ReadObj<uint8_t>(GuestAddr(2 << 20)).value(), 0x77);
  ASSERT_TRUE(SendPfns(0, {first}).has_value());  // all 512
  EXPECT_EQ(device_->balloon_counters().released_bytes, 2u << 20);
  EXPECT_EQ(huge->ReadObj<uint8_t>(GuestAddr((2 << 20) + 100)).value(), 0);
  EXPECT_EQ(huge->ReadObj<uint8_t>(GuestAddr(4 << 20)).value(), 0x77);
}

}  // namespace
}  // namespace kite::virtio
