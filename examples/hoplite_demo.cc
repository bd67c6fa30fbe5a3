// hoplite_demo: the README's main job. Every rank of a local cluster puts an
// object; every rank gets every other rank's object (broadcast by
// receiver-driven chains), checks it byte for byte, and rank 0 prints a
// table of what moved where and how fast.
#include <chrono>
#include <cstdio>
#include <cstring>
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
  if (Status st = node.barrier(); !st) return fail("final barrier", st);
  return total_wrong == 0 ? 0 : 2;
}
