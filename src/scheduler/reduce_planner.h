// ReducePlanner: the shape of a tree-chain reduce and where each arrival goes.
//
// The shape is a binary tree of depth d whose bottom levels are chains:
// large objects are bandwidth-bound, and a chain keeps every node sending and
// receiving at most one stream; small objects are latency-bound, and a tree
// cuts the number of hops to log2(n). With S the object size, B the link
// bandwidth, L the per-hop latency and C the chunk size, a hop of a chain
// costs a chunk's time plus the latency, C/B + L (a member forwards a chunk
// once it has all of it), so the chain length c = round(S / (C + B L)) is
// how many hops' worth of pipelining the object can fill, and the depth is
// d = ceil(log2((n + 1) / (c + 1))) (0 when c >= n: a pure chain). The
// chunk term came from the simulator (docs/sim.md): without it, chains of
// a thousand hops were chosen for objects of a few hundred chunks.
//
// Positions are filled in arrival order following a post-order walk, so the
// first arrivals are leaves and reduction starts as soon as two inputs exist;
// every position's children are filled before it, and the last arrival is the
// root, whose output is the reduce's target.
//
// Pure; unit-tested. Thread-safety: value type.
#pragma once

#include <cstdint>
#include <vector>

namespace hoplite::scheduler {

struct ReduceShape {
  // children[p]: the positions whose partial results position p reduces
  // with its own input (0, 1 or 2 of them).
  std::vector<std::vector<std::uint32_t>> children;
  // fill[i]: the position the i-th arriving input takes.
  std::vector<std::uint32_t> fill;
  std::uint32_t root = 0;
  std::uint32_t depth = 0;         // tree levels above the chains
  std::uint32_t chain_length = 0;  // c
};

struct ReduceCost {
  double bytes = 0;           // S
  double bandwidth = 1.25e8;  // B, bytes per second
  double latency = 50e-6;     // L, seconds per hop
  double chunk = 0;           // C, bytes a member receives before it forwards
};

// The tree-chain for `n` inputs (n >= 1).
ReduceShape plan_reduce(std::uint32_t n, const ReduceCost& cost);

// The tree-chain with an explicit depth (for tests and forced shapes).
ReduceShape plan_reduce_with_depth(std::uint32_t n, std::uint32_t depth);

}  // namespace hoplite::scheduler
