#include "perf_common.h"

#include <getopt.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace hoplite::perf {
namespace {

[[noreturn]] void usage(const char* name, const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "%s: %s\n", name, why.c_str());
  std::fprintf(stderr,
               "usage: %s [-b minbytes] [-e maxbytes] [-f stepfactor] [-n iters] [-w warmup] [-c 0|1]\n"
               "          [-o sum|prod|min|max] [-d float|double|int32|int64] [-r root]\n",
               name);
  std::exit(2);
}

std::uint64_t size_arg(const char* name, const char* v) {
  auto s = parse_size(v);
  if (!s.is_ok()) usage(name, s.status().message());
  return s.value();
}

// Max over ranks of `v` (and sum of `wrong`), through the store: each rank
// puts a small object, rank 0 gets them all. Uses the product's own path.
Status reduce_stats(Node& node, const std::string& tag, double& v, std::uint64_t& wrong) {
  struct Stat {
    double seconds;
    std::uint64_t wrong;
  } mine{v, wrong};
  auto id = [&](int r) { return ObjectID::from_name("perf/stat/" + tag + "/" + std::to_string(r)); };
  HOPLITE_RETURN_IF_ERROR(node.put(id(node.rank()), &mine, sizeof mine));
  if (node.rank() == 0) {
    for (int r = 0; r < node.world_size(); ++r) {
      auto got = node.get(id(r)).wait(std::chrono::seconds(60));
      if (!got.is_ok()) return got.status();
      Stat s;
      std::memcpy(&s, got->data(), sizeof s);
      v = std::max(v, s.seconds);
      if (r != 0) wrong += s.wrong;
    }
  }
  HOPLITE_RETURN_IF_ERROR(node.barrier());
  return node.remove(id(node.rank()));
}

}  // namespace

Args parse_args(int argc, char** argv, const char* name) {
  Args a;
  int c;
  while ((c = getopt(argc, argv, "b:e:f:n:w:c:o:d:r:h")) != -1) {
    switch (c) {
      case 'b': a.min_bytes = size_arg(name, optarg); break;
      case 'e': a.max_bytes = size_arg(name, optarg); break;
      case 'f': a.step_factor = std::atof(optarg); break;
      case 'n': a.iters = std::atoi(optarg); break;
      case 'w': a.warmup = std::atoi(optarg); break;
      case 'c': a.check = std::atoi(optarg) != 0; break;
      case 'o': a.op = optarg; break;
      case 'd': a.dtype = optarg; break;
      case 'r': a.root = std::atoi(optarg); break;
      default: usage(name, "");
    }
  }
  if (a.min_bytes > a.max_bytes) usage(name, "minbytes > maxbytes");
  if (a.step_factor <= 1) usage(name, "stepfactor must be > 1");
  if (a.iters < 1 || a.warmup < 0) usage(name, "iters must be >= 1 and warmup >= 0");
  return a;
}

