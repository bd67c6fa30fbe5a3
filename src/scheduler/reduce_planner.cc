#include "scheduler/reduce_planner.h"

#include <algorithm>
#include <cmath>

namespace hoplite::scheduler {
namespace {

// Builds the subtree of `n` positions at `depth` levels of branching and
// appends its post-order to shape.fill; returns the subtree's root.
std::uint32_t build(ReduceShape& s, std::uint32_t n, std::uint32_t depth) {
  if (depth == 0 || n <= 2) {
    // A chain: each position reduces its predecessor's partial result.
    std::uint32_t prev = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      auto p = static_cast<std::uint32_t>(s.children.size());
      s.children.emplace_back();
      if (i > 0) s.children[p].push_back(prev);
      s.fill.push_back(p);
      prev = p;
    }
    return prev;
  }
  std::uint32_t rest = n - 1;
  std::uint32_t left = build(s, (rest + 1) / 2, depth - 1);
  std::uint32_t right = build(s, rest / 2, depth - 1);
  auto p = static_cast<std::uint32_t>(s.children.size());
  s.children.push_back({left, right});
  s.fill.push_back(p);
  return p;
}

}  // namespace

ReduceShape plan_reduce_with_depth(std::uint32_t n, std::uint32_t depth) {
  ReduceShape s;
  if (n == 0) return s;
  s.depth = depth;
  s.root = build(s, n, depth);
  return s;
}

ReduceShape plan_reduce(std::uint32_t n, const ReduceCost& cost) {
  const double hop = std::max(cost.bandwidth * cost.latency + cost.chunk, 1.0);
  double c = std::round(cost.bytes / hop);
  auto chain = static_cast<std::uint32_t>(std::clamp(c, 0.0, static_cast<double>(n)));
  std::uint32_t depth = 0;
  if (chain < n) {
    depth = static_cast<std::uint32_t>(std::ceil(std::log2((n + 1.0) / (chain + 1.0))));
  }
  ReduceShape s = plan_reduce_with_depth(n, depth);
  s.chain_length = chain;
  return s;
}

}  // namespace hoplite::scheduler
