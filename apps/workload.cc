#include "apps/workload.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <thread>

namespace hoplite::apps {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void print_task_stats(TaskRuntime& rt) {
  const auto st = rt.stats();
  std::printf("# tasks scheduled %llu, re-executed after a failure %llu, failed ranks now %zu\n",
              static_cast<unsigned long long>(st.scheduled), static_cast<unsigned long long>(st.reexecuted),
              rt.node().failed_ranks().size());
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

namespace {

ObjectID done_id() {
  return ObjectID::from_name("apps/workload/done");
}
ObjectID bye_id(int rank) {
  return ObjectID::from_name("apps/workload/bye/" + std::to_string(rank));
}

// Every task function, wrapped with the injected faults.
TaskFunctions with_faults(TaskFunctions fns, const WorkloadFlags& f, int rank) {
  auto runs = std::make_shared<std::atomic<int>>(0);
  auto rng = std::make_shared<std::pair<std::mutex, std::mt19937_64>>();
  rng->second.seed(static_cast<std::uint64_t>(rank) * 7919 + 1);
  for (auto& [name, fn] : fns) {
    fn = [fn = fn, f, rank, runs, rng](TaskContext& ctx) -> Status {
      if (rank == f.kill_rank && !f.rejoined && ++*runs == f.kill_after) {
        std::fprintf(stderr, "[workload] rank %d: killing itself in its task %d\n", rank, f.kill_after);
        ::raise(SIGKILL);
      }
      if (rank == f.straggler_rank && f.straggle_ms > 0)
        std::this_thread::sleep_for(milliseconds(f.straggle_ms));
      if (f.jitter_ms > 0) {
        double ms;
        {
          std::lock_guard lock(rng->first);
          ms = std::exponential_distribution<double>(1.0 / f.jitter_ms)(rng->second);
        }
        std::this_thread::sleep_for(std::chrono::microseconds(static_cast<long>(ms * 1000)));
      }
      return fn(ctx);
    };
  }
  return fns;
}

int member(const Workload& w, WorkloadFlags f) {
  auto opts = NodeOptions::from_environment();
  if (!opts.is_ok()) {
    std::fprintf(stderr, "%s: %s\n", w.name.c_str(), opts.status().to_string().c_str());
    return 2;
  }
  if (f.rejoined) {
    opts->rejoin = true;
    // A rejoiner cannot run the start-up link probe (it needs everyone).
    if (opts->link_bandwidth == 0) opts->link_bandwidth = 125e6;
    if (opts->link_latency == 0) opts->link_latency = 50e-6;
  }
  auto node = Node::create(*opts);
  if (!node.is_ok()) {
    std::fprintf(stderr, "%s: %s\n", w.name.c_str(), node.status().to_string().c_str());
    return 2;
  }
  TaskRuntimeOptions ro;
  ro.transfer = f.transfer;
  auto rt = TaskRuntime::create(**node, with_faults(w.tasks(f), f, (*node)->rank()), ro);
  if (!rt.is_ok()) return 2;
  int rc = 0;
  const int me = (*node)->rank();
  if (me == 0) {
    rc = w.drive(**rt, f);
    const char d = 1;
    (void)(*node)->put(done_id(), &d, 1);
    // Everyone still alive has seen the end before rank 0 (which holds
    // directory shards) leaves.
    for (int r = 1; r < (*node)->world_size(); ++r) {
      auto failed = (*node)->failed_ranks();
      if (std::find(failed.begin(), failed.end(), r) != failed.end()) continue;
      (void)(*node)->get(bye_id(r)).wait(std::chrono::seconds(30));
    }
  } else {
    auto d = (*node)->get(done_id()).wait(std::chrono::hours(24));
    if (!d.is_ok()) rc = 1;
    const char b = 1;
    (void)(*node)->put(bye_id(me), &b, 1);
    // Rank 0 reads the bye from the directory; give it the moment.
    (void)(*node)->barrier(std::chrono::seconds(10));
  }
  if (me == 0) (void)(*node)->barrier(std::chrono::seconds(10));
  rt->reset();
  return rc;
}

}  // namespace

int run_workload(int argc, char** argv, const Workload& w) {
  WorkloadFlags f;
  po::options_description desc(w.name + " options");
  std::string transfer = "collective";
  desc.add_options()("help,h", "show this help")(
      "transfer", po::value(&transfer)->default_value("collective"),
      "collective (Hoplite) or direct (baseline)")("kill-rank", po::value(&f.kill_rank)->default_value(-1),
                                                   "rank that SIGKILLs itself (and is restarted)")(
      "kill-after", po::value(&f.kill_after)->default_value(3), "... when its N-th task starts")(
      "straggler-rank", po::value(&f.straggler_rank)->default_value(-1), "rank that straggles")(
      "straggle-ms", po::value(&f.straggle_ms)->default_value(0), "... by this long in every task")(
      "jitter-ms", po::value(&f.jitter_ms)->default_value(0), "mean of an exponential delay in every task");
  if (w.options) w.options(desc);
  try {
    po::store(po::parse_command_line(argc, argv, desc), f.vm);
    po::notify(f.vm);
  } catch (const std::exception& e) {
    std::cerr << w.name << ": " << e.what() << "\n" << desc;
    return 2;
  }
  if (f.vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (transfer == "direct") {
    f.transfer = TransferPolicy::kDirect;
  } else if (transfer != "collective") {
    std::cerr << w.name << ": --transfer is collective or direct\n";
    return 2;
  }
  const char* rank_env = std::getenv("RANK");
  const int rank = rank_env ? std::atoi(rank_env) : -1;
  if (rank < 0 || rank != f.kill_rank) return member(w, f);

  // The victim: a supervisor (no threads) forks the member, and once it
  // died of SIGKILL, a restarted one.
  for (int incarnation = 0;; ++incarnation) {
    f.rejoined = incarnation > 0;
    pid_t pid = ::fork();
    if (pid < 0) return 2;
    if (pid == 0) ::_exit(member(w, f));
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && incarnation == 0) {
      std::fprintf(stderr, "[workload] rank %d: restarting (rejoin)\n", rank);
      continue;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  }
}

}  // namespace hoplite::apps
