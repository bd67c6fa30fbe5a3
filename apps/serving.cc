// Ensemble serving (the paper's third workload).
//
// Rank 0 is the front end; ranks 1..n-1 each hold one model of the
// ensemble. Every query is a --query-mb tensor (48 MiB in the paper) put
// at rank 0 and broadcast to every model (each runs `infer` on it), whose
// answers (a --classes float32 score vector each) are gathered at rank 0,
// or reduced there with --combine reduce. The latency of a query is from
// its put to the last answer; --warmup queries first, then --queries
// measured ones; p50 and p99 printed.
//
//   hoplite-run -n 8 --netns --rate 1gbit -- build/apps/serving --queries 100
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <random>

#include "apps/workload.h"

using namespace hoplite;
using namespace hoplite::apps;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kWait = std::chrono::minutes(5);

// A model's score of class c: a strided dot product of the query with a
// model-specific weight, so every model reads the whole tensor.
TaskFunctions serving_tasks(const WorkloadFlags& f) {
  const std::size_t classes = f.vm["classes"].as<std::size_t>();
  TaskFunctions t;
  t["infer"] = [classes](TaskContext& ctx) -> Status {
    auto q = ctx.arg(0);
    if (!q.is_ok()) return q.status();
    std::uint32_t model = 0;
    std::memcpy(&model, ctx.arg(1).value().data(), sizeof model);
    const float* x = reinterpret_cast<const float*>(q->data());
    const std::size_t n = q->size() / sizeof(float);
    std::vector<float> score(classes, 0.f);
    const float wm = 1.f + static_cast<float>(model) * 0.125f;
    for (std::size_t i = 0; i < n; ++i) score[i % classes] += x[i] * wm;
    return ctx.set_result(std::as_bytes(std::span(score)));
  };
  return t;
}

int drive(TaskRuntime& rt, const WorkloadFlags& f) {
  Node& node = rt.node();
  const int models = node.world_size() - 1;
  if (models < 1) return std::fprintf(stderr, "serving: needs at least 2 ranks\n"), 2;
  const auto bytes = static_cast<std::size_t>(f.vm["query-mb"].as<double>() * (1 << 20)) / 4 * 4;
  const int queries = f.vm["queries"].as<int>(), warmup = f.vm["warmup"].as<int>();
  const bool reduce = f.vm["combine"].as<std::string>() == "reduce";
  const std::size_t classes = f.vm["classes"].as<std::size_t>();
  std::printf("# serving: %d models, query %.1f MiB, %d warm-up + %d queries, answers %s, transfer %s\n",
              models, bytes / 1048576.0, warmup, queries, reduce ? "reduced" : "gathered",
              to_string(f.transfer));
  std::vector<float> query(bytes / sizeof(float));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& v : query) v = u(rng);
  std::vector<double> lat;
  for (int qi = 0; qi < warmup + queries; ++qi) {
    query[static_cast<std::size_t>(qi) % query.size()] = static_cast<float>(qi);  // a new query each time
    const auto t0 = Clock::now();
    auto q = rt.put(std::as_bytes(std::span(query)));
    if (!q.is_ok()) return std::fprintf(stderr, "put: %s\n", q.status().to_string().c_str()), 1;
    std::vector<ObjectRef> answers;
    for (int m = 0; m < models; ++m) {
      const std::uint32_t model = static_cast<std::uint32_t>(m);
      auto a = rt.schedule("infer", {TaskArg::ref(*q), TaskArg::value(std::as_bytes(std::span(&model, 1)))},
                           {.rank = m + 1});
      if (!a.is_ok()) return 1;
      answers.push_back(*a);
    }
    bool ok = true;
    if (reduce) {
      ObjectRef sum{ObjectID::random(), 0};
      auto r = rt.reduce(answers, sum.id, ReduceOp::kSum, DataType::kFloat32, 0, kWait);
      ok = r.is_ok() && rt.get(sum, kWait).is_ok();
      (void)rt.remove(sum);
    } else {
      std::vector<std::future<bool>> gets;
      for (const auto& a : answers) {
        gets.push_back(std::async(std::launch::async, [&rt, a, classes] {
          auto v = rt.get(a, kWait);
          return v.is_ok() && v->size() == classes * sizeof(float);
        }));
      }
      for (auto& g : gets) ok &= g.get();
    }
    if (!ok) return std::fprintf(stderr, "serving: query %d failed\n", qi), 1;
    if (qi >= warmup) lat.push_back(since(t0));
    (void)rt.remove(*q);
    for (const auto& a : answers) (void)rt.remove(a);
  }
  double mean = 0;
  for (double x : lat) mean += x / static_cast<double>(lat.size());
  std::printf("# %-10s %8s %10s %10s %10s %10s\n", "transfer", "queries", "mean ms", "p50 ms", "p99 ms",
              "max ms");
  std::printf("  %-10s %8d %10.1f %10.1f %10.1f %10.1f\n", to_string(f.transfer), queries, mean * 1e3,
              quantile(lat, 0.5) * 1e3, quantile(lat, 0.99) * 1e3, quantile(lat, 1.0) * 1e3);
  print_task_stats(rt);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Workload w;
  w.name = "serving";
  w.options = [](po::options_description& d) {
    d.add_options()("query-mb", po::value<double>()->default_value(48), "query tensor size in MiB")(
        "queries", po::value<int>()->default_value(100), "measured queries")(
        "warmup", po::value<int>()->default_value(10), "queries before measuring")(
        "classes", po::value<std::size_t>()->default_value(1000), "scores per answer")(
        "combine", po::value<std::string>()->default_value("gather"), "gather or reduce the answers");
  };
  w.tasks = serving_tasks;
  w.drive = drive;
  return run_workload(argc, argv, w);
}
