// reduce_perf / allreduce_perf: every rank puts its input; the root reduces
// them into a target (tree-chain in arrival order) and gets it; for
// allreduce every rank gets the target while the reduce still runs.
// busbw: reduce = algbw; allreduce = algbw * 2(n-1)/n (nccl-tests).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "collectives.h"
#include "perf_common.h"

using namespace hoplite;

namespace {

int run_reduce(int argc, char** argv, bool all) {
  const char* name = all ? "allreduce_perf" : "reduce_perf";
  return perf::run(argc, argv, name, [all, name](const perf::Args& args, int world) {
    auto op = parse_reduce_op(args.op);
    auto dt = parse_data_type(args.dtype);
    if (!op.is_ok() || !dt.is_ok()) {
      std::fprintf(stderr, "%s: %s\n", name, (!op.is_ok() ? op.status() : dt.status()).to_string().c_str());
      std::exit(2);
    }
    perf::Collective c{all ? "allreduce" : "reduce", to_string(*op), all ? 2.0 * (world - 1) / world : 1.0,
                       nullptr};
    c.type = to_string(*dt);
    c.element = element_size(*dt);
    int k = std::getenv("HOPLITE_PERF_K") ? std::atoi(std::getenv("HOPLITE_PERF_K")) : 0;
    int late_rank =
        std::getenv("HOPLITE_PERF_LATE_RANK") ? std::atoi(std::getenv("HOPLITE_PERF_LATE_RANK")) : -1;
    int late_ms = std::getenv("HOPLITE_PERF_LATE_MS") ? std::atoi(std::getenv("HOPLITE_PERF_LATE_MS")) : 2000;
    c.iteration = [all, root = args.root, op = *op, dt = *dt, k, late_rank, late_ms](
                      Node& node, std::uint64_t bytes, int iter, double& seconds,
                      std::uint64_t& wrong) -> Status {
      const int world = node.world_size(), rank = node.rank();
      auto input = [&](int r) {
        return ObjectID::from_name("reduce/" + std::to_string(iter) + "/in/" + std::to_string(r));
      };
      auto target = ObjectID::from_name("reduce/" + std::to_string(iter) + "/out");
      auto w = node.create(input(rank), bytes);
      if (!w.is_ok()) return w.status();
      perf::fill_input(w->data().data(), bytes, dt, rank);
      HOPLITE_RETURN_IF_ERROR(node.barrier());
      auto t0 = std::chrono::steady_clock::now();
      // A straggler (HOPLITE_PERF_LATE_RANK, HOPLITE_PERF_LATE_MS): its input
      // becomes ready late, as a slow task's would.
      if (late_rank == rank) std::this_thread::sleep_for(std::chrono::milliseconds(late_ms));
      // As a task runtime would: the reduce does not wait for the directory
      // to acknowledge the input (it is ordered after it anyway).
      std::future<Status> sealed = w->seal_async();
      std::future<Result<ReduceResult>> reduced;
      if (rank == root) {
        ReduceOptions o;
        for (int r = 0; r < world; ++r) o.inputs.push_back(input(r));
        o.target = target;
        o.op = op;
        o.dtype = dt;
        o.k = static_cast<std::size_t>(k);
        // HOPLITE_PERF_STRIPES=0 measures the dynamic form alone.
        const char* stripes = std::getenv("HOPLITE_PERF_STRIPES");
        o.allow_stripes = all && !(stripes && std::string(stripes) == "0");
        reduced = node.reduce_async(o);
      }
      Result<ObjectView> v = Status(StatusCode::kInternal, "unset");
      if (rank == root || all) {
        v = node.get(target).wait(std::chrono::minutes(5));
        if (!v.is_ok()) return v.status();
      }
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      HOPLITE_RETURN_IF_ERROR(sealed.get());
      // The straggler's own wait is not the collective's time; the root's is.
      if (late_rank == rank && !all && rank != root) seconds = 0;
      std::vector<int> used;
      if (rank == root) {
        auto res = reduced.get();
        if (!res.is_ok()) return res.status();
        for (const auto& id : res->used) {
          for (int r = 0; r < world; ++r) {
            if (input(r) == id) used.push_back(r);
          }
        }
      } else {
        for (int r = 0; r < world; ++r) used.push_back(r);
      }
      if (v.is_ok() && (k == 0 || rank == root))
        wrong += perf::check_reduced(v->data(), v->size(), dt, op, used);
      v = Status(StatusCode::kInternal, "released");
      HOPLITE_RETURN_IF_ERROR(node.barrier());
      HOPLITE_RETURN_IF_ERROR(node.remove(input(rank)));
      if (rank == root) HOPLITE_RETURN_IF_ERROR(node.remove(target));
      return Status::ok();
    };
    return c;
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string prog = argv[0];
  bool all = prog.find("allreduce") != std::string::npos;
  return run_reduce(argc, argv, all);
}
