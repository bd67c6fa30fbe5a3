#include "sim/network.h"

#include <algorithm>

namespace hoplite::sim {

double Network::cpu(std::uint32_t node, double t, double seconds) {
  double start = std::max(t, thread_[node]);
  if (!cores_.empty()) {
    auto core = std::min_element(cores_.begin(), cores_.end());
    start = std::max(start, *core);
    *core = start + seconds;
  }
  thread_[node] = start + seconds;
  return start + seconds;
}

double Network::message(std::uint32_t from, double t) {
  if (m_.message_cost <= 0) return t + m_.latency;
  return cpu(from, t, m_.message_cost) + m_.latency;
}

double Network::data(std::uint32_t from, std::uint32_t to, std::uint64_t bytes, double t) {
  const double tx = static_cast<double>(bytes) / (m_.bandwidth * m_.efficiency);
  const double start = std::max(t, egress_[from]);
  const double sent = start + tx;
  egress_[from] = sent;
  double arrived = std::max(sent, ingress_[to] + tx);
  ingress_[to] = arrived;
  if (m_.switch_bandwidth > 0) {
    arrived = std::max(arrived, switch_ + static_cast<double>(bytes) / m_.switch_bandwidth);
    switch_ = arrived;
  }
  return arrived + m_.latency;
}

double Network::land(std::uint32_t to, double t, std::uint64_t bytes) {
  const double work = m_.chunk_cost + m_.byte_cost * static_cast<double>(bytes);
  if (work <= 0) return t;
  // The receiver copies bytes as they come in: its work can start when the
  // chunk's first byte arrives, if its thread and a core are free then.
  const double first = t - static_cast<double>(bytes) / (m_.bandwidth * m_.efficiency);
  return std::max(t, cpu(to, first, work));
}

}  // namespace hoplite::sim
