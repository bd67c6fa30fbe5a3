// Peers: closed-form times of the algorithms MPI libraries and NCCL use,
// on the same links as the simulation, for side-by-side curves.
//
// The Hockney model: a message of m bytes costs alpha + m / B, with alpha
// the one-way latency plus the per-message cost of the NetworkModel;
// pipelined algorithms cut the object into segments. These are the
// textbook costs of each algorithm, not measurements of any library: they
// show what the algorithm itself allows at a scale this machine cannot run.
//
// Pure. Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/network.h"
#include "sim/simulator.h"

namespace hoplite::sim {

struct PeerTime {
  std::string algorithm;  // e.g. "binomial tree", "ring"
  double seconds = 0;
};

// The peers' algorithms for `c` on `n` nodes (segment: the pipelined
// algorithms' segment size, as Open MPI's tuned component and NCCL use).
std::vector<PeerTime> peer_times(Collective c, std::uint32_t n, std::uint64_t bytes, const NetworkModel& net,
                                 std::uint64_t segment = 1u << 20);

}  // namespace hoplite::sim
