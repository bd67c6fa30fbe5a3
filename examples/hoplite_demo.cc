// hoplite_demo: the README's main job. Every rank of a local cluster puts an
// object; every rank gets every other rank's object (broadcast by
// receiver-driven chains), checks it byte for byte, and rank 0 prints a
// table of what moved where and how fast.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <vector>

#include "hoplite/node.h"

using namespace hoplite;
using Clock = std::chrono::steady_clock;

namespace {

void fill(std::vector<std::byte>& buf, int seed) {
  std::uint32_t x = 2463534242u + static_cast<std::uint32_t>(seed) * 7919u;
  for (auto& b : buf) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::byte>(x);
  }
}

int fail(const char* what, const Status& st) {
  std::fprintf(stderr, "demo: %s: %s\n", what, st.to_string().c_str());
  return 1;
}

}  // namespace

int main() {
  auto opts = NodeOptions::from_environment();
  if (!opts.is_ok()) return fail("options", opts.status());
  auto node_r = Node::create(*opts);
  if (!node_r.is_ok()) return fail("join", node_r.status());
  Node& node = **node_r;
  const int rank = node.rank(), world = node.world_size();

  const std::vector<std::size_t> sizes = {100, 64 << 10, 1 << 20, 64 << 20};
  struct Row {
    std::size_t size;
    double seconds;
    int wrong;
  };
  std::vector<Row> rows;
  for (std::size_t size : sizes) {
    std::vector<std::byte> mine(size);
    fill(mine, rank * 1000 + static_cast<int>(size % 997));
    auto id = [&](int r) {
      return ObjectID::from_name("demo/" + std::to_string(size) + "/" + std::to_string(r));
    };
    if (Status st = node.barrier(); !st) return fail("barrier", st);
    auto t0 = Clock::now();
    if (Status st = node.put(id(rank), mine); !st) return fail("put", st);
    std::vector<ObjectFuture> futures;
    for (int r = 0; r < world; ++r) futures.push_back(node.get(id(r)));
    std::vector<ObjectView> views;
    for (int r = 0; r < world; ++r) {
      auto v = futures[static_cast<std::size_t>(r)].wait(std::chrono::seconds(120));
      if (!v.is_ok()) return fail("get", v.status());
      views.push_back(*v);
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    // Verification is outside the timed region, and after a barrier so that
    // no rank's checking steals CPU from another rank's transfers.
    if (Status st = node.barrier(); !st) return fail("barrier", st);
    int wrong = 0;
    for (int r = 0; r < world; ++r) {
      std::vector<std::byte> expect(size);
      fill(expect, r * 1000 + static_cast<int>(size % 997));
      const auto& v = views[static_cast<std::size_t>(r)];
      if (v.size() != size || std::memcmp(v.data(), expect.data(), size) != 0) wrong++;
    }
    views.clear();
    rows.push_back({size, secs, wrong});
    if (Status st = node.barrier(); !st) return fail("barrier", st);
    for (int r = 0; r < world; ++r) {
      if (r == rank) (void)node.remove(id(r));
    }
  }
  // Rank 0 collects the slowest time of every rank through the store itself.
  std::vector<double> times;
  for (auto& r : rows) times.push_back(r.seconds);
  int my_wrong = 0;
  for (auto& r : rows) my_wrong += r.wrong;
  times.push_back(static_cast<double>(my_wrong));
  auto stat_id = [](int r) { return ObjectID::from_name("demo/times/" + std::to_string(r)); };
  if (Status st = node.put(stat_id(rank), times.data(), times.size() * sizeof(double)); !st) {
    return fail("put stats", st);
  }
  int total_wrong = 0;
  if (rank == 0) {
    std::vector<double> slowest(rows.size(), 0);
    for (int r = 0; r < world; ++r) {
      auto v = node.get(stat_id(r)).wait(std::chrono::seconds(60));
      if (!v.is_ok()) return fail("get stats", v.status());
      const auto* t = reinterpret_cast<const double*>(v->data());
      for (std::size_t i = 0; i < rows.size(); ++i) slowest[i] = std::max(slowest[i], t[i]);
      total_wrong += static_cast<int>(t[rows.size()]);
    }
    std::printf("# hoplite demo: %d nodes, every node puts one object and gets all %d\n", world, world);
    std::printf("#%12s %12s %12s %14s %8s\n", "size(B)", "objects", "time(ms)", "recv(GB/s)", "#wrong");
    for (std::size_t i = 0; i < rows.size(); ++i) {
      double gb = static_cast<double>(rows[i].size) * (world - 1) / 1e9;
      std::printf(" %12zu %12d %12.3f %14.3f %8d\n", rows[i].size, world, slowest[i] * 1e3, gb / slowest[i],
                  i == 0 ? total_wrong : 0);
    }
    std::printf("# total wrong objects across all ranks: %d\n", total_wrong);
  }
  // Allreduce: every rank puts a vector of floats equal to rank + 1; rank 0
  // reduces them (sum) and every rank gets the result while it is computed.
  // Then "any k of n": the first world-1 inputs to arrive.
  if (rank == 0) {
    std::printf(
        "#\n# allreduce (sum of float vectors, every rank reads the result) and reduce of the first k of "
        "n\n");
    std::printf("#%12s %12s %12s %14s %8s\n", "size(B)", "inputs", "time(ms)", "algbw(GB/s)", "#wrong");
  }
  int reduce_wrong = 0;
  for (std::size_t size : {std::size_t{1} << 20, std::size_t{64} << 20}) {
    const std::size_t count = size / sizeof(float);
    auto in_id = [&](int r) {
      return ObjectID::from_name("demo/in/" + std::to_string(size) + "/" + std::to_string(r));
    };
    const ObjectID target = ObjectID::from_name("demo/sum/" + std::to_string(size));
    std::vector<float> mine(count, static_cast<float>(rank + 1));
    if (Status st = node.put(in_id(rank), mine.data(), size); !st) return fail("put input", st);
    if (Status st = node.barrier(); !st) return fail("barrier", st);
    auto t0 = Clock::now();
    std::future<Result<ReduceResult>> reduced;
    if (rank == 0) {
      ReduceOptions o;
      for (int r = 0; r < world; ++r) o.inputs.push_back(in_id(r));
      o.target = target;
      o.allow_stripes = true;
      reduced = node.reduce_async(o);
    }
    auto v = node.get(target).wait(std::chrono::seconds(120));
    if (!v.is_ok()) return fail("get reduce target", v.status());
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const float expect = static_cast<float>(world) * static_cast<float>(world + 1) / 2;
    const auto* got = reinterpret_cast<const float*>(v->data());
    int wrong = 0;
    for (std::size_t i = 0; i < count; ++i) wrong += got[i] != expect;
    reduce_wrong += wrong;
    if (rank == 0) {
      auto res = reduced.get();
      if (!res.is_ok()) return fail("reduce", res.status());
      std::printf(" %12zu %12d %12.3f %14.3f %8d   %s\n", size, world, secs * 1e3,
                  static_cast<double>(size) / secs / 1e9, wrong, res->striped ? "striped" : "tree-chain");
      if (world > 1) {
        ReduceOptions k;
        for (int r = 0; r < world; ++r) k.inputs.push_back(in_id(r));
        k.target = ObjectID::from_name("demo/first-k/" + std::to_string(size));
        k.k = static_cast<std::size_t>(world - 1);
        auto t1 = Clock::now();
        auto kr = node.reduce(k);
        if (!kr.is_ok()) return fail("reduce k of n", kr.status());
        auto kv = node.get(k.target).wait(std::chrono::seconds(120));
        if (!kv.is_ok()) return fail("get k-of-n target", kv.status());
        double ksecs = std::chrono::duration<double>(Clock::now() - t1).count();
        float kexpect = 0;
        std::string used;
        for (const auto& id : kr->used) {
          for (int r = 0; r < world; ++r) {
            if (in_id(r) == id) {
              kexpect += static_cast<float>(r + 1);
              used += (used.empty() ? "" : ",") + std::to_string(r);
            }
          }
        }
        const auto* kg = reinterpret_cast<const float*>(kv->data());
        int kwrong = 0;
        for (std::size_t i = 0; i < count; ++i) kwrong += kg[i] != kexpect;
        reduce_wrong += kwrong;
        std::printf(" %12zu %9d/%-2d %12.3f %14.3f %8d   first %d of %d: ranks %s\n", size, world - 1, world,
                    ksecs * 1e3, static_cast<double>(size) / ksecs / 1e9, kwrong, world - 1, world,
                    used.c_str());
        (void)node.remove(k.target);
      }
    }
    v = Status(StatusCode::kCancelled, "released");
    if (Status st = node.barrier(); !st) return fail("barrier", st);
    (void)node.remove(in_id(rank));
    if (rank == 0) (void)node.remove(target);
  }
  if (Status st = node.barrier(); !st) return fail("final barrier", st);
  if (reduce_wrong) std::fprintf(stderr, "demo: rank %d saw %d wrong reduced elements\n", rank, reduce_wrong);
  return total_wrong == 0 && reduce_wrong == 0 ? 0 : 2;
}
