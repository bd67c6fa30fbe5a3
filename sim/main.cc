// hoplite-sim: predicts a collective's completion time at scale from the
// runtime's own planners (docs/sim.md).
//
//   hoplite-sim -c allreduce -N 4096 -b 256M
//   hoplite-sim -c broadcast -N 2,4,8 -b 1M -e 256M -f 4 --bandwidth 1gbit
//
// Prints one row per (N, size): the slowest timed rank, the lower bound, the
// ratio, the form the planners chose, and the peers' algorithms on the same
// links; --csv appends the same rows to a file.
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "hoplite/options.h"
#include "sim/peers.h"
#include "sim/simulator.h"

namespace po = boost::program_options;
using namespace hoplite;

namespace {

// "1gbit", "100gbit", "125000000" (bytes per second).
bool parse_rate(const std::string& s, double& out) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string unit(end);
  if (end == s.c_str() || v <= 0) return false;
  if (unit.empty()) {
    out = v;
  } else if (unit == "gbit") {
    out = v * 1e9 / 8;
  } else if (unit == "mbit") {
    out = v * 1e6 / 8;
  } else {
    return false;
  }
  return true;
}

// "25us", "2ms", "1ns", "0" (seconds).
bool parse_time(const std::string& s, double& out) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string unit(end);
  if (end == s.c_str() || v < 0) return false;
  if (unit.empty() || unit == "s") {
    out = v;
  } else if (unit == "ms") {
    out = v * 1e-3;
  } else if (unit == "us") {
    out = v * 1e-6;
  } else if (unit == "ns") {
    out = v * 1e-9;
  } else {
    return false;
  }
  return true;
}

bool parse_nodes(const std::string& s, std::vector<std::uint32_t>& out) {
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (*end || v < 1 || v > (1 << 20)) return false;
    out.push_back(static_cast<std::uint32_t>(v));
  }
  return !out.empty();
}

