// The shared frame of the paper's workloads (apps/*.cc): options common to
// all of them, a process that survives its own SIGKILL as a restarted
// rank, the node and task runtime, the end-of-run handshake, and timing.
//
// Each workload is one program, launched on every rank (hoplite-run), and
// rank 0 drives it. Common flags:
//   --transfer collective|direct   form (a) Hoplite, or (b) every get from
//                                  the producer alone (TransferPolicy)
//   --kill-rank R --kill-after N   rank R SIGKILLs itself when its N-th task
//                                  starts; a supervisor process restarts it
//                                  with HOPLITE_REJOIN=1 and it takes tasks
//                                  again
//   --straggler-rank R --straggle-ms X   rank R sleeps X ms in every task
//   --jitter-ms X                  every task sleeps an exponential time of
//                                  mean X ms (natural straggling)
//
// Thread-safety: run_workload() from main() before any thread exists (it
// may fork).
#pragma once

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hoplite/task.h"

namespace hoplite::apps {

namespace po = boost::program_options;

struct WorkloadFlags {
  TransferPolicy transfer = TransferPolicy::kCollective;
  int kill_rank = -1;
  int kill_after = 0;
  int straggler_rank = -1;
  int straggle_ms = 0;
  int jitter_ms = 0;
  bool rejoined = false;  // this process is the restarted victim
  po::variables_map vm;   // the workload's own options too
};

struct Workload {
  std::string name;
  // The workload's own options (added to the common ones).
  std::function<void(po::options_description&)> options;
  std::function<TaskFunctions(const WorkloadFlags&)> tasks;
  // Rank 0: runs the workload and prints its results; returns the exit code.
  std::function<int(TaskRuntime&, const WorkloadFlags&)> drive;
};

int run_workload(int argc, char** argv, const Workload& w);

// The line every workload ends its report with: tasks this owner
// scheduled, tasks it re-ran after a failure, ranks failed now.
void print_task_stats(TaskRuntime& rt);

// Seconds since `t0`.
double since(std::chrono::steady_clock::time_point t0);
// The q-quantile (0..1) of `v` (sorted copy).
double quantile(std::vector<double> v, double q);

}  // namespace hoplite::apps
