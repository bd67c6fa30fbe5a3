#include "sim/peers.h"

#include <algorithm>
#include <cmath>

namespace hoplite::sim {

std::vector<PeerTime> peer_times(Collective c, std::uint32_t n, std::uint64_t bytes, const NetworkModel& net,
                                 std::uint64_t segment) {
  std::vector<PeerTime> out;
  if (n < 2) return out;
  const double a = net.latency + net.message_cost;
  const double beta = 1.0 / (net.bandwidth * net.efficiency);
  const double S = static_cast<double>(bytes);
  const double N = n;
  const double lg = std::ceil(std::log2(N));
  // Pipelined chain: N-1 hops to fill, then one segment time per segment.
  const double seg = std::min(S, static_cast<double>(segment));
  const double segs = std::max(1.0, std::ceil(S / std::max(seg, 1.0)));
  const double chain = (N - 2 + segs) * (a + seg * beta);
  switch (c) {
    case Collective::kBroadcast:
      out.push_back({"binomial tree", lg * (a + S * beta)});
      out.push_back({"pipelined chain", chain});
      // van de Geijn: scatter along a binomial tree, then a ring allgather.
      out.push_back({"scatter+allgather", (lg + N - 1) * a + 2 * (N - 1) / N * S * beta});
      break;
    case Collective::kReduce:
      out.push_back({"binomial tree", lg * (a + S * beta)});
      out.push_back({"pipelined chain", chain});
      // Rabenseifner: reduce-scatter by recursive halving, then a binomial gather.
      out.push_back({"halving+gather", 2 * lg * a + 2 * (N - 1) / N * S * beta});
      break;
    case Collective::kAllreduce:
      out.push_back({"ring", 2 * (N - 1) * (a + S / N * beta)});
      out.push_back({"halving-doubling", 2 * lg * a + 2 * (N - 1) / N * S * beta});
      out.push_back({"binomial reduce+bcast", 2 * lg * (a + S * beta)});
      break;
    case Collective::kGather:
      out.push_back({"linear", (N - 1) * a + (N - 1) / N * S * beta});
      out.push_back({"binomial tree", lg * a + (N - 1) / N * S * beta});
      break;
    case Collective::kAllgather:
      out.push_back({"ring", (N - 1) * (a + S / N * beta)});
      out.push_back({"recursive doubling", lg * a + (N - 1) / N * S * beta});
      break;
  }
  return out;
}

}  // namespace hoplite::sim
