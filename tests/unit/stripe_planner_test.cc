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

// The holders as they are after a repair: inputs_per_holder of the new
// layout; the chain must visit every input exactly once and end at `end`.
void ExpectWholeChain(const StripeFix& f, const std::vector<std::size_t>& inputs) {
  std::size_t total = 0;
  for (auto n : inputs) total += n;
  ASSERT_EQ(f.chain.size(), total);
  std::vector<std::vector<int>> seen(inputs.size());
  for (std::size_t h = 0; h < inputs.size(); ++h) seen[h].assign(inputs[h], 0);
  for (const auto& hop : f.chain) seen.at(hop.holder).at(hop.input)++;
  for (const auto& per : seen) {
    for (int n : per) EXPECT_EQ(n, 1);
  }
  EXPECT_EQ(f.chain.back().holder, f.end);
}

TEST(StripeRepairTest, KeepsDoneStripesOnLiveHoldersAndRedoesTheRest) {
  // Four holders, rank 2 (old index 2) died; its input was re-put on old
  // holder 3. New holders: old 0, 1, 3 -> 0, 1, 2, with 1, 1, 2 inputs.
  const std::vector<std::size_t> inputs = {1, 1, 2};
  std::vector<StripeState> st(4);
  for (auto& s : st) s.length = 1024;
  st[0] = {1024, true, 0};                   // done, holder lives: kept
  st[1] = {1024, false, 1};                  // in flight: redone, same holder
  st[2] = {1024, true, StripeState::kLost};  // done on the dead holder: redone
  st[3] = {1024, true, 2};                   // done: kept
  const auto fix = plan_stripe_repair(st, inputs);
  ASSERT_EQ(fix.size(), 4u);
  EXPECT_FALSE(fix[0].redo);
  EXPECT_EQ(fix[0].end, 0u);
  EXPECT_TRUE(fix[0].chain.empty());
  EXPECT_TRUE(fix[1].redo);
  EXPECT_EQ(fix[1].end, 1u);
  ExpectWholeChain(fix[1], inputs);
  EXPECT_TRUE(fix[2].redo);
  ExpectWholeChain(fix[2], inputs);
  EXPECT_FALSE(fix[3].redo);
  EXPECT_EQ(fix[3].end, 2u);
}

TEST(StripeRepairTest, HomelessStripesGoToTheHoldersEndingFewest) {
  // Three new holders; stripes 0 and 1 end at holder 0, stripes 2 and 3
  // lost theirs: they go to holders 1 and 2, one each.
  const std::vector<std::size_t> inputs = {1, 1, 1};
  std::vector<StripeState> st = {
      {64, true, 0}, {64, true, 0}, {64, true, StripeState::kLost}, {64, false, StripeState::kLost}};
  const auto fix = plan_stripe_repair(st, inputs);
  EXPECT_FALSE(fix[0].redo);
  EXPECT_FALSE(fix[1].redo);
  EXPECT_TRUE(fix[2].redo);
  EXPECT_TRUE(fix[3].redo);
  EXPECT_NE(fix[2].end, fix[3].end);
  EXPECT_NE(fix[2].end, 0u);
  EXPECT_NE(fix[3].end, 0u);
  ExpectWholeChain(fix[2], inputs);
  ExpectWholeChain(fix[3], inputs);
}

TEST(StripeRepairTest, NothingDoneRedoesEverythingAndEmptyStripesNeedNoWork) {
  const std::vector<std::size_t> inputs = {2, 1};
  std::vector<StripeState> st = {{512, false, 0}, {488, false, 1}, {0, false, StripeState::kLost}};
  const auto fix = plan_stripe_repair(st, inputs);
  EXPECT_TRUE(fix[0].redo);
  EXPECT_TRUE(fix[1].redo);
  ExpectWholeChain(fix[0], inputs);
  ExpectWholeChain(fix[1], inputs);
  // A zero-length stripe has nothing to compute, only a live holder to name.
  EXPECT_FALSE(fix[2].redo);
  EXPECT_TRUE(fix[2].chain.empty());
  EXPECT_LT(fix[2].end, inputs.size());
}

}  // namespace
}  // namespace hoplite::scheduler
