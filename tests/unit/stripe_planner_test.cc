#include "scheduler/stripe_planner.h"

#include <gtest/gtest.h>

namespace hoplite::scheduler {
namespace {

TEST(StripePlannerTest, EveryStripeChainVisitsEveryHolderAndEndsAtItsOwner) {
  const auto stripes = plan_stripes({1, 1, 1, 1}, 1u << 20);
  ASSERT_EQ(stripes.size(), 4u);
  std::uint64_t covered = 0;
  for (std::size_t j = 0; j < stripes.size(); ++j) {
    const Stripe& s = stripes[j];
    EXPECT_EQ(s.offset, covered);
    EXPECT_EQ(s.length % 64, 0u);
    covered += s.length;
    ASSERT_EQ(s.chain.size(), 4u);
    EXPECT_EQ(s.chain.back().holder, j);
    EXPECT_EQ(s.chain.front().holder, (j + 1) % 4);
  }
  EXPECT_EQ(covered, 1u << 20);
}

TEST(StripePlannerTest, AHolderWithSeveralInputsVisitsThemInOrder) {
  const auto stripes = plan_stripes({2, 1}, 1000);
  ASSERT_EQ(stripes.size(), 2u);
  // Stripe 0 starts after holder 0: holder 1's input, then holder 0's two.
  ASSERT_EQ(stripes[0].chain.size(), 3u);
  EXPECT_EQ(stripes[0].chain[0].holder, 1u);
  EXPECT_EQ(stripes[0].chain[1].holder, 0u);
  EXPECT_EQ(stripes[0].chain[1].input, 0u);
  EXPECT_EQ(stripes[0].chain[2].input, 1u);
  // 64-byte stripes: 512 then the rest.
  EXPECT_EQ(stripes[0].length, 512u);
  EXPECT_EQ(stripes[1].offset, 512u);
  EXPECT_EQ(stripes[1].length, 488u);
}

TEST(StripePlannerTest, ATinyObjectLeavesTrailingStripesEmpty) {
  const auto stripes = plan_stripes({1, 1, 1}, 64);
  EXPECT_EQ(stripes[0].length, 64u);
  EXPECT_EQ(stripes[1].length, 0u);
  EXPECT_EQ(stripes[2].length, 0u);
}

TEST(StripePlannerTest, StripesOnlyWhenWorthIt) {
  const std::uint64_t chunk = 256u << 10;
  EXPECT_FALSE(should_stripe(1, 1u << 30, false, chunk));
  EXPECT_FALSE(should_stripe(4, 4 * kMinStripeBytes - 1, false, chunk));
  EXPECT_TRUE(should_stripe(4, 4 * kMinStripeBytes, false, chunk));
  EXPECT_FALSE(should_stripe(4, 1u << 30, true, chunk));
  // Up to 8 holders, any stripe of 64 KiB or more.
  EXPECT_TRUE(should_stripe(8, 1u << 20, false, chunk));
  // Past that, a stripe needs holders/2 chunks: 32 holders need 4 MiB each.
  EXPECT_FALSE(should_stripe(32, 64ull << 20, false, chunk));
  EXPECT_TRUE(should_stripe(32, 128ull << 20, false, chunk));
  EXPECT_FALSE(should_stripe(128, 1ull << 30, false, chunk));
  EXPECT_TRUE(should_stripe(128, 2ull << 30, false, chunk));
}

TEST(StripePlannerTest, WindowIsAFewRoundTripsPlusOnePercentCappedAt50Ms) {
  auto w = stripe_window(256e6, 1.25e8, 50e-6);
  EXPECT_DOUBLE_EQ(w.base, 2e-3);
  EXPECT_NEAR(w.extra, 0.02048, 1e-9);
  EXPECT_DOUBLE_EQ(stripe_window(1e12, 1.25e8, 50e-6).extra, 0.05);
  EXPECT_DOUBLE_EQ(stripe_window(0, 1.25e8, 100e-6).base, 4e-3);
}

}  // namespace
}  // namespace hoplite::scheduler
