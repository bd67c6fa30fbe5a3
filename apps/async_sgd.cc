// Asynchronous SGD with a parameter server (the paper's first workload).
//
// Rank 0 is the parameter server; ranks 1..n-1 are workers computing
// gradients of an MLP (apps/mlp.h, --model-mb of parameters). Every step
// the server reduces the first k = (n-1)/2 gradients to arrive (any k of
// n-1), applies them, and the workers whose gradients were used compute
// their next one from the new weights; the others keep computing on the
// weights they had. Under --transfer collective the reduce is the node's
// tree-chain and the new weights reach the k workers through a broadcast
// chain; under direct, every gradient is pulled to the server and every
// worker pulls the weights from it.
//
//   hoplite-run -n 8 --netns --rate 1gbit -- build/apps/async_sgd --model-mb 100 --steps 10
#include <cstdio>
#include <cstring>
#include <map>

#include "apps/mlp.h"
#include "apps/workload.h"

using namespace hoplite;
using namespace hoplite::apps;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kWait = std::chrono::minutes(10);

template <typename T>
std::span<const std::byte> as_bytes_of(const T& v) {
  return std::as_bytes(std::span(&v, 1));
}
template <typename T>
T value_of(const ObjectView& v) {
  T x{};
  std::memcpy(&x, v.data(), std::min(sizeof x, v.size()));
  return x;
}

MlpShape shape_of(const WorkloadFlags& f) {
  return mlp_for_bytes(static_cast<std::uint64_t>(f.vm["model-mb"].as<double>() * (1 << 20)));
}

TaskFunctions sgd_tasks(const WorkloadFlags& f) {
  const MlpShape s = shape_of(f);
  const std::size_t batch = f.vm["batch"].as<std::size_t>();
  TaskFunctions t;
  // grad(weights, seed): the gradient of a batch drawn from seed.
  t["grad"] = [s, batch](TaskContext& ctx) -> Status {
    auto w = ctx.arg(0);
    if (!w.is_ok()) return w.status();
    auto seed = value_of<std::uint64_t>(ctx.arg(1).value());
    if (w->size() != s.params() * sizeof(float)) return invalid_argument("weights of the wrong size");
    auto out = ctx.create_result(s.params() * sizeof(float));
    if (!out.is_ok()) return out.status();
    mlp_gradient(s, reinterpret_cast<const float*>(w->data()), batch, seed,
                 reinterpret_cast<float*>(out->data().data()));
    return out->seal();
  };
  // apply(weights, gradient sum, step): weights - step * sum.
  t["apply"] = [s](TaskContext& ctx) -> Status {
    auto w = ctx.arg(0);
    if (!w.is_ok()) return w.status();
    auto g = ctx.arg(1);
    if (!g.is_ok()) return g.status();
    auto step = value_of<float>(ctx.arg(2).value());
    auto out = ctx.create_result(s.params() * sizeof(float));
    if (!out.is_ok()) return out.status();
    auto* o = reinterpret_cast<float*>(out->data().data());
    auto* a = reinterpret_cast<const float*>(w->data());
    auto* b = reinterpret_cast<const float*>(g->data());
    for (std::size_t i = 0; i < s.params(); ++i) o[i] = a[i] - step * b[i];
    return out->seal();
  };
  return t;
}

