// task_perf: the Go implementation's task benchmark (../shared/seeds/001).
//
// Each op schedules 12 tasks from rank 0: 6 `primes` on fresh lists of
// 500-600 integers with a prime inserted at random places (benchmark A:
// 4952019383323, whose trial division is the cost; B: 5), and 6 `multiply`
// taking two of those futures each; then fetches all 12 answers, checks
// them, and removes every object. Run it on 5 ranks (as the seed did):
//
//   hoplite-run -n 5 -- build/perf/task_perf [-b A|B|AB] [-n iters] [-w warmup] [--direct]
//
// Prints one line per benchmark: seconds per op (mean, min), beside the
// seed's own figure (different hardware and language: the ratio is only a
// rough scale).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "apps/seed_tasks.h"
#include "hoplite/node.h"
#include "hoplite/task.h"

using namespace hoplite;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kWait = std::chrono::minutes(2);

// One op; false (with a message) if an answer is wrong.
bool one_op(TaskRuntime& rt, std::mt19937_64& rng, std::uint64_t prime) {
  std::vector<apps::List> lists;
  std::vector<ObjectRef> inputs, firsts, seconds;
  for (int i = 0; i < 6; ++i) {
    lists.push_back(apps::seed_list(rng, prime));
    auto in = rt.put(apps::bytes_of(lists.back()));
    if (!in.is_ok()) return std::fprintf(stderr, "put: %s\n", in.status().to_string().c_str()), false;
    inputs.push_back(*in);
    auto r = rt.schedule("primes", {TaskArg::ref(*in)});
    if (!r.is_ok()) return false;
    firsts.push_back(*r);
  }
  for (int i = 0; i < 6; ++i) {
    auto r = rt.schedule("multiply", {TaskArg::ref(firsts[i]), TaskArg::ref(firsts[(i + 1) % 6])});
    if (!r.is_ok()) return false;
    seconds.push_back(*r);
  }
  std::vector<std::future<Result<ObjectView>>> answers;
  for (auto* set : {&firsts, &seconds}) {
    for (const auto& r : *set)
      answers.push_back(std::async(std::launch::async, [&rt, r] { return rt.get(r, kWait); }));
  }
  bool ok = true;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    auto v = answers[i].get();
    if (!v.is_ok()) {
      std::fprintf(stderr, "get: %s\n", v.status().to_string().c_str());
      ok = false;
      continue;
    }
    apps::List want =
        i < 6 ? apps::primes_of(lists[i])
              : apps::multiply(apps::primes_of(lists[i - 6]), apps::primes_of(lists[(i - 5) % 6]));
    if (apps::list_of(v->bytes()) != want) {
      std::fprintf(stderr, "answer %zu is wrong\n", i);
      ok = false;
    }
  }
  for (auto* set : {&inputs, &firsts, &seconds}) {
    for (const auto& r : *set) ok &= rt.remove(r).is_ok();
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::string which = "AB";
  int iters = 5, warmup = 1;
  TaskRuntimeOptions ro;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-b" && i + 1 < argc)
      which = argv[++i];
    else if (a == "-n" && i + 1 < argc)
      iters = std::atoi(argv[++i]);
    else if (a == "-w" && i + 1 < argc)
      warmup = std::atoi(argv[++i]);
    else if (a == "--direct")
      ro.transfer = TransferPolicy::kDirect;
    else {
      std::fprintf(stderr, "usage: task_perf [-b A|B|AB] [-n iters] [-w warmup] [--direct]\n");
      return 2;
    }
  }
  auto opts = NodeOptions::from_environment();
  if (!opts.is_ok()) return std::fprintf(stderr, "task_perf: %s\n", opts.status().to_string().c_str()), 2;
  opts->store_capacity = 256u << 20;
  auto node = Node::create(*opts);
  if (!node.is_ok()) return std::fprintf(stderr, "task_perf: %s\n", node.status().to_string().c_str()), 2;
  auto rt = TaskRuntime::create(**node, apps::seed_tasks(), ro);
  if (!rt.is_ok()) return 2;
  bool ok = true;
  if ((*node)->rank() == 0) {
    std::printf("# task_perf: the seed's benchmarks, %d nodes, transport %s, transfer %s, %d iterations\n",
                (*node)->world_size(), (*node)->transport_name().c_str(), to_string(ro.transfer), iters);
    std::printf("# %-10s %14s %14s %14s %12s\n", "benchmark", "s/op (mean)", "s/op (min)", "seed Go s/op",
                "seed/ours");
    std::mt19937_64 rng(2021);
    for (char b : which) {
      const std::uint64_t prime = b == 'A' ? 4952019383323ull : 5;
      const double seed = b == 'A' ? 6.126 : 0.804;
      for (int i = 0; i < warmup; ++i) ok &= one_op(**rt, rng, prime);
      std::vector<double> t;
      for (int i = 0; i < iters; ++i) {
        auto t0 = Clock::now();
        ok &= one_op(**rt, rng, prime);
        t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
      double mean = 0;
      for (double x : t) mean += x / static_cast<double>(t.size());
      const double mn = *std::min_element(t.begin(), t.end());
      std::printf("  %-10c %14.4f %14.4f %14.3f %11.1fx\n", b, mean, mn, seed, seed / mean);
    }
    std::printf("# %s\n", ok ? "all answers correct" : "WRONG ANSWERS");
  }
  ok &= (*node)->barrier(std::chrono::minutes(10)).is_ok();
  rt->reset();
  return ok ? 0 : 1;
}