int usage_error(const std::string& what) {
  std::fprintf(stderr, "hoplite-sim: %s (see --help)\n", what.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string collective = "broadcast", nodes = "8", begin = "1M", end, bandwidth = "1gbit", latency = "25us",
              msg_cost = "0", chunk_cost = "0", byte_cost = "0", chunk = "256K", csv, straggle;
  double factor = 4, efficiency = 1.0, fail_at = -1, detect = 1e-3;
  unsigned depth = 16, k = 0, seed = 1, host_cores = 0;
  int fail_rank = -1, reduce_depth = -1;
  bool no_stripes = false, no_peers = false;
  std::string preset;
  po::options_description opts("hoplite-sim options");
  opts.add_options()("help,h", "this text")("collective,c", po::value(&collective),
                                            "broadcast, reduce, allreduce, gather or allgather")(
      "nodes,N", po::value(&nodes), "node counts, comma-separated")("begin,b", po::value(&begin),
                                                                    "smallest size (gather: total)")(
      "end,e", po::value(&end), "largest size (default: begin)")("factor,f", po::value(&factor),
                                                                 "size multiplication factor")(
      "preset", po::value(&preset),
      "emulated: the links and costs fitted to scripts/netns-cluster; "
      "the options below override it")("bandwidth", po::value(&bandwidth),
                                       "per node and direction: 1gbit, 100gbit or bytes/s")(
      "latency", po::value(&latency), "one-way link latency: 25us, 2us")("message-cost", po::value(&msg_cost),
                                                                         "CPU time per control message")(
      "chunk-cost", po::value(&chunk_cost), "CPU time per data chunk")("byte-cost", po::value(&byte_cost),
                                                                       "CPU time per byte landed: 1ns")(
      "host-cores", po::value(&host_cores), "cores all nodes share (0: one per node)")(
      "efficiency", po::value(&efficiency), "payload share of the wire (TCP at MTU 1500: 0.956)")(
      "chunk", po::value(&chunk), "the runtime's chunk size")("depth", po::value(&depth), "pipeline depth")(
      "k", po::value(&k), "reduce any k of n (0: all)")("reduce-depth", po::value(&reduce_depth),
                                                        "force the reduce tree's depth (0: a chain)")(
      "no-stripes", po::bool_switch(&no_stripes), "allreduce: the dynamic form only")(
      "straggle", po::value(&straggle), "input delays: exp:MEAN (seconds) or rank:R:SECONDS")(
      "seed", po::value(&seed), "random seed for --straggle exp")("fail-rank", po::value(&fail_rank),
                                                                  "a rank that dies during the collective")(
      "fail-at", po::value(&fail_at), "when it dies, as a fraction of the lower bound")(
      "detect", po::value(&detect), "seconds until every node knows of the failure")(
      "no-peers", po::bool_switch(&no_peers), "leave out the peers' algorithms")(
      "csv", po::value(&csv), "append rows to this CSV file");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
  if (vm.count("help")) {
    std::cout << opts;
    return 0;
  }

  sim::Scenario base;
  if (!sim::parse_collective(collective, base.collective))
    return usage_error("unknown collective " + collective);
  std::vector<std::uint32_t> node_counts;
  if (!parse_nodes(nodes, node_counts)) return usage_error("bad --nodes " + nodes);
  auto b = parse_size(begin);
  auto e = parse_size(end.empty() ? begin : end);
  auto ch = parse_size(chunk);
  if (!b.is_ok() || !e.is_ok() || !ch.is_ok() || *ch == 0) return usage_error("bad size");
  if (factor < 2 && *e > *b) return usage_error("--factor must be at least 2");
  double rate = 0;
  if (!parse_rate(bandwidth, rate)) return usage_error("bad --bandwidth " + bandwidth);
  if (preset == "emulated") {
    base.net = sim::emulated_cluster(rate);
  } else if (!preset.empty()) {
    return usage_error("unknown --preset " + preset);
  }
  base.net.bandwidth = rate;
  // Without a preset every option counts; with one, only those given.
  auto given = [&](const char* name) { return preset.empty() || vm.count(name); };
  if ((given("latency") && !parse_time(latency, base.net.latency)) ||
      (given("message-cost") && !parse_time(msg_cost, base.net.message_cost)) ||
      (given("chunk-cost") && !parse_time(chunk_cost, base.net.chunk_cost)) ||
      (given("byte-cost") && !parse_time(byte_cost, base.net.byte_cost))) {
    return usage_error("bad time");
  }
  if (depth < 1 || efficiency <= 0 || efficiency > 1) return usage_error("bad --depth or --efficiency");
  if (given("efficiency")) base.net.efficiency = efficiency;
  if (given("host-cores")) base.net.host_cores = host_cores;
  base.rt.chunk_size = *ch;
  base.rt.pipeline_depth = depth;
  base.allow_stripes = !no_stripes;
  base.k = k;
  base.reduce_depth = reduce_depth;
  base.fail_rank = fail_rank;
  base.detect_delay = detect;

  std::printf(
      "# hoplite-sim %s: B = %.4g B/s, L = %.3g us, efficiency %.3f; CPU: message %.3g us, chunk %.3g us, "
      "byte %.3g ns, host cores %u\n",
      sim::to_string(base.collective), base.net.bandwidth, base.net.latency * 1e6, base.net.efficiency,
      base.net.message_cost * 1e6, base.net.chunk_cost * 1e6, base.net.byte_cost * 1e9, base.net.host_cores);
  std::printf("# chunk %llu B, depth %u%s%s\n", static_cast<unsigned long long>(base.rt.chunk_size), depth,
              k ? (", k = " + std::to_string(k)).c_str() : "",
              fail_rank >= 0 ? (", rank " + std::to_string(fail_rank) + " dies").c_str() : "");
  std::printf("# %8s %12s %12s %12s %7s %-9s %9s %8s  %s\n", "N", "size", "time(us)", "lb(us)", "ratio",
              "form", "events", "wall(s)", "peers: algorithm time/lb");
  std::ofstream out;
  if (!csv.empty()) {
    const bool fresh = !std::ifstream(csv).good();
    out.open(csv, std::ios::app);
    if (!out) return usage_error("cannot write " + csv);
    if (fresh) out << "collective,N,size,bandwidth,latency,system,time_us,lb_us,ratio\n";
  }
  int status = 0;
  for (std::uint32_t n : node_counts) {
    for (std::uint64_t size = *b; size <= *e;
         size = static_cast<std::uint64_t>(static_cast<double>(size) * factor)) {
      sim::Scenario s = base;
      s.nodes = n;
      s.bytes = size;
      const double lb = sim::lower_bound(s.collective, n, size, s.net.bandwidth);
      if (fail_rank >= 0 && fail_at >= 0) s.fail_time = fail_at * lb;
      if (!straggle.empty()) {
        s.input_delay.assign(n, 0.0);
        if (straggle.rfind("exp:", 0) == 0) {
          std::mt19937_64 rng(seed);
          std::exponential_distribution<double> d(1.0 / std::stod(straggle.substr(4)));
          for (auto& x : s.input_delay) x = d(rng);
        } else if (straggle.rfind("rank:", 0) == 0) {
          auto colon = straggle.find(':', 5);
          auto r = static_cast<std::uint32_t>(std::stoul(straggle.substr(5, colon - 5)));
          if (r < n) s.input_delay[r] = std::stod(straggle.substr(colon + 1));
        } else {
          return usage_error("bad --straggle " + straggle);
        }
      }
      const auto t0 = std::chrono::steady_clock::now();
      sim::Outcome o = sim::simulate(s);
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::string tree = "depth " + std::to_string(o.depth);
      const char* form = s.collective == sim::Collective::kAllreduce ? (o.striped ? "striped" : "dynamic")
                         : s.collective == sim::Collective::kReduce  ? tree.c_str()
                                                                     : "chains";
      std::string peers;
      if (!no_peers) {
        for (const auto& p : sim::peer_times(s.collective, n, size, s.net)) {
          char buf[96];
          std::snprintf(buf, sizeof buf, "  %s %.3f", p.algorithm.c_str(), lb > 0 ? p.seconds / lb : 0);
          peers += buf;
          if (out) {
            out << sim::to_string(s.collective) << ',' << n << ',' << size << ',' << s.net.bandwidth << ','
                << s.net.latency << ',' << p.algorithm << ',' << p.seconds * 1e6 << ',' << lb * 1e6 << ','
                << (lb > 0 ? p.seconds / lb : 0) << '\n';
          }
        }
      }
      if (!o.error.empty()) {
        std::printf("  %8u %12llu  error: %s\n", n, static_cast<unsigned long long>(size), o.error.c_str());
        status = 1;
        continue;
      }
      std::printf("  %8u %12llu %12.1f %12.1f %7.3f %-9s %9llu %8.2f %s\n", n,
                  static_cast<unsigned long long>(size), o.time * 1e6, lb * 1e6, lb > 0 ? o.time / lb : 0,
                  form, static_cast<unsigned long long>(o.events), wall, peers.c_str());
      if (out) {
        out << sim::to_string(s.collective) << ',' << n << ',' << size << ',' << s.net.bandwidth << ','
            << s.net.latency << ",hoplite," << o.time * 1e6 << ',' << lb * 1e6 << ','
            << (lb > 0 ? o.time / lb : 0) << '\n';
      }
      std::fflush(stdout);
      if (factor < 2) break;
    }
  }
  return status;
}
