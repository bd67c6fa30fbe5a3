// Reinforcement learning, A3C/IMPALA style (the paper's second workload).
//
// Rank 0 is the learner; ranks 1..n-1 are rollout workers. A worker's
// `rollout` task reads the latest policy it was given (--policy-mb, 64 MB
// in the paper) and returns a trajectory (--rollout-mb). The learner
// consumes trajectories as they arrive (one at a time, whichever is ready
// first), updates its policy from each, and every (n+1)/2 updates puts a
// new policy version: the worker whose trajectory was just consumed gets
// the newest policy with its next task, so each version reaches the
// workers through broadcast chains (collective) or from the learner
// alone (direct).
//
//   hoplite-run -n 8 --netns --rate 1gbit -- build/apps/rl --updates 60
#include <cstdio>
#include <cstring>
#include <random>

#include "apps/workload.h"

using namespace hoplite;
using namespace hoplite::apps;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kWait = std::chrono::minutes(5);

std::size_t mb(const WorkloadFlags& f, const char* name) {
  return static_cast<std::size_t>(f.vm[name].as<double>() * (1 << 20)) / 4 * 4;
}

// rollout(policy, seed): --steps-per-rollout environment steps, each an
// action scored by the policy (a strided read of all of it), recorded as
// float observations in the trajectory.
TaskFunctions rl_tasks(const WorkloadFlags& f) {
  const std::size_t out = mb(f, "rollout-mb");
  TaskFunctions t;
  t["rollout"] = [out](TaskContext& ctx) -> Status {
    auto p = ctx.arg(0);
    if (!p.is_ok()) return p.status();
    std::uint64_t seed;
    std::memcpy(&seed, ctx.arg(1).value().data(), sizeof seed);
    const float* w = reinterpret_cast<const float*>(p->data());
    const std::size_t n = p->size() / sizeof(float);
    auto traj = ctx.create_result(out);
    if (!traj.is_ok()) return traj.status();
    auto* o = reinterpret_cast<float*>(traj->data().data());
    std::mt19937_64 rng(seed);
    float acc = 0;
    for (std::size_t i = 0; i < n; i += 16) acc += w[i];
    for (std::size_t i = 0; i < out / sizeof(float); ++i)
      o[i] = acc * 1e-6f + static_cast<float>(rng() % 1000) * 1e-3f;
    return traj->seal();
  };
  return t;
}

int drive(TaskRuntime& rt, const WorkloadFlags& f) {
  Node& node = rt.node();
  const int workers = node.world_size() - 1;
  if (workers < 1) return std::fprintf(stderr, "rl: needs at least 2 ranks\n"), 2;
  const int updates = f.vm["updates"].as<int>(), warmup = f.vm["warmup"].as<int>();
  const int every = (node.world_size() + 1) / 2;
  std::vector<float> policy(mb(f, "policy-mb") / sizeof(float), 0.01f);
  std::printf(
      "# rl: %d workers, policy %.1f MiB, rollout %.2f MiB, new policy every %d updates, transfer %s\n",
      workers, policy.size() * 4.0 / 1048576, mb(f, "rollout-mb") / 1048576.0, every, to_string(f.transfer));
  auto cur = rt.put(std::as_bytes(std::span(policy)));
  if (!cur.is_ok()) return 1;
  std::vector<ObjectRef> old_policies;
  std::uint64_t seed = 0;
  std::vector<ObjectRef> rolls;
  for (int i = 0; i < workers; ++i) {
    auto r =
        rt.schedule("rollout", {TaskArg::ref(*cur), TaskArg::value(std::as_bytes(std::span(&++seed, 1)))},
                    {.rank = i + 1});
    if (!r.is_ok()) return 1;
    rolls.push_back(*r);
  }
  Clock::time_point t0 = Clock::now();
  int versions = 0;
  for (int u = 0; u < warmup + updates; ++u) {
    if (u == warmup) t0 = Clock::now(), versions = 0;
    auto ready = rt.wait(rolls, 1, kWait);
    if (!ready.is_ok()) return std::fprintf(stderr, "wait: %s\n", ready.status().to_string().c_str()), 1;
    const std::size_t i = ready->front();
    auto traj = rt.get(rolls[i], kWait);
    if (!traj.is_ok()) return std::fprintf(stderr, "rollout: %s\n", traj.status().to_string().c_str()), 1;
    // The update: a step of the policy toward the trajectory's statistics.
    const float* o = reinterpret_cast<const float*>(traj->data());
    const std::size_t m = traj->size() / sizeof(float);
    for (std::size_t j = 0; j < policy.size(); j += 64) policy[j] += 1e-4f * o[j % m];
    (void)rt.remove(rolls[i]);
    if ((u + 1) % every == 0) {
      old_policies.push_back(*cur);
      auto next = rt.put(std::as_bytes(std::span(policy)));
      if (!next.is_ok()) return 1;
      cur = next;
      ++versions;
      // Versions older than every worker's current task's are unused.
      while (old_policies.size() > static_cast<std::size_t>(workers) + 1) {
        (void)rt.remove(old_policies.front());
        old_policies.erase(old_policies.begin());
      }
    }
    auto r =
        rt.schedule("rollout", {TaskArg::ref(*cur), TaskArg::value(std::as_bytes(std::span(&++seed, 1)))},
                    {.rank = static_cast<int>(i) + 1});
    if (!r.is_ok()) return 1;
    rolls[i] = *r;
  }
  const double secs = since(t0);
  std::printf("# %-10s %8s %8s %10s %10s\n", "transfer", "updates", "seconds", "updates/s", "policies");
  std::printf("  %-10s %8d %8.2f %10.3f %10d\n", to_string(f.transfer), updates, secs, updates / secs,
              versions);
  print_task_stats(rt);
  // Let the last tasks finish before the end.
  (void)rt.wait(rolls, 0, kWait);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Workload w;
  w.name = "rl";
  w.options = [](po::options_description& d) {
    d.add_options()("policy-mb", po::value<double>()->default_value(64), "policy size in MiB")(
        "rollout-mb", po::value<double>()->default_value(0.25), "trajectory size in MiB")(
        "updates", po::value<int>()->default_value(60), "measured updates")(
        "warmup", po::value<int>()->default_value(8), "updates before measuring");
  };
  w.tasks = rl_tasks;
  w.drive = drive;
  return run_workload(argc, argv, w);
}
