#include "node/barrier_book.h"

namespace hoplite::node {

bool BarrierBook::complete(const std::set<Rank>& arrived, const std::vector<bool>& alive) const {
  for (Rank r = 0; r < world_; ++r) {
    const bool live = alive.empty() || alive[r];
    if (live && !arrived.count(r)) return false;
  }
  return true;
}

void BarrierBook::release(std::uint64_t epoch) {
  arrivals_.erase(epoch);
  last_released_ = std::max(last_released_, epoch);
}

Status BarrierBook::admissible(std::uint64_t epoch) const {
  if (epoch == 0 || epoch > kMaxEpoch)
    return protocol_error("barrier epoch " + std::to_string(epoch) + " out of range");
  if (epoch > last_released_ + kMaxAhead) {
    return capacity_error("barrier " + std::to_string(epoch) + " is more than " + std::to_string(kMaxAhead) +
                          " past the last released one (" + std::to_string(last_released_) + ")");
  }
  return {};
}

bool BarrierBook::arrive(std::uint64_t epoch, Rank rank, const std::vector<bool>& alive) {
  if (rank >= world_ || epoch <= last_released_) return false;
  auto& arrived = arrivals_[epoch];
  arrived.insert(rank);
  if (!complete(arrived, alive)) return false;
  release(epoch);
  return true;
}

std::vector<std::uint64_t> BarrierBook::drop(Rank rank, const std::vector<bool>& alive) {
  std::vector<std::uint64_t> ready;
  for (auto& [epoch, arrived] : arrivals_) {
    arrived.erase(rank);
    if (complete(arrived, alive)) ready.push_back(epoch);
  }
  for (auto epoch : ready) release(epoch);
  return ready;
}

}  // namespace hoplite::node