int drive(TaskRuntime& rt, const WorkloadFlags& f) {
  Node& node = rt.node();
  const int n = node.world_size();
  const int workers = n - 1;
  if (workers < 1) return std::fprintf(stderr, "async_sgd: needs at least 2 ranks\n"), 2;
  std::size_t k = f.vm["k"].as<std::size_t>();
  if (k == 0) k = std::max(1, workers / 2);
  const int steps = f.vm["steps"].as<int>(), warmup = f.vm["warmup"].as<int>();
  const float lr = f.vm["lr"].as<float>();
  const MlpShape s = shape_of(f);
  const std::size_t batch = f.vm["batch"].as<std::size_t>();
  std::printf("# async_sgd: %d workers, k = %zu, model %.1f MB (%zu x %zu x %zu), batch %zu, transfer %s\n",
              workers, k, s.params() * 4.0 / (1 << 20), s.in, s.hidden, s.out, batch, to_string(f.transfer));

  auto w0 = mlp_init(s, 1);
  std::vector<float> scratch(s.params());
  const float loss0 = mlp_gradient(s, w0.data(), 64, 999, scratch.data());
  auto cur = rt.put(std::as_bytes(std::span(w0)));
  if (!cur.is_ok()) return 1;
  std::uint64_t seed = 1000;
  // Weight versions and how many gradients in flight read each.
  std::map<int, std::pair<ObjectRef, int>> versions;
  int version = 0;
  versions[0] = {*cur, workers};
  struct Grad {
    ObjectRef ref;
    int version;
  };
  std::vector<Grad> grads;
  for (int i = 0; i < workers; ++i) {
    auto g = rt.schedule("grad", {TaskArg::ref(*cur), TaskArg::value(as_bytes_of(++seed))}, {.rank = i + 1});
    if (!g.is_ok()) return 1;
    grads.push_back({*g, 0});
  }
  std::vector<ObjectRef> sums;
  std::vector<int> used_by(workers, 0);
  Clock::time_point t0;
  std::size_t consumed = 0;
  for (int step = 0; step < warmup + steps; ++step) {
    if (step == warmup) t0 = Clock::now(), consumed = 0;
    ObjectRef sum{ObjectID::random(), 0};
    // The update is scheduled first, so its get of the sum streams while
    // the reduce runs.
    auto next = rt.schedule("apply",
                            {TaskArg::ref(versions[version].first), TaskArg::ref(sum),
                             TaskArg::value(as_bytes_of(mlp_step(s, lr, k)))},
                            {.rank = 0});
    if (!next.is_ok()) return 1;
    std::vector<ObjectRef> in;
    for (const auto& g : grads) in.push_back(g.ref);
    auto r = rt.reduce(in, sum.id, ReduceOp::kSum, DataType::kFloat32, k, kWait);
    if (!r.is_ok()) return std::fprintf(stderr, "reduce: %s\n", r.status().to_string().c_str()), 1;
    consumed += r->used.size();
    versions[++version] = {*next, 0};
    for (const auto& id : r->used) {
      for (int i = 0; i < workers; ++i) {
        if (grads[i].ref.id != id) continue;
        --versions[grads[i].version].second;
        (void)rt.remove(grads[i].ref);
        ++used_by[i];
        auto g =
            rt.schedule("grad", {TaskArg::ref(*next), TaskArg::value(as_bytes_of(++seed))}, {.rank = i + 1});
        if (!g.is_ok()) return 1;
        grads[i] = {*g, version};
        ++versions[version].second;
      }
    }
    // What no one reads any more: old sums, and weight versions that no
    // gradient in flight and no pending update uses.
    sums.push_back(sum);
    if (sums.size() > 2) {
      (void)rt.remove(sums.front());
      sums.erase(sums.begin());
    }
    for (auto it = versions.begin(); it != versions.end();) {
      if (it->first < version - 1 && it->second.second == 0) {
        (void)rt.remove(it->second.first);
        it = versions.erase(it);
      } else {
        ++it;
      }
    }
  }
  auto last = rt.get(versions[version].first, kWait);
  if (!last.is_ok()) return 1;
  const double secs = since(t0);
  const float loss1 = mlp_gradient(s, reinterpret_cast<const float*>(last->data()), 64, 999, scratch.data());
  std::printf("# %-10s %6s %8s %10s %12s %10s %10s\n", "transfer", "steps", "seconds", "steps/s",
              "gradients/s", "loss0", "loss");
  std::printf("  %-10s %6d %8.2f %10.3f %12.3f %10.4f %10.4f\n", to_string(f.transfer), steps, secs,
              steps / secs, static_cast<double>(consumed) / secs, loss0, loss1);
  std::printf("# gradients used per worker:");
  for (int u : used_by) std::printf(" %d", u);
  std::printf("\n");
  print_task_stats(rt);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Workload w;
  w.name = "async_sgd";
  w.options = [](po::options_description& d) {
    d.add_options()("model-mb", po::value<double>()->default_value(100),
                    "model size in MiB (ResNet-50: ~100)")("steps", po::value<int>()->default_value(10),
                                                           "measured steps")(
        "warmup", po::value<int>()->default_value(2), "steps before the clock starts")(
        "batch", po::value<std::size_t>()->default_value(1), "samples per gradient")(
        "lr", po::value<float>()->default_value(20.0f),
        "learning rate (per unit of hidden width: apps/mlp.h)")(
        "k", po::value<std::size_t>()->default_value(0), "gradients per step (0: (n-1)/2)");
  };
  w.tasks = sgd_tasks;
  w.drive = drive;
  return run_workload(argc, argv, w);
}
