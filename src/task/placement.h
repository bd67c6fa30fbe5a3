// Placement: which node runs a task, from what its owner knows.
//
// The least busy live node (fewest of this owner's tasks outstanding
// there), unless a node that holds or makes a large argument is at most
// `slack` tasks busier: then that node, so the argument need not move.
// Ties go round-robin from `rotate`, so equal loads spread.
//
// Pure; unit-tested.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace hoplite::task {

struct PlacementInput {
  std::vector<bool> alive;            // by rank
  std::vector<unsigned> outstanding;  // by rank
  // (rank, bytes) of each argument at least the locality threshold whose
  // holder is known.
  std::vector<std::pair<int, std::uint64_t>> large_args;
  unsigned slack = 1;
  unsigned rotate = 0;
};

// -1 when no rank is alive.
int place(const PlacementInput& in);

}  // namespace hoplite::task
