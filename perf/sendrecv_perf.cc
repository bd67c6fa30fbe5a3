// sendrecv_perf: each rank puts an object and gets the one of the previous
// rank (a ring of point-to-point transfers, as nccl-tests' sendrecv).
// busbw = algbw: every byte crosses one link once. With -o oneway only rank
// 1 gets, from rank 0 (the point-to-point figure ucx_perftest reports).
#include <chrono>
#include <string>

#include "perf_common.h"

using namespace hoplite;

int main(int argc, char** argv) {
  return perf::run(argc, argv, "sendrecv_perf", [](const perf::Args& args, int) {
    const bool one_way = args.op == "oneway";
    perf::Collective c{"sendrecv", one_way ? "oneway" : "none", 1.0, nullptr};
    c.iteration = [one_way](Node& node, std::uint64_t bytes, int iter, double& seconds,
                            std::uint64_t& wrong) -> Status {
      const int world = node.world_size(), rank = node.rank();
      const int from = (rank + world - 1) % world;
      auto id = [&](int r) {
        return ObjectID::from_name("sendrecv/" + std::to_string(iter) + "/" + std::to_string(r));
      };
      // Produce the input as a task would: straight into the store.
      auto w = node.create(id(rank), bytes);
      if (!w.is_ok()) return w.status();
      perf::fill_pattern(w->data().data(), bytes, static_cast<std::uint64_t>(rank) * 131 + bytes);
      HOPLITE_RETURN_IF_ERROR(node.barrier());
      auto t0 = std::chrono::steady_clock::now();
      HOPLITE_RETURN_IF_ERROR(w->seal());
      if (one_way && rank != 1) {
        seconds = 0;
        HOPLITE_RETURN_IF_ERROR(node.barrier());
        return node.remove(id(rank));
      }
      const int source = one_way ? 0 : from;
      auto v = node.get(id(source)).wait(std::chrono::minutes(5));
      if (!v.is_ok()) return v.status();
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      wrong += perf::count_wrong(v->data(), v->size(), static_cast<std::uint64_t>(source) * 131 + bytes);
      v = ObjectView();
      HOPLITE_RETURN_IF_ERROR(node.barrier());
      HOPLITE_RETURN_IF_ERROR(node.remove(id(rank)));
      return node.remove(id(source), RemoveScope::kLocal);
    };
    return c;
  });
}
