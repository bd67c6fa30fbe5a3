// broadcast_perf: the root puts an object, every other rank gets it; the
// receivers form chains at run time. busbw = algbw (nccl-tests: factor 1).
#include <chrono>
#include <string>

#include "perf_common.h"

using namespace hoplite;

int main(int argc, char** argv) {
  return perf::run(argc, argv, "broadcast_perf", [](const perf::Args& args, int) {
    perf::Collective c{"broadcast", "none", 1.0, nullptr};
    c.iteration = [root = args.root](Node& node, std::uint64_t bytes, int iter, double& seconds,
                                     std::uint64_t& wrong) -> Status {
      auto id = ObjectID::from_name("broadcast/" + std::to_string(iter));
      const std::uint64_t seed = bytes * 31 + static_cast<std::uint64_t>(iter);
      Result<ObjectWriter> w = Status(StatusCode::kInternal, "unset");
      if (node.rank() == root) {
        w = node.create(id, bytes);
        if (!w.is_ok()) return w.status();
        perf::fill_pattern(w->data().data(), bytes, seed);
      }
      HOPLITE_RETURN_IF_ERROR(node.barrier());
      auto t0 = std::chrono::steady_clock::now();
      if (node.rank() == root) {
        HOPLITE_RETURN_IF_ERROR(w->seal());
      } else {
        auto v = node.get(id).wait(std::chrono::minutes(5));
        if (!v.is_ok()) return v.status();
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        wrong += perf::count_wrong(v->data(), v->size(), seed);
      }
      HOPLITE_RETURN_IF_ERROR(node.barrier());
      if (node.rank() == root) return node.remove(id);
      return Status::ok();
    };
    return c;
  });
}
