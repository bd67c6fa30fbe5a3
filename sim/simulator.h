// simulate(): one collective on a simulated cluster, planned by the
// runtime's own code.
//
// The simulator plays the nodes' part of the protocol (lookups, watches,
// progress, chunk gets, reduce tasks, publishes) over simulated time; every
// decision a node's runtime makes comes from the same pure code the runtime
// runs: the directory shard (directory/shard.h, which holds the broadcast
// chain planner), the reduce tree-chain planner and its repair decisions
// (scheduler/reduce_planner.h, scheduler/tree_chain.h), the striping rule
// and stripes (scheduler/stripe_planner.h), and the shard placement rule.
// What it models rather than runs: the links (network.h), the CPU cost of
// messages, chunks and reduce kernels, and failure detection (a fixed
// delay). docs/sim.md says how close that comes to the emulated cluster.
//
// Each collective is timed as its perf/ tool times it: inputs exist before
// t = 0 and are sealed at 0 (a straggler's later), and a rank's time is
// when its get of the result completes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/network.h"

namespace hoplite::sim {

enum class Collective { kBroadcast, kReduce, kAllreduce, kGather, kAllgather };
const char* to_string(Collective c);
bool parse_collective(const std::string& s, Collective& out);

// The runtime's parameters (NodeOptions and what a node measures at start).
struct RuntimeModel {
  std::uint64_t chunk_size = 256u << 10;
  unsigned pipeline_depth = 16;
  std::uint64_t inline_threshold = 64u << 10;
  // The link model the node hands the reduce planner (0: the network's).
  double planner_bandwidth = 0;
  double planner_latency = 50e-6;
  double reduce_rate = 4e9;  // bytes per second a reduce kernel folds, per upstream
};

struct Scenario {
  Collective collective = Collective::kBroadcast;
  std::uint32_t nodes = 4;
  std::uint64_t bytes = 1u << 20;  // the object (gather, allgather: the total)
  NetworkModel net;
  RuntimeModel rt;
  bool allow_stripes = true;  // allreduce
  std::uint32_t k = 0;        // reduce, allreduce: any k of n (0: all)
  int reduce_depth = -1;      // a forced tree depth (ReduceOptions::depth); -1: the planner's
  // Per-rank delay before its input is sealed (stragglers); empty: none.
  std::vector<double> input_delay;
  // One failure: rank `fail_rank` dies at `fail_time`; every node knows
  // `detect_delay` later (a SIGKILL closes its sockets: TCP sees it at once).
  int fail_rank = -1;
  double fail_time = 0;
  double detect_delay = 1e-3;
};

struct Outcome {
  // Per rank: when its get completed (seconds); -1 for ranks that are not
  // timed (the broadcast's root, gather's non-roots) or died.
  std::vector<double> done;
  double time = 0;  // the slowest timed rank
  double lower_bound = 0;
  std::uint64_t events = 0;
  bool striped = false;
  std::uint32_t depth = 0;       // the reduce tree's depth
  std::uint32_t recomputed = 0;  // reduce tasks issued again after a failure
  std::string error;             // non-empty: the collective did not finish
};

Outcome simulate(const Scenario& s);

// The links and costs of scripts/netns-cluster at `rate` bytes per second
// (1 Gbit/s: 1.25e8), fitted to measurements there (docs/sim.md): TCP's
// payload share at MTU 1500, the veth hop's latency, and the runtime's CPU
// per control message and per chunk on this machine.
NetworkModel emulated_cluster(double rate = 1.25e8);

// The time no algorithm can beat on links of `bandwidth` (docs/perf.md).
double lower_bound(Collective c, std::uint32_t n, std::uint64_t bytes, double bandwidth);

}  // namespace hoplite::sim
