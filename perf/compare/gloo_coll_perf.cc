// gloo_coll_perf: Gloo's broadcast / reduce / allreduce / gather / allgather
// timed like the project's *_perf tools, printing the same nccl-tests table
// (see compare_common.h), for comparison with Gloo (Debian libgloo-dev,
// 0.0~git20220518).
//
//   RANK=r WORLD_SIZE=n [GLOO_IFACE=lo] [GLOO_STORE_DIR=dir] [GLOO_PREFIX=p]
//     gloo_coll_perf -C allreduce -A ring -b 1K -e 16M     (one process per rank)
//
// Rank and size: RANK / WORLD_SIZE, else OMPI_COMM_WORLD_RANK / _SIZE.
// Rendezvous: a gloo::rendezvous::FileStore in GLOO_STORE_DIR (default
// /tmp/gloo-store-<MASTER_PORT or "default">), under a PrefixStore named
// GLOO_PREFIX (default: "ompi-<jobid>" under mpirun, else "run"); every rank
// deletes the key files it wrote when it exits normally, so the next run can
// reuse the directory and prefix. Transport: TCP on GLOO_IFACE (default "lo").
// GLOO_TIMEOUT_S (default 300) bounds every operation.
//
// Collectives, all through Gloo's options API except two allreduce variants:
//   bcast      gloo::broadcast(BroadcastOptions)
//   reduce     gloo::reduce(ReduceOptions)
//   allreduce  -A ring (default) | bcube: gloo::allreduce(AllreduceOptions)
//              with setAlgorithm(RING | BCUBE), separate input and output;
//              -A ring_chunked | halving_doubling: this Gloo's options API has
//              only RING and BCUBE, so these use the classic algorithm classes
//              gloo::AllreduceRingChunked<T> / AllreduceHalvingDoubling<T>
//              (in place; built once per size; the input is refilled before
//              each iteration, outside the timed region).
//   gather     gloo::gather(GatherOptions)
//   allgather  gloo::allgather(AllgatherOptions)
// Per iteration: refill/clear buffers, gloo::barrier, t0, collective, t1;
// then an allreduce(max) of t1 - t0 (outside the timed region) gives the
// slowest rank of that iteration. Exits 1 if any element is wrong or on a
// Gloo error, 2 on bad arguments or environment.
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/gather.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "compare_common.h"

