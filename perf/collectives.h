// Input patterns and expected values shared by the collective benchmarks.
//
// Element i of rank r's input is ((r + i) % 5) + 1: small integers, so sums
// and products of up to 8 inputs are exact in every type and a check can
// compare with ==.
#pragma once

#include <cstdint>
#include <vector>

#include "hoplite/reduce.h"

namespace hoplite::perf {

void fill_input(std::byte* p, std::uint64_t bytes, DataType t, int rank);
// Counts elements of `p` that differ from op over the inputs of `ranks`.
std::uint64_t check_reduced(const std::byte* p, std::uint64_t bytes, DataType t, ReduceOp op,
                            const std::vector<int>& ranks);

}  // namespace hoplite::perf
