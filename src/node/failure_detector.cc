#include "node/failure_detector.h"

namespace hoplite::node {

FailureDetector::Tick FailureDetector::tick(Clock::time_point now, const std::vector<bool>& alive) const {
  Tick t;
  for (Rank r = 0; r < world_ && r < last_seen_.size(); ++r) {
    if (r == me_ || r >= alive.size() || !alive[r]) continue;
    if (now - last_seen_[r] > timeout_) {
      t.suspects.push_back(r);
    } else {
      t.heartbeat.push_back(r);
    }
  }
  return t;
}

}  // namespace hoplite::node
