#include "node/barrier_book.h"

namespace hoplite::node {

bool BarrierBook::complete(std::uint64_t epoch, const std::vector<bool>& alive) const {
  for (Rank r = 0; r < world_; ++r) {
    const bool live = alive.empty() || (r < alive.size() && alive[r]);
    if (!live) continue;
    auto it = reached_.find(r);
    if (it == reached_.end() || it->second < epoch) return false;
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

void BarrierBook::record(std::uint64_t epoch, Rank rank) {
  if (rank >= world_ || epoch <= last_released_) return;
  arrivals_[epoch].insert(rank);
  auto& r = reached_[rank];
  r = std::max(r, epoch);
}

std::vector<std::uint64_t> BarrierBook::release_ready(const std::vector<bool>& alive) {
  std::vector<std::uint64_t> out;
  // In order: a barrier not complete holds back every later one.
  while (!arrivals_.empty() && complete(arrivals_.begin()->first, alive)) {
    out.push_back(arrivals_.begin()->first);
    release(arrivals_.begin()->first);
  }
  return out;
}

bool BarrierBook::arrive(std::uint64_t epoch, Rank rank, const std::vector<bool>& alive) {
  record(epoch, rank);
  return !release_ready(alive).empty();
}

std::vector<std::uint64_t> BarrierBook::drop(Rank rank, const std::vector<bool>& alive) {
  reached_.erase(rank);
  for (auto it = arrivals_.begin(); it != arrivals_.end();) {
    it->second.erase(rank);
    it = it->second.empty() ? arrivals_.erase(it) : std::next(it);
  }
  return release_ready(alive);
}

std::vector<std::pair<std::uint64_t, BarrierBook::Rank>> BarrierBook::close_through(std::uint64_t epoch) {
  std::vector<std::pair<std::uint64_t, Rank>> told;
  while (!arrivals_.empty() && arrivals_.begin()->first <= epoch) {
    for (Rank r : arrivals_.begin()->second) told.emplace_back(arrivals_.begin()->first, r);
    arrivals_.erase(arrivals_.begin());
  }
  last_released_ = std::max(last_released_, epoch);
  return told;
}

}  // namespace hoplite::node