void fill_pattern(std::byte* p, std::uint64_t n, std::uint64_t seed) {
  // Word-wise so that filling 256 MiB is not the benchmark's bottleneck.
  std::uint64_t words = n / 8;
  auto* w = reinterpret_cast<std::uint64_t*>(p);
  for (std::uint64_t i = 0; i < words; ++i) w[i] = (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed;
  for (std::uint64_t i = words * 8; i < n; ++i) p[i] = static_cast<std::byte>(i ^ seed);
}

std::uint64_t count_wrong(const std::byte* p, std::uint64_t n, std::uint64_t seed) {
  std::vector<std::byte> expect(std::min<std::uint64_t>(n, 1u << 20));
  std::uint64_t wrong = 0;
  // Compare word-wise against the formula (no second full-size buffer).
  std::uint64_t words = n / 8;
  for (std::uint64_t i = 0; i < words; ++i) {
    std::uint64_t v;
    std::memcpy(&v, p + 8 * i, 8);
    if (v != ((i + 1) * 0x9e3779b97f4a7c15ULL ^ seed)) wrong++;
  }
  for (std::uint64_t i = words * 8; i < n; ++i) {
    if (p[i] != static_cast<std::byte>(i ^ seed)) wrong++;
  }
  return wrong;
}

int run(int argc, char** argv, const std::string& name,
        const std::function<Collective(const Args& args, int world)>& make) {
  Args args = parse_args(argc, argv, name.c_str());
  auto opts = NodeOptions::from_environment();
  if (!opts.is_ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), opts.status().to_string().c_str());
    return 2;
  }
  // The store must hold a few objects of the largest size at once.
  opts->store_capacity = std::max<std::uint64_t>(opts->store_capacity, 6 * args.max_bytes + (64u << 20));
  auto node_r = Node::create(*opts);
  if (!node_r.is_ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), node_r.status().to_string().c_str());
    return 2;
  }
  Node& node = **node_r;
  Collective coll = make(args, node.world_size());
  const bool root = node.rank() == 0;
  if (root) {
    std::printf("# %s: %d ranks, transport %s, chunk %llu B, inline <= %llu B\n", name.c_str(),
                node.world_size(), node.transport_name().c_str(),
                static_cast<unsigned long long>(opts->chunk_size),
                static_cast<unsigned long long>(opts->inline_threshold));
    if (node.world_size() > 1) std::printf("# data plane: %s\n", node.transport_description(1).c_str());
    std::printf("#\n# %10s %12s %8s %6s %6s %10s %8s %8s %6s\n", "size", "count", "type", "redop", "root",
                "time", "algbw", "busbw", "#wrong");
    std::printf("# %10s %12s %8s %6s %6s %10s %8s %8s %6s\n", "(B)", "(elements)", "", "", "", "(us)",
                "(GB/s)", "(GB/s)", "");
    std::fflush(stdout);
  }
  std::uint64_t total_wrong = 0;
  int iter_id = 0;
  int step_id = 0;
  for (std::uint64_t step = args.min_bytes; step <= args.max_bytes;
       step = std::max<std::uint64_t>(
           step + 1, static_cast<std::uint64_t>(static_cast<double>(step) * args.step_factor))) {
    const std::uint64_t bytes = step - step % 8;  // whole elements of every type
    double sum = 0;
    std::uint64_t wrong = 0;
    for (int i = 0; i < args.warmup + args.iters; ++i) {
      double secs = 0;
      std::uint64_t w = 0;
      Status st = node.barrier();
      if (st.is_ok()) st = coll.iteration(node, bytes, iter_id++, secs, w);
      if (!st.is_ok()) {
        std::fprintf(stderr, "%s: rank %d: %s\n", name.c_str(), node.rank(), st.to_string().c_str());
        return 1;
      }
      if (i >= args.warmup) {
        sum += secs;
        if (args.check) wrong += w;
      }
    }
    double mean = sum / args.iters;
    Status st = reduce_stats(node, std::to_string(step_id++), mean, wrong);
    if (!st.is_ok()) {
      std::fprintf(stderr, "%s: stats: %s\n", name.c_str(), st.to_string().c_str());
      return 1;
    }
    total_wrong += wrong;
    if (root) {
      double algbw = static_cast<double>(bytes) / mean / 1e9;
      std::printf("  %10llu %12llu %8s %6s %6d %10.1f %8.3f %8.3f %6llu\n",
                  static_cast<unsigned long long>(bytes),
                  static_cast<unsigned long long>(bytes / coll.element), coll.type.c_str(),
                  coll.redop.c_str(), args.root, mean * 1e6, algbw, algbw * coll.busbw_factor,
                  static_cast<unsigned long long>(args.check ? wrong : 0));
      std::fflush(stdout);
    }
  }
  if (root) {
    std::printf("# Out of bounds values : %llu %s\n", static_cast<unsigned long long>(total_wrong),
                total_wrong ? "FAILED" : "OK");
  }
  (void)node.barrier();
  return total_wrong ? 1 : 0;
}

}  // namespace hoplite::perf
