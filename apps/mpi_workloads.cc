// Form (c) of the paper's workloads: static MPI schedules, for the side by
// side runs of docs/workloads.md. One program, three workloads:
//
//   mpi_workloads sgd     [--model-mb 100] [--steps 10] [--warmup 2] [--batch 1]
//       synchronous data-parallel SGD: every worker computes a gradient,
//       MPI_Allreduce over all n ranks, every rank applies the mean;
//   mpi_workloads rl      [--policy-mb 64] [--rollout-mb 0.25] [--updates 60] [--warmup 8]
//       rounds: every worker's trajectory is MPI_Gather'ed at the learner
//       (n-1 updates), then the new policy goes out with MPI_Bcast;
//   mpi_workloads serving [--query-mb 48] [--queries 100] [--warmup 10]
//       MPI_Bcast of each query, every model scores it, MPI_Gather of the
//       answers at rank 0.
//
// --straggler-rank R --straggle-ms X and --jitter-ms X inject the same
// delays as the task workloads (per gradient, trajectory or answer).
// Output: the same table as the hoplite forms, transfer "mpi".
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "apps/mlp.h"

using namespace hoplite::apps;
using Clock = std::chrono::steady_clock;

namespace {

struct Flags {
  double model_mb = 100, policy_mb = 64, rollout_mb = 0.25, query_mb = 48;
  int steps = 10, warmup = -1, updates = 60, queries = 100;
  std::size_t batch = 1;
  float lr = 20.0f;
  int straggler = -1, straggle_ms = 0, jitter_ms = 0;
};

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void delay(const Flags& f, int rank, std::mt19937_64& rng) {
  if (rank == f.straggler && f.straggle_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(f.straggle_ms));
  if (f.jitter_ms > 0) {
    double ms = std::exponential_distribution<double>(1.0 / f.jitter_ms)(rng);
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<long>(ms * 1000)));
  }
}

// MPI counts are ints: large buffers go in pieces of at most 1 GiB.
void bcast(void* p, std::size_t bytes, int root) {
  for (std::size_t off = 0; off < bytes; off += 1u << 30) {
    MPI_Bcast(static_cast<char*>(p) + off, static_cast<int>(std::min<std::size_t>(bytes - off, 1u << 30)),
              MPI_BYTE, root, MPI_COMM_WORLD);
  }
}

