#include "scheduler/broadcast_planner.h"

namespace hoplite::scheduler {

std::optional<std::pair<std::size_t, std::size_t>> BroadcastPlanner::find(Rank r) const {
  // Most receivers asking are not planned yet, and most ranks asked about
  // are a chain's tail or sit right behind its head: with thousands of
  // receivers on one chain (the simulator's allgather on 4096 nodes), a
  // scan from the front made this the shard's whole cost.
  if (!planned_.count(r)) return std::nullopt;
  for (std::size_t c = 0; c < chains_.size(); ++c) {
    const auto& ch = chains_[c];
    for (std::size_t lo = 0, hi = ch.size(); lo < hi; ++lo) {
      if (ch[lo] == r) return std::make_pair(c, lo);
      if (ch[--hi] == r) return std::make_pair(c, hi);
    }
  }
  return std::nullopt;
}

void BroadcastPlanner::add_source(Rank r) {
  sources_.insert(r);
  auto at = find(r);
  if (!at) {
    chains_.push_back({r});
    planned_.insert(r);
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
  // Only chains fed by a source: a chain whose head lost its source (the
  // head was removed) holds partial copies that may never grow, and two such
  // copies could otherwise end up reading from each other.
  std::optional<std::size_t> best;
  for (std::size_t c = 0; c < chains_.size(); ++c) {
    if (!sources_.count(chains_[c].front())) continue;
    if (!best || chains_[c].size() < chains_[*best].size()) best = c;
  }
  if (!best) return std::nullopt;
  Rank sender = chains_[*best].back();
  chains_[*best].push_back(receiver);
  planned_.insert(receiver);
  return sender;
}

std::optional<Rank> BroadcastPlanner::assign_after(Rank receiver, Rank after) {
  if (receiver == after) return std::nullopt;
  auto at = find(after);
  if (!at) return std::nullopt;
  auto& chain = chains_[at->first];
  if (at->second + 1 != chain.size() || !sources_.count(chain.front())) return std::nullopt;
  remove(receiver);
  // remove() may have moved chains around: find the tail again.
  for (auto& ch : chains_) {
    if (ch.back() != after) continue;
    ch.push_back(receiver);
    planned_.insert(receiver);
    return after;
  }
  return std::nullopt;
}

void BroadcastPlanner::remove(Rank r) {
  sources_.erase(r);
  auto at = find(r);
  if (!at) return;
  auto [c, i] = *at;
  chains_[c].erase(chains_[c].begin() + static_cast<std::ptrdiff_t>(i));
  planned_.erase(r);
  if (chains_[c].empty()) chains_.erase(chains_.begin() + static_cast<std::ptrdiff_t>(c));
}

std::optional<Rank> BroadcastPlanner::predecessor(Rank r) const {
  auto at = find(r);
  if (!at || at->second == 0) return std::nullopt;
  return chains_[at->first][at->second - 1];
}

std::vector<Rank> BroadcastPlanner::members() const {
  std::vector<Rank> out;
  for (const auto& ch : chains_) out.insert(out.end(), ch.begin(), ch.end());
  return out;
}

}  // namespace hoplite::scheduler
