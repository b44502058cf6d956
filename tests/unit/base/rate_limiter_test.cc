// The token buckets with a fake clock: exact refill arithmetic, the one-time burst, requests
// larger than the bucket, and the two buckets of a RateLimiter together.
#include "base/rate_limiter.h"

#include <gtest/gtest.h>

namespace kite {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;
constexpr uint64_t kStart = 5 * kSecond;  // any start; the buckets only see differences

TEST(TokenBucket, Default_IsUnlimited) {
  TokenBucket bucket;
  EXPECT_TRUE(bucket.unlimited());
  EXPECT_TRUE(bucket.TryConsume(UINT64_MAX, 0));
  EXPECT_EQ(bucket.WaitNs(UINT64_MAX, 0), 0u);
}

TEST(TokenBucket, StartsFull_ThenRefillsAtTheRate) {
  TokenBucket bucket({.rate = 1000, .capacity = 100, .one_time_burst = 0}, kStart);
  EXPECT_TRUE(bucket.TryConsume(100, kStart));
  EXPECT_FALSE(bucket.TryConsume(1, kStart));
  // 1000 tokens/s: one token per millisecond, exactly.
  EXPECT_EQ(bucket.WaitNs(1, kStart), 1'000'000u);
  EXPECT_EQ(bucket.WaitNs(10, kStart), 10'000'000u);
  EXPECT_FALSE(bucket.TryConsume(1, kStart + 999'999));
  EXPECT_TRUE(bucket.TryConsume(1, kStart + 1'000'000));
  EXPECT_EQ(bucket.Level(kStart + 1'000'000), 0);
}

TEST(TokenBucket, FractionsOfATokenAccumulate) {
  // 3 tokens/s: a token every 333,333,333.3 ns; refilling in small steps loses nothing.
  TokenBucket bucket({.rate = 3, .capacity = 3, .one_time_burst = 0}, kStart);
  ASSERT_TRUE(bucket.TryConsume(3, kStart));
  uint64_t now = kStart;
  for (int i = 0; i < 1000; ++i) now += 1'000'000;  // 1 s in 1 ms steps
  for (uint64_t t = kStart; t <= now; t += 1'000'000) (void)bucket.Level(t);
  EXPECT_EQ(bucket.Level(now), 3);
}

TEST(TokenBucket, WaitNs_IsExactToTheNanosecond) {
  TokenBucket bucket({.rate = 3, .capacity = 3, .one_time_burst = 0}, kStart);
  ASSERT_TRUE(bucket.TryConsume(3, kStart));
  uint64_t wait = bucket.WaitNs(1, kStart);
  EXPECT_EQ(wait, 333'333'334u);  // ceil(1e9 / 3)
  EXPECT_FALSE(bucket.TryConsume(1, kStart + wait - 1));
  EXPECT_TRUE(bucket.TryConsume(1, kStart + wait));
}

TEST(TokenBucket, NeverHoldsMoreThanItsCapacity) {
  TokenBucket bucket({.rate = 1000, .capacity = 50, .one_time_burst = 0}, kStart);
  EXPECT_EQ(bucket.Level(kStart + 100 * kSecond), 50);
}

TEST(TokenBucket, DefaultCapacity_IsATenthOfTheRate) {
  EXPECT_EQ(TokenBucket({.rate = 1000, .capacity = 0, .one_time_burst = 0}, 0).capacity(), 100u);
  EXPECT_EQ(TokenBucket({.rate = 5, .capacity = 0, .one_time_burst = 0}, 0).capacity(), 1u);
}

TEST(TokenBucket, OneTimeBurst_IsSpentFirstAndOnlyOnce) {
  TokenBucket bucket({.rate = 100, .capacity = 10, .one_time_burst = 500}, kStart);
  EXPECT_TRUE(bucket.TryConsume(500, kStart));  // all from the burst
  EXPECT_EQ(bucket.one_time_burst(), 0u);
  EXPECT_EQ(bucket.Level(kStart), 10);
  EXPECT_TRUE(bucket.TryConsume(10, kStart));
  EXPECT_FALSE(bucket.TryConsume(1, kStart));
  // Much later the bucket is full again, the burst is not.
  EXPECT_EQ(bucket.Level(kStart + 10 * kSecond), 10);
  EXPECT_EQ(bucket.one_time_burst(), 0u);
  EXPECT_TRUE(bucket.TryConsume(10, kStart + 10 * kSecond));
  EXPECT_FALSE(bucket.TryConsume(1, kStart + 10 * kSecond));
}

TEST(TokenBucket, OneTimeBurst_PartOfARequestFromEach) {
  TokenBucket bucket({.rate = 100, .capacity = 10, .one_time_burst = 5}, kStart);
  EXPECT_TRUE(bucket.TryConsume(12, kStart));  // 5 from the burst, 7 from the bucket
  EXPECT_EQ(bucket.one_time_burst(), 0u);
  EXPECT_EQ(bucket.Level(kStart), 3);
  EXPECT_FALSE(bucket.TryConsume(4, kStart));  // refused: nothing taken
  EXPECT_EQ(bucket.Level(kStart), 3);
}

TEST(TokenBucket, LargerThanCapacity_GoesWhenFull_AndTheDebtIsPaid) {
  TokenBucket bucket({.rate = 1000, .capacity = 100, .one_time_burst = 0}, kStart);
  ASSERT_TRUE(bucket.TryConsume(1, kStart));
  // 400 never fits in 100: it waits for a full bucket (1 token: 1 ms), then goes.
  EXPECT_EQ(bucket.WaitNs(400, kStart), 1'000'000u);
  EXPECT_FALSE(bucket.TryConsume(400, kStart));
  EXPECT_TRUE(bucket.TryConsume(400, kStart + 1'000'000));
  EXPECT_EQ(bucket.Level(kStart + 1'000'000), -300);
  // The next token comes only after the 300 owed: 301 ms.
  EXPECT_EQ(bucket.WaitNs(1, kStart + 1'000'000), 301'000'000u);
}

TEST(TokenBucket, LongRunRate_IsTheConfiguredRate) {
  // Greedy consumer of 4096-token requests at 1 MB/s for 10 s of fake time.
  TokenBucket bucket({.rate = 1'000'000, .capacity = 0, .one_time_burst = 0}, kStart);
  uint64_t now = kStart, taken = 0;
  while (now < kStart + 10 * kSecond) {
    if (bucket.TryConsume(4096, now)) {
      taken += 4096;
    } else {
      now += bucket.WaitNs(4096, now);
    }
  }
  // Everything taken is the start-up capacity (100,000) plus 10 s of refill, to one request.
  EXPECT_LE(taken, 100'000 + 10'000'000 + 4096u);
  EXPECT_GE(taken, 100'000 + 10'000'000 - 4096u);
}

TEST(TokenBucket, Refund_GivesBack_NeverAboveCapacity) {
  TokenBucket bucket({.rate = 1, .capacity = 10, .one_time_burst = 0}, kStart);
  ASSERT_TRUE(bucket.TryConsume(4, kStart));
  bucket.Refund(3);
  EXPECT_EQ(bucket.Level(kStart), 9);
  bucket.Refund(100);
  EXPECT_EQ(bucket.Level(kStart), 10);
}

TEST(RateLimiter, NeedsBothBuckets_AndTakesFromBothOrNeither) {
  RateLimiter limiter({.rate = 10, .capacity = 1000, .one_time_burst = 0},
                      {.rate = 2, .capacity = 2, .one_time_burst = 0}, kStart);
  EXPECT_TRUE(limiter.TryConsume(100, kStart));
  EXPECT_TRUE(limiter.TryConsume(100, kStart));
  // Bytes left (800), operations not: refused, and no bytes taken.
  EXPECT_FALSE(limiter.TryConsume(100, kStart));
  EXPECT_EQ(limiter.bytes().Level(kStart), 800);
  EXPECT_EQ(limiter.WaitNs(100, kStart), 500'000'000u);  // 2 ops/s
  // Operations back, bytes short (805 after 0.5 s at 10/s): refused, no operation taken.
  EXPECT_FALSE(limiter.TryConsume(900, kStart + 500'000'000));
  EXPECT_EQ(limiter.ops().Level(kStart + 500'000'000), 1);
  EXPECT_TRUE(limiter.TryConsume(100, kStart + 500'000'000));
}

TEST(RateLimiter, HugeValues_DoNotOverflow) {
  RateLimiter limiter({.rate = UINT64_MAX, .capacity = UINT64_MAX, .one_time_burst = UINT64_MAX},
                      {.rate = 1, .capacity = 1, .one_time_burst = 0}, 0);
  EXPECT_TRUE(limiter.TryConsume(UINT64_MAX, 0));
  EXPECT_EQ(limiter.WaitNs(UINT64_MAX, 0), kSecond);  // the ops bucket: one per second
  TokenBucket slow({.rate = 1, .capacity = 1, .one_time_burst = 0}, 0);
  ASSERT_TRUE(slow.TryConsume(UINT64_MAX, 0));  // larger than the bucket: a huge debt
  EXPECT_GT(slow.WaitNs(1, 0), uint64_t{1} << 62);
}

}  // namespace
}  // namespace kite
