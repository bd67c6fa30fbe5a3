// EventQueue: the simulator's clock and its pending events.
//
// Events run in time order, ties in the order they were scheduled, so a run
// is deterministic. Callbacks live in slots that are reused, and the heap
// holds only (time, sequence, slot), so a run of tens of millions of events
// moves no std::function around.
//
// Owns: the callbacks not yet run. Thread-binding: one thread (a run).
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

namespace hoplite::sim {

class EventQueue {
 public:
  using Callback = std::function<void()>;

  double now() const { return now_; }
  std::uint64_t executed() const { return executed_; }

  void at(double t, Callback f) {
    std::uint32_t slot;
    if (free_.empty()) {
      slot = static_cast<std::uint32_t>(slots_.size());
      slots_.push_back(std::move(f));
    } else {
      slot = free_.back();
      free_.pop_back();
      slots_[slot] = std::move(f);
    }
    heap_.push(Entry{t < now_ ? now_ : t, seq_++, slot});
  }
  void after(double dt, Callback f) { at(now_ + dt, std::move(f)); }

  // Runs events until none are left or the clock passes `until`.
  void run(double until) {
    while (!heap_.empty() && heap_.top().t <= until) {
      Entry e = heap_.top();
      heap_.pop();
      now_ = e.t;
      Callback f = std::move(slots_[e.slot]);
      free_.push_back(e.slot);
      ++executed_;
      f();
    }
  }

 private:
  struct Entry {
    double t;
    std::uint64_t seq;
    std::uint32_t slot;
    bool operator>(const Entry& o) const { return t != o.t ? t > o.t : seq > o.seq; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap_;
  std::vector<Callback> slots_;
  std::vector<std::uint32_t> free_;
  double now_ = 0;
  std::uint64_t seq_ = 0;
  std::uint64_t executed_ = 0;
};

}  // namespace hoplite::sim
