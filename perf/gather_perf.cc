// gather_perf / allgather_perf: every rank puts one object of `size / n`
// bytes; the root (gather) or every rank (allgather) gets all of them at
// once, fetched in parallel (allgather: each from the ring predecessor). size is the total gathered, as in
// nccl-tests; busbw = algbw * (n-1)/n.
#include <chrono>
#include <string>
#include <vector>

#include "perf_common.h"

using namespace hoplite;

namespace {

int run_gather(int argc, char** argv, bool all) {
  const char* name = all ? "allgather_perf" : "gather_perf";
  return perf::run(argc, argv, name, [all](const perf::Args& args, int world) {
    perf::Collective c{all ? "allgather" : "gather", "none", (world - 1.0) / world, nullptr};
    c.iteration = [all, root = args.root](Node& node, std::uint64_t bytes, int iter, double& seconds,
                                          std::uint64_t& wrong) -> Status {
      const int world = node.world_size(), rank = node.rank();
      std::uint64_t part = bytes / static_cast<std::uint64_t>(world);
      auto id = [&](int r) {
        return ObjectID::from_name("gather/" + std::to_string(iter) + "/" + std::to_string(r));
      };
      auto seed = [&](int r) {
        return static_cast<std::uint64_t>(r) * 977 + static_cast<std::uint64_t>(iter);
      };
      auto w = node.create(id(rank), part);
      if (!w.is_ok()) return w.status();
      perf::fill_pattern(w->data().data(), part, seed(rank));
      HOPLITE_RETURN_IF_ERROR(node.barrier());
      auto t0 = std::chrono::steady_clock::now();
      HOPLITE_RETURN_IF_ERROR(w->seal());
      if (all || rank == root) {
        // Allgather: every object travels around the ring, each rank reading
        // it from its predecessor, so each link carries one stream.
        GetOptions ring;
        if (all) ring.after = (rank + world - 1) % world;
        std::vector<ObjectFuture> fs;
        for (int r = 0; r < world; ++r) fs.push_back(node.get(id(r), ring));
        std::vector<ObjectView> views;
        for (auto& f : fs) {
          auto v = f.wait(std::chrono::minutes(5));
          if (!v.is_ok()) return v.status();
          views.push_back(*v);
        }
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (int r = 0; r < world; ++r) wrong += perf::count_wrong(views[r].data(), views[r].size(), seed(r));
      }
      HOPLITE_RETURN_IF_ERROR(node.barrier());
      return node.remove(id(rank));
    };
    return c;
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string prog = argv[0];
  return run_gather(argc, argv, prog.find("allgather") != std::string::npos);
}
