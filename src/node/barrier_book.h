// BarrierBook: the barrier leader's record of who reached each open barrier.
//
// A barrier is released when every live rank has arrived. Ranks pass
// barriers in order, so a rank that arrived at a later barrier has passed
// this one too: that is what lets a new leader, after the old one died
// half way through a release, finish a barrier some ranks already left.
// Arrivals are per rank, not a count: a rank that arrives and then dies must
// not stand in for a live one, so its arrivals go with it; if it rejoins,
// the new process has to arrive itself. Arrivals for a barrier already
// released are late (the caller answers them with its release). Pure: no
// sockets, no clocks.
//
// Thread-binding: none; owned by the Barriers component.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "control/messages.h"

namespace hoplite::node {

class BarrierBook {
 public:
  using Rank = control::Rank;
  // `alive`: by rank, empty meaning everyone.
  explicit BarrierBook(std::uint32_t world) : world_(world) {}

  // No run counts 2^48 barriers; above it an epoch is a forgery.
  static constexpr std::uint64_t kMaxEpoch = 1ull << 48;
  // How far past the last released barrier an arrival may be: a rank runs
  // ahead only by barriers it gave up waiting for. Bounds the book.
  static constexpr std::uint64_t kMaxAhead = 1024;
  // Whether an arrival for `epoch` may be recorded: ok, or why not (an
  // epoch out of range would grow the book without bound).
  [[nodiscard]] Status admissible(std::uint64_t epoch) const;

  // `rank` reached barrier `epoch` (recorded only).
  void record(std::uint64_t epoch, Rank rank);
  // Releases, in order, every open barrier all live ranks have reached.
  std::vector<std::uint64_t> release_ready(const std::vector<bool>& alive);
  // record() then release_ready(): true when something was released.
  bool arrive(std::uint64_t epoch, Rank rank, const std::vector<bool>& alive);
  // `rank` died: its arrivals go, and the barriers that waited only for it
  // are released (returned in order).
  std::vector<std::uint64_t> drop(Rank rank, const std::vector<bool>& alive);
  // Barriers up to `epoch` are known to be released (a new leader saw their
  // release): they are closed, and who had arrived at them is returned to be
  // told, as (epoch, rank).
  std::vector<std::pair<std::uint64_t, Rank>> close_through(std::uint64_t epoch);

  std::uint64_t last_released() const { return last_released_; }
  std::size_t open() const { return arrivals_.size(); }

 private:
  bool complete(std::uint64_t epoch, const std::vector<bool>& alive) const;
  void release(std::uint64_t epoch);

  std::uint32_t world_;
  std::uint64_t last_released_ = 0;
  std::map<std::uint64_t, std::set<Rank>> arrivals_;  // open barriers: who arrived at each
  std::map<Rank, std::uint64_t> reached_;             // the furthest barrier each rank reached
};

}  // namespace hoplite::node
