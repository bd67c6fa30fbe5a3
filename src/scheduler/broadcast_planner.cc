#include "scheduler/broadcast_planner.h"

namespace hoplite::scheduler {

std::optional<std::pair<std::size_t, std::size_t>> BroadcastPlanner::find(Rank r) const {
  for (std::size_t c = 0; c < chains_.size(); ++c) {
    for (std::size_t i = 0; i < chains_[c].size(); ++i) {
      if (chains_[c][i] == r) return std::make_pair(c, i);
    }
  }
  return std::nullopt;
}

void BroadcastPlanner::add_source(Rank r) {
  auto at = find(r);
  if (!at) {
    chains_.push_back({r});
    return;
  }
  auto [c, i] = *at;
  if (i == 0) return;  // already heads its chain
  // Split: r and its successors stream from r now; its predecessors keep
  // their own (shorter) chain.
  std::vector<Rank> tail(chains_[c].begin() + static_cast<std::ptrdiff_t>(i), chains_[c].end());
  chains_[c].resize(i);
  chains_.push_back(std::move(tail));
}

std::optional<Rank> BroadcastPlanner::assign(Rank receiver) {
  remove(receiver);
  if (chains_.empty()) return std::nullopt;
  std::size_t best = 0;
  for (std::size_t c = 1; c < chains_.size(); ++c) {
    if (chains_[c].size() < chains_[best].size()) best = c;
  }
  Rank sender = chains_[best].back();
  chains_[best].push_back(receiver);
  return sender;
}

void BroadcastPlanner::remove(Rank r) {
  auto at = find(r);
  if (!at) return;
  auto [c, i] = *at;
  chains_[c].erase(chains_[c].begin() + static_cast<std::ptrdiff_t>(i));
  if (chains_[c].empty()) chains_.erase(chains_.begin() + static_cast<std::ptrdiff_t>(c));
}

std::vector<Rank> BroadcastPlanner::members() const {
  std::vector<Rank> out;
  for (const auto& ch : chains_) out.insert(out.end(), ch.begin(), ch.end());
  return out;
}

}  // namespace hoplite::scheduler
