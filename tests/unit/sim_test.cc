// The simulator (sim/): its predictions obey the bounds and the pipeline
// arithmetic, failures and stragglers take the runtime's repair paths, and
// its predictions for the emulated cluster agree with stored measurements
// (sim/validation/measured.csv, re-measured by scripts/sim-validate).
#include "sim/simulator.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "sim/peers.h"

namespace hoplite::sim {
namespace {

constexpr std::uint64_t MiB = 1u << 20;

Scenario plain(Collective c, std::uint32_t n, std::uint64_t bytes) {
  Scenario s;
  s.collective = c;
  s.nodes = n;
  s.bytes = bytes;
  return s;
}

TEST(SimTest, NoCollectiveBeatsItsLowerBound) {
  for (auto c : {Collective::kBroadcast, Collective::kReduce, Collective::kAllreduce, Collective::kGather,
                 Collective::kAllgather}) {
    for (std::uint32_t n : {2u, 3u, 8u, 33u}) {
      for (std::uint64_t bytes : {1 * MiB, 64 * MiB}) {
        Outcome o = simulate(plain(c, n, bytes));
        ASSERT_TRUE(o.error.empty()) << to_string(c) << " N=" << n << ": " << o.error;
        EXPECT_GE(o.time, o.lower_bound) << to_string(c) << " N=" << n << " " << bytes;
        // Chains pay one chunk time per hop to fill.
        const double fill = n * static_cast<double>(Scenario{}.rt.chunk_size) / Scenario{}.net.bandwidth;
        EXPECT_LT(o.time, 2 * o.lower_bound + 2 * fill) << to_string(c) << " N=" << n << " " << bytes;
      }
    }
  }
}

// A chain streams: the last of N-1 receivers lags the first by one chunk
// time per hop, so the time is S/B plus (N-2) chunk times plus latencies.
TEST(SimTest, ABroadcastChainCostsOneChunkTimePerHop) {
  Scenario s = plain(Collective::kBroadcast, 8, 64 * MiB);
  Outcome o = simulate(s);
  ASSERT_TRUE(o.error.empty()) << o.error;
  const double chunk = static_cast<double>(s.rt.chunk_size) / s.net.bandwidth;
  EXPECT_NEAR(o.time, o.lower_bound + 6 * chunk, 0.002);
  // Receivers finish in chain order, each a chunk time after the one before.
  std::vector<double> t(o.done.begin() + 1, o.done.end());
  std::sort(t.begin(), t.end());
  for (std::size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], chunk, chunk * 0.1);
}

// Stripes keep every link at 2(N-1)/N of the object; the dynamic form
// carries the object twice through every node.
TEST(SimTest, AStripedAllreduceBeatsTheDynamicForm) {
  Scenario s = plain(Collective::kAllreduce, 4, 256 * MiB);
  Outcome striped = simulate(s);
  s.allow_stripes = false;
  Outcome dynamic = simulate(s);
  ASSERT_TRUE(striped.striped);
  ASSERT_FALSE(dynamic.striped);
  EXPECT_LT(striped.time, 1.05 * striped.lower_bound);
  EXPECT_GT(dynamic.time, 1.25 * striped.lower_bound);
}

TEST(SimTest, SmallObjectsTravelInline) {
  Outcome o = simulate(plain(Collective::kAllreduce, 8, 1024));
  ASSERT_TRUE(o.error.empty()) << o.error;
  EXPECT_FALSE(o.striped);
  EXPECT_LT(o.time, 1e-3);
}

TEST(SimTest, ABroadcastSurvivesAChainMemberDyingMidTransfer) {
  Scenario s = plain(Collective::kBroadcast, 8, 64 * MiB);
  const double healthy = simulate(s).time;
  s.fail_rank = 3;
  s.fail_time = 0.5 * s.bytes / s.net.bandwidth;
  Outcome o = simulate(s);
  ASSERT_TRUE(o.error.empty()) << o.error;
  EXPECT_EQ(o.done[3], -1.0);
  for (std::uint32_t r = 1; r < 8; ++r) {
    if (r != 3) {
      EXPECT_GT(o.done[r], 0) << r;
    }
  }
  // The successors resume from the dead member's predecessor: a detection
  // delay and a refilled pipeline, not a restart.
  EXPECT_LT(o.time, healthy + s.detect_delay + 0.05);
}

TEST(SimTest, AnyKOfNReduceRepairsAroundADeadHolder) {
  Scenario s = plain(Collective::kReduce, 8, 64 * MiB);
  s.k = 7;
  s.fail_rank = 4;
  s.fail_time = 0.3 * s.bytes / s.net.bandwidth;
  Outcome o = simulate(s);
  ASSERT_TRUE(o.error.empty()) << o.error;
  EXPECT_GT(o.recomputed, 0u);
  EXPECT_GT(o.done[0], 0);
}

TEST(SimTest, AStragglerCostsLittleWhenKLeavesItOut) {
  Scenario s = plain(Collective::kReduce, 8, 16 * MiB);
  s.input_delay.assign(8, 0.0);
  s.input_delay[5] = 1.0;
  const double all = simulate(s).time;
  s.k = 7;
  const double any = simulate(s).time;
  EXPECT_GT(all, 1.0);
  EXPECT_LT(any, 0.5);
}

TEST(SimTest, PeersHaveTheirTextbookCosts) {
  NetworkModel net;
  net.latency = 0;
  auto ring = peer_times(Collective::kAllreduce, 4, 100 * MiB, net);
  ASSERT_FALSE(ring.empty());
  EXPECT_EQ(ring[0].algorithm, "ring");
  EXPECT_NEAR(ring[0].seconds, lower_bound(Collective::kAllreduce, 4, 100 * MiB, net.bandwidth), 1e-9);
}

// Predictions for the emulated cluster against measurements stored by
// scripts/sim-validate --measure. The points docs/sim.md lists as not yet
// explained (each measured slower than predicted: CPU contention of eight
// ranks on two cores at 1 and 16 MiB, TCP incast at the gather's root, the
// ring-ordered allgather's per-hop cost at 1 MiB) are held to that: still
// under-predicted, by less than a third, so a change in either direction
// shows up here.
TEST(SimValidationTest, PredictionsAgreeWithTheEmulatedClusterWithin10Percent) {
  const std::set<std::string> unexplained = {"allgather/2/1048576",  "allgather/4/1048576",
                                             "broadcast/8/16777216", "reduce/8/16777216",
                                             "allreduce/8/1048576",  "gather/8/16777216"};
  std::ifstream in(HOPLITE_SOURCE_DIR "/sim/validation/measured.csv");
  ASSERT_TRUE(in.good());
  std::string line;
  std::getline(in, line);
  int agreed = 0;
  while (std::getline(in, line)) {
    std::stringstream row(line);
    std::string name, n, size, time;
    std::getline(row, name, ',');
    std::getline(row, n, ',');
    std::getline(row, size, ',');
    std::getline(row, time, ',');
    Scenario s;
    ASSERT_TRUE(parse_collective(name, s.collective)) << name;
    s.nodes = static_cast<std::uint32_t>(std::stoul(n));
    s.bytes = std::stoull(size);
    s.net = emulated_cluster();
    const double measured = std::stod(time) * 1e-6;
    Outcome o = simulate(s);
    ASSERT_TRUE(o.error.empty()) << o.error;
    const std::string key = name + "/" + n + "/" + size;
    const double ratio = o.time / measured;
    if (unexplained.count(key)) {
      EXPECT_LT(ratio, 0.9) << key << " now agrees: take it off the list (and docs/sim.md)";
      EXPECT_GT(ratio, 0.65) << key;
      continue;
    }
    EXPECT_NEAR(ratio, 1.0, 0.10) << key << ": predicted " << o.time << " s, measured " << measured << " s";
    ++agreed;
  }
  EXPECT_GE(agreed, 50);
}

}  // namespace
}  // namespace hoplite::sim
