// idle_perf: how much CPU a joined node burns while nobody asks it for
// anything. Every rank joins, waits at a barrier, sleeps for -n seconds
// (default 10) and reports the CPU time its process used meanwhile, all
// threads (progress, UCX's waiter, heartbeats) included.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "hoplite/node.h"
#include "hoplite/options.h"

using namespace hoplite;

namespace {
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}
}  // namespace

int main(int argc, char** argv) {
  int seconds = 10;
  for (int c; (c = getopt(argc, argv, "n:")) != -1;) {
    if (c == 'n') seconds = std::atoi(optarg);
  }
  auto opts = NodeOptions::from_environment();
  if (!opts.is_ok()) {
    std::fprintf(stderr, "idle_perf: %s\n", opts.status().to_string().c_str());
    return 2;
  }
  opts->store_capacity = 64u << 20;
  auto node = Node::create(*opts);
  if (!node.is_ok()) {
    std::fprintf(stderr, "idle_perf: %s\n", node.status().to_string().c_str());
    return 2;
  }
  if (!(*node)->barrier().is_ok()) return 1;
  const double c0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double used = cpu_seconds() - c0;
  std::printf("# idle_perf rank %d transport %s: %.3f s CPU in %.1f s idle = %.3f %% of a core\n",
              (*node)->rank(), (*node)->transport_name().c_str(), used, wall, 100.0 * used / wall);
  return (*node)->barrier().is_ok() ? 0 : 1;
}
