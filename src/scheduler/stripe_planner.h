// StripePlanner: the rules of the striped allreduce, as pure code.
//
// When every input of an allreduce exists at once, the object is cut into
// one stripe per input holder; stripe j is reduced by a chain that visits
// every holder, starting after holder j and ending at it, so each node sends
// and receives (m-1)/m of the object, and the readers pull each stripe from
// the holder that ends its chain while it is still being reduced. This
// header says when that form is taken (the window in which inputs count as
// "at once", the size rule), what the stripes and their chains are, and
// which stripes a plan that lost holders keeps or redoes, and how; the
// reduce coordinator carries it out and the simulator (sim/) drives it.
//
// Pure; unit-tested. Thread-safety: value types and free functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hoplite::scheduler {

// Each holder's stripe must carry at least this much, or m chains of tiny
// stripes cost more in per-hop latency than they save in bandwidth.
inline constexpr std::uint64_t kMinStripeBytes = 64u << 10;

// How long the coordinator waits for the inputs' locations before it
// chooses: at least `base` after the reduce starts (a few round trips),
// and, once the first input's size is known, `extra` after the start (1 %
// of the object's transfer time, at most 50 ms), since inputs sealed "at
// the same time" by different nodes reach their shards a little apart.
struct StripeWindow {
  double base = 0;   // seconds
  double extra = 0;  // seconds
};
StripeWindow stripe_window(double bytes, double bandwidth, double latency);

// Stripe when there are two or more holders, each stripe would carry at
// least kMinStripeBytes, and no input came with its bytes (those fold at
// the coordinator); past kAlwaysStripeHolders holders, only when each
// stripe carries at least holders/2 chunks. A stripe's chain has one hop
// per holder and streams chunk by chunk, so it needs about as many chunks
// as hops to fill its pipeline, and m holders cost m(m-1) task messages
// from the coordinator; the simulator (docs/sim.md) shows both making the
// striped form slower than the dynamic one at 32 to 128 holders with few
// chunks per stripe, while up to 8 holders it wins at every size.
inline constexpr std::size_t kAlwaysStripeHolders = 8;
bool should_stripe(std::size_t holders, std::uint64_t size, bool any_inline, std::uint64_t chunk_size);

// One input in a stripe's chain: the i-th input of holder `holder`
// (holders are indexed as given to plan_stripes).
struct StripeHop {
  std::size_t holder = 0;
  std::size_t input = 0;
};
struct Stripe {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;  // 0 for the trailing stripes of a tiny object
  // The chain's inputs in visiting order; the last hop's holder is j, which
  // holds the stripe's result.
  std::vector<StripeHop> chain;
};

// inputs_per_holder[h]: how many inputs holder h has (h = 0..m-1, each >= 1).
// Stripe lengths are a multiple of 64 bytes except the last.
std::vector<Stripe> plan_stripes(const std::vector<std::size_t>& inputs_per_holder, std::uint64_t size);

// Repair of a striped attempt that lost holders. A stripe whose last task
// reported done and whose result's holder lives is a correct result, even
// when a dead holder's input was folded into it: it is kept, with its part
// id and holder, so readers keep what they read of it. Every other stripe
// (still in flight, since its chain passes through every holder, or done on
// a holder that died) is computed again over the inputs as they are now
// (the survivors' and the lost ones re-put), ending at its old holder if
// that lives, or else at the live holder ending the fewest stripes so far.
struct StripeState {
  std::uint64_t length = 0;
  bool done = false;  // its last task reported done
  // Its result's holder as an index into the new holders; npos: it died.
  std::size_t end = kLost;
  static constexpr std::size_t kLost = ~std::size_t{0};
};
struct StripeFix {
  bool redo = false;
  std::size_t end = 0;           // index into the new holders
  std::vector<StripeHop> chain;  // redo only; empty for a zero-length stripe
};
// inputs_per_holder: the new holders' inputs (each >= 1). One fix per stripe.
std::vector<StripeFix> plan_stripe_repair(const std::vector<StripeState>& stripes,
                                          const std::vector<std::size_t>& inputs_per_holder);

}  // namespace hoplite::scheduler
