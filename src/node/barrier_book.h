// BarrierBook: rank 0's record of who reached each open barrier.
//
// A barrier is released when every live rank has arrived. Arrivals are a
// set, not a count: a rank that arrives and then dies must not stand in for
// a live one, so its arrival is dropped with it; if it rejoins, the new
// process has to arrive itself. Arrivals for a barrier already released are
// late and ignored. Pure: no sockets, no clocks.
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

  // `rank` reached barrier `epoch`. True when that completes it: the
  // barrier is then released (forgotten, and later arrivals for it are
  // late).
  bool arrive(std::uint64_t epoch, Rank rank, const std::vector<bool>& alive);
  // `rank` died: its arrivals go, and the barriers that waited only for it
  // are released (returned in order).
  std::vector<std::uint64_t> drop(Rank rank, const std::vector<bool>& alive);

  std::uint64_t last_released() const { return last_released_; }
  std::size_t open() const { return arrivals_.size(); }

 private:
  bool complete(const std::set<Rank>& arrived, const std::vector<bool>& alive) const;
  void release(std::uint64_t epoch);

  std::uint32_t world_;
  std::uint64_t last_released_ = 0;
  std::map<std::uint64_t, std::set<Rank>> arrivals_;
};

}  // namespace hoplite::node