namespace {

using compare::Args;
using compare::Coll;
using ReduceFn = void (*)(void*, const void*, const void*, size_t);

constexpr std::uint32_t kBenchTag = 1;
constexpr std::uint32_t kStatsTag = 2;
constexpr std::uint32_t kBarrierTag = 3;

enum class Algo { kRing, kBcube, kRingChunked, kHalvingDoubling };

const char* getenv_any(std::initializer_list<const char*> names) {
  for (const char* n : names) {
    const char* v = std::getenv(n);
    if (v != nullptr && *v != '\0') return v;
  }
  return nullptr;
}

template <typename T>
ReduceFn reduce_fn(compare::Op op) {
  switch (op) {
    case compare::Op::kSum: return static_cast<ReduceFn>(&gloo::sum<T>);
    case compare::Op::kProd: return static_cast<ReduceFn>(&gloo::product<T>);
    case compare::Op::kMin: return static_cast<ReduceFn>(&gloo::min<T>);
    case compare::Op::kMax: return static_cast<ReduceFn>(&gloo::max<T>);
  }
  return static_cast<ReduceFn>(&gloo::sum<T>);
}

template <typename T>
const gloo::ReductionFunction<T>* reduction_function(compare::Op op) {
  switch (op) {
    case compare::Op::kSum: return gloo::ReductionFunction<T>::sum;
    case compare::Op::kProd: return gloo::ReductionFunction<T>::product;
    case compare::Op::kMin: return gloo::ReductionFunction<T>::min;
    case compare::Op::kMax: return gloo::ReductionFunction<T>::max;
  }
  return gloo::ReductionFunction<T>::sum;
}

void barrier(const std::shared_ptr<gloo::Context>& ctx) {
  gloo::BarrierOptions o(ctx);
  o.setTag(kBarrierTag);
  gloo::barrier(o);
}

// Max (or sum) over ranks, through a Gloo allreduce of one element.
template <typename T>
T allreduce_one(const std::shared_ptr<gloo::Context>& ctx, T mine, ReduceFn fn) {
  T out{};
  gloo::AllreduceOptions o(ctx);
  o.setInput(&mine, 1);
  o.setOutput(&out, 1);
  o.setReduceFunction(fn);
  o.setTag(kStatsTag);
  gloo::allreduce(o);
  return out;
}

template <typename T>
int bench(const Args& a, Algo algo, const std::shared_ptr<gloo::Context>& ctx, const std::string& info) {
  const int rank = ctx->rank;
  const int world = ctx->size;
  const Coll coll = a.coll;
  const bool gathers = compare::is_gather(coll);
  const bool classic =
      coll == Coll::kAllreduce && (algo == Algo::kRingChunked || algo == Algo::kHalvingDoubling);
  if (rank == 0) compare::print_header("gloo_coll_perf", a, world, info);

  std::uint64_t total_wrong = 0;
  int iter_id = 0;  // across sizes, so that no buffer can hold a previous iteration's pattern
  for (std::uint64_t step_bytes : compare::sizes(a)) {
    const std::uint64_t part =
        gathers ? step_bytes / sizeof(T) / static_cast<std::uint64_t>(world) : step_bytes / sizeof(T);
    if (part == 0) continue;  // less than one element per rank
    const std::uint64_t total = gathers ? part * static_cast<std::uint64_t>(world) : part;
    std::vector<T> send(part);
    std::vector<T> recv(classic || coll == Coll::kBcast ? 0 : total);
    if (compare::is_reduction(coll)) compare::fill_input(send.data(), part, rank);

    std::unique_ptr<gloo::Algorithm> classic_algo;
    if (classic) {
      if (part > static_cast<std::uint64_t>(INT32_MAX)) {
        if (rank == 0) std::fprintf(stderr, "gloo_coll_perf: too many elements for %s\n", a.algo.c_str());
        return 2;
      }
      std::vector<T*> ptrs{send.data()};
      const int count = static_cast<int>(part);
      if (algo == Algo::kRingChunked) {
        classic_algo =
            std::make_unique<gloo::AllreduceRingChunked<T>>(ctx, ptrs, count, reduction_function<T>(a.redop));
      } else {
        classic_algo = std::make_unique<gloo::AllreduceHalvingDoubling<T>>(ctx, ptrs, count,
                                                                           reduction_function<T>(a.redop));
      }
    }

    std::vector<double> slowest;
    std::uint64_t wrong = 0;
    for (int i = 0; i < a.warmup + a.iters; ++i, ++iter_id) {
      const bool measured = i >= a.warmup;
      switch (coll) {
        case Coll::kBcast:
          if (rank == a.root)
            compare::fill_pattern(send.data(), part, compare::pattern_seed(a.root, iter_id));
          break;
        case Coll::kReduce:
        case Coll::kAllreduce:
          if (classic) {
            compare::fill_input(send.data(), part, rank);
          } else {
            std::memset(recv.data(), 0, recv.size() * sizeof(T));
          }
          break;
        case Coll::kGather:
        case Coll::kAllgather:
          compare::fill_pattern(send.data(), part, compare::pattern_seed(rank, iter_id));
          std::memset(recv.data(), 0, recv.size() * sizeof(T));
          break;
      }
      barrier(ctx);
      auto t0 = std::chrono::steady_clock::now();
      switch (coll) {
        case Coll::kBcast: {
          gloo::BroadcastOptions o(ctx);
          o.setOutput(send.data(), part);  // in place: the root's output is its input
          o.setRoot(a.root);
          o.setTag(kBenchTag);
          gloo::broadcast(o);
          break;
        }
        case Coll::kReduce: {
          gloo::ReduceOptions o(ctx);
          o.setInput(send.data(), part);
          o.setOutput(recv.data(), part);  // Gloo's ring reduce uses it on every rank
          o.setRoot(a.root);
          o.setReduceFunction(reduce_fn<T>(a.redop));
          o.setTag(kBenchTag);
          gloo::reduce(o);
          break;
        }
        case Coll::kAllreduce: {
          if (classic) {
            classic_algo->run();
            break;
          }
          gloo::AllreduceOptions o(ctx);
          o.setAlgorithm(algo == Algo::kBcube ? gloo::AllreduceOptions::Algorithm::BCUBE
                                              : gloo::AllreduceOptions::Algorithm::RING);
          o.setInput(send.data(), part);
          o.setOutput(recv.data(), part);
          o.setReduceFunction(reduce_fn<T>(a.redop));
          o.setTag(kBenchTag);
          gloo::allreduce(o);
          break;
        }
        case Coll::kGather: {
          gloo::GatherOptions o(ctx);
          o.setInput(send.data(), part);
          if (rank == a.root) o.setOutput(recv.data(), total);
          o.setRoot(a.root);
          o.setTag(kBenchTag);
          gloo::gather(o);
          break;
        }
        case Coll::kAllgather: {
          gloo::AllgatherOptions o(ctx);
          o.setInput(send.data(), part);
          o.setOutput(recv.data(), total);
          o.setTag(kBenchTag);
          gloo::allgather(o);
          break;
        }
      }
      auto t1 = std::chrono::steady_clock::now();
      const double max_time =
          allreduce_one<double>(ctx, std::chrono::duration<double>(t1 - t0).count(), &gloo::max<double>);
      if (!measured) continue;
      slowest.push_back(max_time);
      if (!a.check) continue;
      switch (coll) {
        case Coll::kBcast:
          if (rank != a.root)
            wrong += compare::check_pattern(send.data(), part, compare::pattern_seed(a.root, iter_id));
          break;
        case Coll::kReduce:
          if (rank == a.root) wrong += compare::check_reduced(recv.data(), part, a.redop, world);
          break;
        case Coll::kAllreduce:
          wrong += compare::check_reduced(classic ? send.data() : recv.data(), part, a.redop, world);
          break;
        case Coll::kGather:
        case Coll::kAllgather:
          if (coll == Coll::kAllgather || rank == a.root) {
            for (int r = 0; r < world; ++r) {
              wrong += compare::check_pattern(recv.data() + static_cast<std::uint64_t>(r) * part, part,
                                              compare::pattern_seed(r, iter_id));
            }
          }
          break;
      }
    }
    classic_algo.reset();
    const std::uint64_t all_wrong = allreduce_one<std::uint64_t>(ctx, wrong, &gloo::sum<std::uint64_t>);
    total_wrong += all_wrong;
    if (rank == 0) compare::print_row(a, world, total * sizeof(T), total, slowest, all_wrong);
  }
  if (rank == 0) compare::print_footer(total_wrong);
  return total_wrong ? 1 : 0;
}

int run(int argc, char** argv) {
  Args a;
  std::string err = compare::parse_args(argc, argv, true, a);
  Algo algo = Algo::kRing;
  if (err.empty() && !a.algo.empty()) {
    if (a.coll != Coll::kAllreduce) {
      err = "-A applies to allreduce only";
    } else if (a.algo == "ring") {
      algo = Algo::kRing;
    } else if (a.algo == "bcube") {
      algo = Algo::kBcube;
    } else if (a.algo == "ring_chunked") {
      algo = Algo::kRingChunked;
    } else if (a.algo == "halving_doubling") {
      algo = Algo::kHalvingDoubling;
    } else {
      err = "unknown algorithm '" + a.algo + "'";
    }
  }
  if (a.algo.empty()) a.algo = "ring";
  const char* rank_s = getenv_any({"RANK", "OMPI_COMM_WORLD_RANK"});
  const char* size_s = getenv_any({"WORLD_SIZE", "OMPI_COMM_WORLD_SIZE"});
  const int rank = rank_s ? std::atoi(rank_s) : -1;
  const int world = size_s ? std::atoi(size_s) : 0;
  if (err.empty() && (rank < 0 || world < 1 || rank >= world)) {
    err = "set RANK and WORLD_SIZE (or run under mpirun: OMPI_COMM_WORLD_RANK/_SIZE)";
  }
  if (err.empty() && (a.root < 0 || a.root >= world)) err = "root out of range";
  if (!err.empty()) {
    if (rank <= 0) {
      std::fprintf(stderr, "gloo_coll_perf: %s\n", err.c_str());
      compare::print_usage("gloo_coll_perf", true);
    }
    return 2;
  }

  const char* port = std::getenv("MASTER_PORT");
  const char* dir_env = std::getenv("GLOO_STORE_DIR");
  const std::string dir =
      dir_env && *dir_env ? dir_env : std::string("/tmp/gloo-store-") + (port ? port : "default");
  std::string prefix = "run";
  if (const char* p = std::getenv("GLOO_PREFIX"); p && *p) {
    prefix = p;
  } else if (const char* job = std::getenv("OMPI_MCA_ess_base_jobid"); job && *job) {
    prefix = std::string("ompi-") + job;
  }
  const char* iface_env = std::getenv("GLOO_IFACE");
  const std::string iface = iface_env && *iface_env ? iface_env : "lo";
  const char* timeout_env = std::getenv("GLOO_TIMEOUT_S");
  const int timeout_s = timeout_env ? std::atoi(timeout_env) : 300;

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // racing ranks: "exists" is fine

  gloo::transport::tcp::attr attr;
  attr.iface = iface;
  std::shared_ptr<gloo::transport::Device> dev = gloo::transport::tcp::CreateDevice(attr);
  gloo::rendezvous::FileStore fs(dir);
  gloo::rendezvous::PrefixStore ps(prefix, fs);
  auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, world);
  ctx->setTimeout(std::chrono::seconds(timeout_s));
  ctx->connectFullMesh(ps, dev);

  const std::string info = "gloo tcp iface " + iface +
                           (a.coll == Coll::kAllreduce ? ", algorithm " + a.algo : std::string()) +
                           ", store " + dir + " prefix " + prefix;
  int rc = 0;
  switch (a.type) {
    case compare::DType::kFloat: rc = bench<float>(a, algo, ctx, info); break;
    case compare::DType::kDouble: rc = bench<double>(a, algo, ctx, info); break;
    case compare::DType::kInt32: rc = bench<std::int32_t>(a, algo, ctx, info); break;
    case compare::DType::kInt64: rc = bench<std::int64_t>(a, algo, ctx, info); break;
  }
  barrier(ctx);
  // Every rank has connected (the barrier above): the keys are no longer read.
  for (const std::string& path : fs.getAllKeyFilePaths()) ::unlink(path.c_str());
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gloo_coll_perf: %s\n", e.what());
    return 1;
  }
}
