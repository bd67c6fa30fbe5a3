// The tree-chain planner: structural invariants of every shape the runtime
// can ask for (n up to 64 inputs, depth 0 to 6), and the depth plan_reduce
// picks from the link model at the two extremes of object size.
//
// The coordinator relies on these invariants without checking them: it
// assigns arrivals to fill[i] and sends each task its children's outputs,
// which only works if children are filled first, every input is placed once
// and exactly one position (the last) produces the target.

#include "scheduler/reduce_planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace hoplite::scheduler {
namespace {

constexpr std::uint32_t kMaxInputs = 64;
constexpr std::uint32_t kMaxDepth = 6;

// Longest root-to-leaf path, in edges.
std::uint32_t height(const ReduceShape& s, std::uint32_t p) {
  std::uint32_t h = 0;
  for (std::uint32_t c : s.children[p]) h = std::max(h, 1 + height(s, c));
  return h;
}

// What the planner promises about height, derived from its description
// rather than its code: each tree level takes one position for itself and
// splits the rest in two, the larger half first, so the deepest subtree
// after j levels holds floor(n / 2^j) positions; below the last level (or
// once a subtree is down to 2 positions, too few to branch) it is a chain.
std::uint32_t expected_height(std::uint32_t n, std::uint32_t depth) {
  std::uint32_t levels = 0;
  std::uint32_t rest = n;
  while (levels < depth && rest > 2) {
    rest /= 2;
    ++levels;
  }
  return levels + rest - 1;
}

// The smallest d with 2^d >= x.
std::uint32_t ceil_log2(std::uint32_t x) {
  std::uint32_t d = 0;
  while ((std::uint64_t{1} << d) < x) ++d;
  return d;
}

std::string where(std::uint32_t n, std::uint32_t depth) {
  return "n=" + std::to_string(n) + " depth=" + std::to_string(depth);
}

// Every invariant the coordinator depends on; `label` names the case in
// failure messages since the loops run thousands of them.
void check_shape(const ReduceShape& s, std::uint32_t n, const std::string& label) {
  SCOPED_TRACE(label);
  ASSERT_EQ(s.children.size(), n);
  ASSERT_EQ(s.fill.size(), n);
  ASSERT_LT(s.root, n);

  // fill is a permutation of the positions.
  std::vector<std::uint32_t> sorted = s.fill;
  std::sort(sorted.begin(), sorted.end());
  for (std::uint32_t i = 0; i < n; ++i) ASSERT_EQ(sorted[i], i);

  std::vector<std::uint32_t> fill_index(n);
  for (std::uint32_t i = 0; i < n; ++i) fill_index[s.fill[i]] = i;

  // Each position feeds exactly one parent, except the root, which feeds the
  // target; more than two children would make a holder pull several streams
  // at once, which the shape exists to avoid.
  std::vector<int> parents(n, 0);
  for (std::uint32_t p = 0; p < n; ++p) {
    ASSERT_LE(s.children[p].size(), 2u) << "position " << p;
    for (std::uint32_t c : s.children[p]) {
      ASSERT_LT(c, n);
      ASSERT_NE(c, p);
      ++parents[c];
      // Post-order: a task can only name upstreams whose holders are known.
      EXPECT_LT(fill_index[c], fill_index[p]) << "child " << c << " of " << p;
    }
  }
  for (std::uint32_t p = 0; p < n; ++p) {
    EXPECT_EQ(parents[p], p == s.root ? 0 : 1) << "position " << p;
  }
  EXPECT_EQ(s.fill.back(), s.root);
}

TEST(ReducePlannerTest, EveryShapeIsAPostOrderTreeWithAtMostTwoChildren) {
  for (std::uint32_t n = 1; n <= kMaxInputs; ++n) {
    for (std::uint32_t d = 0; d <= kMaxDepth; ++d) {
      ReduceShape s = plan_reduce_with_depth(n, d);
      check_shape(s, n, where(n, d));
      EXPECT_EQ(s.depth, d) << where(n, d);
    }
  }
}

TEST(ReducePlannerTest, DepthZeroIsAChainInFillOrder) {
  for (std::uint32_t n = 1; n <= kMaxInputs; ++n) {
    ReduceShape s = plan_reduce_with_depth(n, 0);
    SCOPED_TRACE(where(n, 0));
    EXPECT_TRUE(s.children[s.fill[0]].empty());
    for (std::uint32_t i = 1; i < n; ++i) {
      ASSERT_EQ(s.children[s.fill[i]].size(), 1u) << "fill " << i;
      EXPECT_EQ(s.children[s.fill[i]][0], s.fill[i - 1]) << "fill " << i;
    }
    EXPECT_EQ(height(s, s.root), n - 1);
  }
}

TEST(ReducePlannerTest, HeightIsTreeLevelsPlusChainLength) {
  for (std::uint32_t n = 1; n <= kMaxInputs; ++n) {
    for (std::uint32_t d = 0; d <= kMaxDepth; ++d) {
      ReduceShape s = plan_reduce_with_depth(n, d);
      const std::uint32_t h = height(s, s.root);
      EXPECT_EQ(h, expected_height(n, d)) << where(n, d);
      // Looser, formula-free bounds: no binary tree of n positions is
      // shorter than floor(log2 n), and d levels leave chains of at most
      // ceil(n / 2^d) below them.
      EXPECT_GE(h + 1, ceil_log2(n + 1)) << where(n, d);
      EXPECT_LE(h, d + ((n + (1u << d) - 1) >> d)) << where(n, d);
    }
  }
}

TEST(ReducePlannerTest, EnoughDepthGivesAMinimalHeightTree) {
  // 2^6 = 64, so depth 6 never runs out of levels for n <= 64.
  for (std::uint32_t n = 1; n <= kMaxInputs; ++n) {
    ReduceShape s = plan_reduce_with_depth(n, kMaxDepth);
    EXPECT_EQ(height(s, s.root) + 1, ceil_log2(n + 1)) << "n=" << n;
  }
}

TEST(ReducePlannerTest, FirstArrivalsAreLeaves) {
  // Reduction starts as soon as the second input exists only if the first
  // one is a leaf and the second is either a leaf or its parent.
  for (std::uint32_t n = 1; n <= kMaxInputs; ++n) {
    for (std::uint32_t d = 0; d <= kMaxDepth; ++d) {
      ReduceShape s = plan_reduce_with_depth(n, d);
      EXPECT_TRUE(s.children[s.fill[0]].empty()) << where(n, d);
    }
  }
}

TEST(ReducePlannerTest, LargeObjectsGetAChain) {
  ReduceCost cost;
  const double bl = cost.bandwidth * cost.latency;
  for (std::uint32_t n = 1; n <= kMaxInputs; ++n) {
    // S / (B L) >= n: the object fills a pipeline of n hops.
    for (double factor : {1.0, 1.5, 100.0}) {
      cost.bytes = factor * n * bl;
      ReduceShape s = plan_reduce(n, cost);
      SCOPED_TRACE("n=" + std::to_string(n) + " S/(BL)=" + std::to_string(factor * n));
      EXPECT_EQ(s.depth, 0u);
      EXPECT_EQ(s.chain_length, n);
      check_shape(s, n, "plan_reduce");
      EXPECT_EQ(height(s, s.root), n - 1);
    }
  }
}

TEST(ReducePlannerTest, TinyObjectsGetAFullTree) {
  ReduceCost cost;
  for (std::uint32_t n = 1; n <= kMaxInputs; ++n) {
    for (double bytes : {0.0, 1.0, 8.0}) {
      cost.bytes = bytes;
      ReduceShape s = plan_reduce(n, cost);
      SCOPED_TRACE("n=" + std::to_string(n) + " S=" + std::to_string(bytes));
      EXPECT_EQ(s.chain_length, 0u);
      EXPECT_EQ(s.depth, ceil_log2(n + 1));
      check_shape(s, n, "plan_reduce");
      EXPECT_EQ(height(s, s.root) + 1, ceil_log2(n + 1));
    }
  }
}

TEST(ReducePlannerTest, DepthNeverGrowsWithObjectSize) {
  // Between the extremes: a larger object can fill longer chains, so the
  // planner must not answer it with more tree levels.
  ReduceCost cost;
  const double bl = cost.bandwidth * cost.latency;
  for (std::uint32_t n : {2u, 5u, 8u, 17u, 64u}) {
    std::uint32_t last = ceil_log2(n + 1);
    for (double c = 0; c <= n + 1; c += 0.25) {
      cost.bytes = c * bl;
      ReduceShape s = plan_reduce(n, cost);
      EXPECT_LE(s.depth, last) << "n=" << n << " c=" << c;
      last = s.depth;
      check_shape(s, n, "n=" + std::to_string(n) + " c=" + std::to_string(c));
    }
    EXPECT_EQ(last, 0u) << "n=" << n;
  }
}

// A hop costs a chunk's time too: 1024 inputs of 64 MiB at 1 Gbit/s with
// 256 KiB chunks fill 250 hops, not the 10737 that the latency alone allows.
TEST(ReducePlannerTest, ChunksLimitHowLongAChainCanBe) {
  ReduceCost cost;
  cost.bytes = 64.0 * (1 << 20);
  EXPECT_EQ(plan_reduce(1024, cost).depth, 0u);
  cost.chunk = 256 << 10;
  ReduceShape s = plan_reduce(1024, cost);
  EXPECT_EQ(s.chain_length, 250u);
  EXPECT_EQ(s.depth, 3u);
  check_shape(s, 1024, "chunked");
  // An object of many chunks still gets a chain.
  cost.bytes = 1024.0 * (1 << 20);
  EXPECT_EQ(plan_reduce(8, cost).depth, 0u);
}

TEST(ReducePlannerTest, SingleInputIsItsOwnRoot) {
  for (std::uint32_t d = 0; d <= kMaxDepth; ++d) {
    ReduceShape s = plan_reduce_with_depth(1, d);
    ASSERT_EQ(s.fill.size(), 1u);
    EXPECT_EQ(s.fill[0], s.root);
    EXPECT_TRUE(s.children[s.root].empty());
  }
}

}  // namespace
}  // namespace hoplite::scheduler