int sgd(const Flags& f, int rank, int n) {
  const MlpShape s = mlp_for_bytes(static_cast<std::uint64_t>(f.model_mb * (1 << 20)));
  const int warmup = f.warmup < 0 ? 2 : f.warmup;
  auto w = mlp_init(s, 1);
  std::vector<float> g(s.params(), 0.f), sum(s.params());
  std::mt19937_64 rng(static_cast<std::uint64_t>(rank) * 7919 + 1);
  float loss0 = 0;
  if (rank == 0) {
    loss0 = mlp_gradient(s, w.data(), 64, 999, g.data());
    std::fill(g.begin(), g.end(), 0.f);
    std::printf(
        "# mpi sgd: %d workers + the server rank, MPI_Allreduce of all %d, model %.1f MB, batch %zu\n", n - 1,
        n, s.params() * 4.0 / (1 << 20), f.batch);
  }
  Clock::time_point t0 = Clock::now();
  std::uint64_t seed = 1000 + static_cast<std::uint64_t>(rank);
  for (int step = 0; step < warmup + f.steps; ++step) {
    if (step == warmup) {
      MPI_Barrier(MPI_COMM_WORLD);
      t0 = Clock::now();
    }
    if (rank != 0) {
      delay(f, rank, rng);
      mlp_gradient(s, w.data(), f.batch, seed += 64, g.data());
    }
    for (std::size_t off = 0; off < g.size(); off += 1u << 28) {
      const int cnt = static_cast<int>(std::min<std::size_t>(g.size() - off, 1u << 28));
      MPI_Allreduce(g.data() + off, sum.data() + off, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    const float step_size = mlp_step(s, f.lr, static_cast<std::size_t>(n - 1));
    for (std::size_t i = 0; i < w.size(); ++i) w[i] -= step_size * sum[i];
  }
  const double secs = since(t0);
  if (rank == 0) {
    const float loss1 = mlp_gradient(s, w.data(), 64, 999, g.data());
    std::printf("# %-10s %6s %8s %10s %12s %10s %10s\n", "transfer", "steps", "seconds", "steps/s",
                "gradients/s", "loss0", "loss");
    std::printf("  %-10s %6d %8.2f %10.3f %12.3f %10.4f %10.4f\n", "mpi", f.steps, secs, f.steps / secs,
                f.steps * (n - 1) / secs, loss0, loss1);
  }
  return 0;
}

int rl(const Flags& f, int rank, int n) {
  const std::size_t policy_bytes = static_cast<std::size_t>(f.policy_mb * (1 << 20)) / 4 * 4;
  const std::size_t roll_bytes = static_cast<std::size_t>(f.rollout_mb * (1 << 20)) / 4 * 4;
  const int warmup = f.warmup < 0 ? 8 : f.warmup;
  std::vector<float> policy(policy_bytes / 4, 0.01f), roll(roll_bytes / 4);
  std::vector<float> all(rank == 0 ? roll.size() * static_cast<std::size_t>(n) : 0);
  std::mt19937_64 rng(static_cast<std::uint64_t>(rank) * 7919 + 1);
  if (rank == 0) {
    std::printf(
        "# mpi rl: %d workers, policy %.1f MiB, rollout %.2f MiB, MPI_Gather then MPI_Bcast per round of "
        "%d\n",
        n - 1, policy_bytes / 1048576.0, roll_bytes / 1048576.0, n - 1);
  }
  const int rounds_warm = (warmup + n - 2) / (n - 1), rounds = (f.updates + n - 2) / (n - 1);
  Clock::time_point t0 = Clock::now();
  for (int round = 0; round < rounds_warm + rounds; ++round) {
    if (round == rounds_warm) {
      MPI_Barrier(MPI_COMM_WORLD);
      t0 = Clock::now();
    }
    if (rank != 0) {
      delay(f, rank, rng);
      float acc = 0;
      for (std::size_t i = 0; i < policy.size(); i += 16) acc += policy[i];
      for (auto& v : roll) v = acc * 1e-6f + static_cast<float>(rng() % 1000) * 1e-3f;
    }
    MPI_Gather(roll.data(), static_cast<int>(roll.size()), MPI_FLOAT, all.data(),
               static_cast<int>(roll.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      for (int r = 1; r < n; ++r) {
        const float* o = all.data() + static_cast<std::size_t>(r) * roll.size();
        for (std::size_t j = 0; j < policy.size(); j += 64) policy[j] += 1e-4f * o[j % roll.size()];
      }
    }
    bcast(policy.data(), policy_bytes, 0);
  }
  const double secs = since(t0);
  if (rank == 0) {
    const int done = rounds * (n - 1);
    std::printf("# %-10s %8s %8s %10s %10s\n", "transfer", "updates", "seconds", "updates/s", "policies");
    std::printf("  %-10s %8d %8.2f %10.3f %10d\n", "mpi", done, secs, done / secs, rounds);
  }
  return 0;
}

int serving(const Flags& f, int rank, int n) {
  const std::size_t bytes = static_cast<std::size_t>(f.query_mb * (1 << 20)) / 4 * 4;
  const int warmup = f.warmup < 0 ? 10 : f.warmup;
  constexpr std::size_t kClasses = 1000;
  std::vector<float> query(bytes / 4), score(kClasses),
      all(rank == 0 ? kClasses * static_cast<std::size_t>(n) : 0);
  std::mt19937 qrng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  if (rank == 0) {
    for (auto& v : query) v = u(qrng);
    std::printf("# mpi serving: %d models, query %.1f MiB, MPI_Bcast then MPI_Gather per query\n", n - 1,
                bytes / 1048576.0);
  }
  std::mt19937_64 rng(static_cast<std::uint64_t>(rank) * 7919 + 1);
  std::vector<double> lat;
  for (int qi = 0; qi < warmup + f.queries; ++qi) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = Clock::now();
    bcast(query.data(), bytes, 0);
    if (rank != 0) {
      delay(f, rank, rng);
      std::fill(score.begin(), score.end(), 0.f);
      const float wm = 1.f + static_cast<float>(rank - 1) * 0.125f;
      for (std::size_t i = 0; i < query.size(); ++i) score[i % kClasses] += query[i] * wm;
    }
    MPI_Gather(score.data(), kClasses, MPI_FLOAT, all.data(), kClasses, MPI_FLOAT, 0, MPI_COMM_WORLD);
    if (qi >= warmup) lat.push_back(since(t0));
  }
  if (rank == 0) {
    std::sort(lat.begin(), lat.end());
    double mean = 0;
    for (double x : lat) mean += x / static_cast<double>(lat.size());
    auto q = [&](double p) {
      return lat[std::min(lat.size() - 1, static_cast<std::size_t>(p * (lat.size() - 1) + 0.5))];
    };
    std::printf("# %-10s %8s %10s %10s %10s %10s\n", "transfer", "queries", "mean ms", "p50 ms", "p99 ms",
                "max ms");
    std::printf("  %-10s %8d %10.1f %10.1f %10.1f %10.1f\n", "mpi", f.queries, mean * 1e3, q(0.5) * 1e3,
                q(0.99) * 1e3, lat.back() * 1e3);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, n = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  Flags f;
  std::string which = argc > 1 ? argv[1] : "";
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--model-mb")
      f.model_mb = std::atof(v);
    else if (k == "--policy-mb")
      f.policy_mb = std::atof(v);
    else if (k == "--rollout-mb")
      f.rollout_mb = std::atof(v);
    else if (k == "--query-mb")
      f.query_mb = std::atof(v);
    else if (k == "--steps")
      f.steps = std::atoi(v);
    else if (k == "--warmup")
      f.warmup = std::atoi(v);
    else if (k == "--updates")
      f.updates = std::atoi(v);
    else if (k == "--queries")
      f.queries = std::atoi(v);
    else if (k == "--batch")
      f.batch = static_cast<std::size_t>(std::atoi(v));
    else if (k == "--lr")
      f.lr = static_cast<float>(std::atof(v));
    else if (k == "--straggler-rank")
      f.straggler = std::atoi(v);
    else if (k == "--straggle-ms")
      f.straggle_ms = std::atoi(v);
    else if (k == "--jitter-ms")
      f.jitter_ms = std::atoi(v);
    else {
      if (rank == 0) std::fprintf(stderr, "mpi_workloads: unknown option %s\n", k.c_str());
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  }
  int rc = 2;
  if (n < 2) {
    if (rank == 0) std::fprintf(stderr, "mpi_workloads: needs at least 2 ranks\n");
  } else if (which == "sgd") {
    rc = sgd(f, rank, n);
  } else if (which == "rl") {
    rc = rl(f, rank, n);
  } else if (which == "serving") {
    rc = serving(f, rank, n);
  } else if (rank == 0) {
    std::fprintf(stderr, "usage: mpi_workloads sgd|rl|serving [options]\n");
  }
  MPI_Finalize();
  return rc;
}
