// FailureDetector: decides from silence which peers have failed.
//
// Any message from a peer counts as a sign of life (heard()). At each tick
// (every timeout/4) a live peer silent for longer than the timeout is
// suspected, and every other live peer is due a heartbeat. Each node
// decides for itself; views converge because every survivor sees the same
// silence (or the same reset, which membership reports without waiting).
// Pure: the caller passes the time, so tests drive it with their own clock.
//
// Thread-binding: none; owned by Membership.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "control/messages.h"

namespace hoplite::node {

class FailureDetector {
 public:
  using Rank = control::Rank;
  using Clock = std::chrono::steady_clock;

  FailureDetector(Rank me, std::uint32_t world, std::chrono::milliseconds timeout)
      : me_(me), world_(world), timeout_(timeout) {}

  // Starts watching everyone, as if each had just been heard.
  void start(Clock::time_point now) { last_seen_.assign(world_, now); }
  bool started() const { return !last_seen_.empty(); }
  void heard(Rank r, Clock::time_point now) {
    if (r < last_seen_.size()) last_seen_[r] = now;
  }

  struct Tick {
    std::vector<Rank> suspects;   // silent past the timeout: declare failed
    std::vector<Rank> heartbeat;  // live and due a heartbeat
  };
  // `alive`: the current view (by rank).
  Tick tick(Clock::time_point now, const std::vector<bool>& alive) const;

  std::chrono::milliseconds timeout() const { return timeout_; }
  std::chrono::milliseconds interval() const { return timeout_ / 4; }

 private:
  Rank me_;
  std::uint32_t world_;
  std::chrono::milliseconds timeout_;
  std::vector<Clock::time_point> last_seen_;
};

}  // namespace hoplite::node
