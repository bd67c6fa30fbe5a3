// fault_perf: the cost of a failure. Broadcast (rank 0 puts, all get) or
// reduce (every rank puts an input, rank 0 reduces and gets the target) of
// one object; with -k VICTIM, that rank SIGKILLs itself when half of the
// object has reached it. Prints the time of the slowest survivor and, for
// each survivor, how long after the kill it declared the victim failed.
// Run under `hoplite-run --keep-going`.
//
//   reduce        the first n-1 of n inputs: the spare refills the
//                 victim's position (with or without a kill, so the two
//                 runs do the same work)
//   reduce-reput  all n inputs: the rank after the victim re-puts the lost
//                 input once it sees the failure, as a re-executed task
//
// Usage: fault_perf broadcast|reduce|reduce-reput SIZE [-k VICTIM] [-o DIR]
//   DIR (shared by all ranks, default /tmp) carries the kill timestamp.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "collectives.h"
#include "hoplite/node.h"
#include "perf_common.h"

using namespace hoplite;
using Clock = std::chrono::steady_clock;

namespace {

double now_s() {
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

int fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "fault_perf: %s: %s\n", what.c_str(), st.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: fault_perf broadcast|reduce|reduce-reput SIZE [-k VICTIM] [-o DIR]\n");
    return 2;
  }
  const std::string mode = argv[1];
  auto size_r = parse_size(argv[2]);
  const bool reput = mode == "reduce-reput";
  const bool reducing = mode == "reduce" || reput;
  if (!size_r.is_ok() || (mode != "broadcast" && !reducing)) {
    std::fprintf(stderr, "fault_perf: bad mode or size\n");
    return 2;
  }
  const std::uint64_t size = size_r.value() - size_r.value() % 8;
  int victim = -1;
  std::string dir = "/tmp";
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "-k")) victim = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "-o")) dir = argv[i + 1];
  }
  auto opts = NodeOptions::from_environment();
  if (!opts.is_ok()) return fail("options", opts.status());
  opts->store_capacity = std::max<std::uint64_t>(opts->store_capacity, 4 * size + (64u << 20));
  auto node_r = Node::create(*opts);
  if (!node_r.is_ok()) return fail("join", node_r.status());
  Node& node = **node_r;
  const int rank = node.rank(), world = node.world_size();
  if (victim == 0) return fail("victim", invalid_argument("rank 0 cannot be the victim"));
  const std::string kill_file = dir + "/fault_perf.kill." + std::to_string(opts->bootstrap_address.size()) +
                                "." + std::to_string(std::hash<std::string>{}(opts->bootstrap_address));
  std::atomic<double> detected{0};
  node.on_membership_change([&](const MembershipEvent& ev) {
    if (!ev.alive && ev.rank == victim) detected = now_s();
  });

  const ObjectID obj = ObjectID::from_name("fault_perf/" + mode);
  auto input = [](int r) { return ObjectID::from_name("fault_perf/in/" + std::to_string(r)); };
  const ObjectID watched = mode == "broadcast" ? obj : ObjectID::from_name("fault_perf/target");
  Result<ObjectWriter> w = Status(StatusCode::kInternal, "unset");
  if (mode == "broadcast" && rank == 0) {
    w = node.create(obj, size);
    if (!w.is_ok()) return fail("create", w.status());
    perf::fill_pattern(w->data().data(), size, 42);
  }
  if (reducing) {
    w = node.create(input(rank), size);
    if (!w.is_ok()) return fail("create", w.status());
    perf::fill_input(w->data().data(), size, DataType::kFloat32, rank);
  }
  if (Status st = node.barrier(); !st) return fail("barrier", st);

  // The victim dies when half of the object has reached it: its copy (for
  // broadcast) or the bytes it pulled from its upstream (for reduce; a
  // victim that lands at the chain's leaf pulls nothing and survives, which
  // the output shows as "detection -1").
  std::thread killer, reputter_thread;
  std::atomic<bool> stop_reput{false};
  const std::uint64_t base = node.stats().bytes_received;
  if (rank == victim) {
    killer = std::thread([&] {
      for (;;) {
        std::uint64_t have =
            mode == "broadcast" ? node.local_progress(watched) : node.stats().bytes_received - base;
        if (have >= size / 2) break;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      std::ofstream(kill_file) << now_s() << "\n";
      raise(SIGKILL);
    });
  }

  const double t0 = now_s();
  double t1 = 0;
  std::uint64_t wrong = 0;
  if (mode == "broadcast") {
    if (rank == 0) {
      if (Status st = w->seal(); !st) return fail("seal", st);
    } else {
      auto v = node.get(obj).wait(std::chrono::minutes(5));
      if (!v.is_ok()) return fail("get", v.status());
      t1 = now_s();
      wrong = perf::count_wrong(v->data(), v->size(), 42);
    }
  } else {
    if (Status st = w->seal(); !st) return fail("seal", st);
    const int reputter = victim > 0 ? victim % (world - 1) + 1 : -1;
    if (reput && rank == reputter) {
      // The re-executed task: it learns of the failure like any survivor,
      // then produces the lost input again here.
      reputter_thread = std::thread([&] {
        while (detected.load() == 0 && !stop_reput.load())
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        if (stop_reput.load()) return;
        auto again = node.create(input(victim), size);
        if (!again.is_ok()) return (void)fail("re-put", again.status());
        perf::fill_input(again->data().data(), size, DataType::kFloat32, victim);
        if (Status st = again->seal(); !st) (void)fail("re-put seal", st);
      });
    }
    if (rank == 0) {
      ReduceOptions o;
      for (int r = 0; r < world; ++r) o.inputs.push_back(input(r));
      o.target = watched;
      o.k = reput ? 0 : static_cast<std::size_t>(world - 1);
      auto res = node.reduce(o);
      if (!res.is_ok()) return fail("reduce", res.status());
      auto v = node.get(watched).wait(std::chrono::minutes(5));
      if (!v.is_ok()) return fail("get target", v.status());
      t1 = now_s();
      std::vector<int> used;
      for (const auto& id : res->used) {
        for (int r = 0; r < world; ++r) {
          if (input(r) == id) used.push_back(r);
        }
      }
      wrong = perf::check_reduced(v->data(), v->size(), DataType::kFloat32, ReduceOp::kSum, used);
      std::printf("rank 0: %zu inputs used, %u tasks recomputed, %u restarts\n", used.size(), res->recomputed,
                  res->restarts);
    }
  }
  double secs = t1 > 0 ? t1 - t0 : 0;
  // Every survivor detects the failure before the reduce or the broadcast
  // completes, so after this barrier `detected` is final.
  (void)node.barrier(std::chrono::seconds(60));
  stop_reput = true;
  if (reputter_thread.joinable()) reputter_thread.join();
  double detect_ms = -1;
  if (victim > 0) {
    std::ifstream in(kill_file);
    double killed = 0;
    if (in >> killed && detected.load() > 0) detect_ms = (detected.load() - killed) * 1e3;
  }
  std::printf("rank %d: %s %llu B, time %.3f s, detection %.1f ms, wrong %llu\n", rank, mode.c_str(),
              static_cast<unsigned long long>(size), secs, detect_ms, static_cast<unsigned long long>(wrong));
  std::fflush(stdout);
  (void)node.barrier(std::chrono::seconds(30));
  return wrong ? 1 : 0;
}
