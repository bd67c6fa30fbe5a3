// Shared driver for the *_perf benchmarks: nccl-tests flags and table.
//
// Flags: -b minbytes -e maxbytes -f stepfactor -n iters -w warmup -c check
// (plus -o op -d dtype -r root for the collectives). Sizes take K/M/G
// suffixes. The table has nccl-tests' columns; time is the mean over `-n`
// iterations of the slowest rank, algbw = size / time, busbw = algbw times
// the collective's factor (written down in each benchmark), GB = 1e9.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "hoplite/node.h"

namespace hoplite::perf {

struct Args {
  std::uint64_t min_bytes = 32u << 20;
  std::uint64_t max_bytes = 32u << 20;
  double step_factor = 2;
  int iters = 20;
  int warmup = 5;
  bool check = true;
  std::string op = "sum";
  std::string dtype = "float";
  int root = 0;
};

// Parses argv; exits with a usage message on bad input.
Args parse_args(int argc, char** argv, const char* name);

// One benchmark iteration of `bytes`: returns this rank's elapsed seconds
// and adds wrong elements to `wrong`. `iter` is unique per call, so objects
// can be named per iteration.
using IterFn =
    std::function<Status(Node& node, std::uint64_t bytes, int iter, double& seconds, std::uint64_t& wrong)>;

struct Collective {
  const char* name;
  std::string redop;    // "none" for data movement
  double busbw_factor;  // busbw = algbw * factor(world)
  IterFn iteration;
  std::string type = "float";
  std::size_t element = 4;
};

// Joins the cluster from the environment, sweeps the sizes, prints the
// table on rank 0. Returns the process exit code (non-zero on any #wrong).
int run(int argc, char** argv, const std::string& name,
        const std::function<Collective(const Args& args, int world)>& make);

// Deterministic, position-dependent test data.
void fill_pattern(std::byte* p, std::uint64_t n, std::uint64_t seed);
std::uint64_t count_wrong(const std::byte* p, std::uint64_t n, std::uint64_t seed);

}  // namespace hoplite::perf
