// Barriers: every live member reaches a barrier before anyone leaves it.
//
// Barriers are numbered by a sequence every member advances in the same
// order. Each member sends Barrier{epoch} to the leader (the lowest live
// rank: rank 0 until it fails), which keeps the arrivals (BarrierBook) and
// sends BarrierDone to every live rank once all live ranks arrived; a
// failure can complete a barrier that waited only for the dead rank. When
// the leader dies, the next live rank leads: every rank sends it its open
// arrivals again, and an arrival at a barrier it already saw released is
// answered with the release. A rejoiner's table says which barrier was
// released last, so its next one carries the survivors' number; a rejoiner
// below the leader (rank 0 restarted) leads from then on, and every rank
// sends it its open arrivals as after a failure.
//
// Owns: the epoch counter, the waiting callers, the arrivals sent here; Barrier
// and BarrierDone.
// Thread-binding: the progress thread, except wait() (user threads, one
// barrier at a time per node).
#pragma once

#include <future>
#include <map>
#include <mutex>

#include "node/barrier_book.h"
#include "node/context.h"

namespace hoplite::node {

class Barriers final : public Component {
 public:
  explicit Barriers(NodeContext& ctx);

  // User threads: blocks until the barrier is released or `timeout`.
  [[nodiscard]] Status wait(std::chrono::milliseconds timeout);
  // The last barrier released (for a rejoiner's table).
  std::uint64_t last_released() const { return book_.last_released(); }
  // A rejoiner, from its table: barriers up to `epoch` are behind us.
  void catch_up(std::uint64_t epoch);

  void on_shards_moved(const std::vector<bool>& old_alive) override;
  void on_peer_failed(Rank r) override;
  void on_stop() override;

 private:
  void on_arrival(const ConnPtr& c, const msg::Barrier& b);
  void on_done(const msg::BarrierDone& d);
  void released(std::uint64_t epoch);

  NodeContext& ctx_;
  // Atomic because a rejoiner learns the current number on the progress
  // thread while user threads read it.
  std::atomic<std::uint64_t> epoch_{0};
  std::mutex mu_;  // one barrier at a time from user threads
  BarrierBook book_;
  std::map<std::uint64_t, std::shared_ptr<std::promise<Status>>> waits_;
};

}  // namespace hoplite::node
