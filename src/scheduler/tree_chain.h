// TreeChain: the state of one tree-chain reduce at its coordinator, and
// every decision about where inputs go and what a failure costs.
//
// Positions come from the planner's shape (reduce_planner.h). Arrivals
// fill them in post-order; a position becomes a task once it and its
// children are placed on live holders. When a holder dies, the positions it
// held whose output is still needed (their parent has not completed, or is
// itself recomputed) are vacated and refilled by the next arrival. Refilled
// with the same input (same id, so the same bytes) under a parent that kept
// its progress, a position resumes: the parent reads the rest of the same
// computation from the new holder. Refilled with another input, the path
// above it is recomputed (its tasks cancelled and issued again); positions
// below and beside the path keep their progress. A position recomputed from
// byte 0 needs whole children: any computed only from a resume point is
// recomputed too.
//
// Pure: liveness and every action (issue, resume, cancel, locate) go
// through Effects, so the rules are unit-tested against a sequence of
// events with no sockets. Thread-binding: none; owned by the coordinator.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "control/messages.h"
#include "hoplite/object_id.h"
#include "scheduler/reduce_planner.h"

namespace hoplite::scheduler {

class TreeChain {
 public:
  using Rank = control::Rank;
  static constexpr std::uint32_t kNoParent = 0xffffffffu;

  // What the coordinator does on the chain's behalf.
  class Effects {
   public:
    virtual ~Effects() = default;
    virtual bool alive(Rank r) const = 0;
    // Start `pos`'s task: its children are placed and current. The
    // coordinator names the output and calls assign().
    virtual void issue(std::uint32_t pos) = 0;
    // `pos` was refilled with its old input under a parent that kept its
    // progress: the parent reads it from the new holder. For an inner
    // position the coordinator makes its task (assign(..., true)).
    virtual void resume(std::uint32_t pos, const ObjectID& old_output) = 0;
    // `task` of `pos` no longer counts; `cancel`: stop it at `holder`.
    virtual void drop_task(std::uint64_t task, Rank holder, const ObjectID& output, bool cancel) = 0;
    // Inputs not in the plan are to be located again (refills).
    virtual void locate_unused() = 0;
  };

  TreeChain(ReduceShape shape, std::uint32_t k);

  // An input arrived (complete at `holder`): it takes the next position, or
  // a vacated one.
  void place(const ObjectID& input, Rank holder, Effects& fx);
  // Issues every stale position whose children are all placed on live
  // holders; vacates the ones left on dead ranks.
  void issue_ready(Effects& fx);
  // Some holders died: vacates the positions that are still needed.
  // False when the failure cost nothing.
  bool repair(Effects& fx);
  // The task of `pos` is `task`, with `output`. `partial`: it computes only
  // what a resumed reader still needs.
  void assign(std::uint32_t pos, std::uint64_t task, const ObjectID& output, bool partial = false);
  // `task` completed. True when it was the root's.
  bool task_done(std::uint64_t task);
  // `task` ended because its upstream disappeared (not a holder's death):
  // it and the path above are issued again by the next issue_ready().
  // False when the task is not one of ours.
  bool task_lost(std::uint64_t task, Effects& fx);

  // A filled position is held by `r`.
  bool uses(Rank r) const;
  bool has_input(const ObjectID& id) const;
  std::uint32_t k() const { return k_; }
  std::size_t placed() const { return next_fill_; }
  bool has_vacancy() const { return !vacant_.empty(); }
  const std::vector<ObjectID>& used() const { return used_; }
  const ReduceShape& shape() const { return shape_; }
  std::uint32_t root() const { return shape_.root; }
  std::uint32_t parent(std::uint32_t pos) const { return parent_[pos]; }
  Rank holder(std::uint32_t pos) const { return holder_[pos]; }
  const ObjectID& input(std::uint32_t pos) const { return input_[pos]; }
  const ObjectID& output(std::uint32_t pos) const { return output_[pos]; }
  std::uint64_t task(std::uint32_t pos) const { return task_[pos]; }
  // How often `pos` has been assigned a task (names a re-issued output).
  std::uint32_t generation(std::uint32_t pos) const { return gen_[pos]; }
  // Tasks issued again after a failure.
  std::uint32_t recomputed() const { return recomputed_; }
  // A position whose output is its input: a leaf that is not the root.
  bool is_leaf(std::uint32_t pos) const { return shape_.children[pos].empty() && pos != shape_.root; }

 private:
  void mark_whole_stale(std::uint32_t pos, Effects& fx);
  void stale_up_from(std::uint32_t pos, Effects& fx);
  void drop_position_task(std::uint32_t pos, bool cancel, Effects& fx);
  void vacate(std::uint32_t pos, Effects& fx);

  ReduceShape shape_;
  std::uint32_t k_;
  std::vector<ObjectID> used_;  // inputs at filled positions, arrival order
  std::vector<Rank> holder_;
  std::vector<ObjectID> input_, output_;
  std::vector<std::uint32_t> parent_;
  std::vector<std::uint64_t> task_;  // 0: a leaf, or not issued
  std::vector<std::uint32_t> gen_;
  // stale: to be (re)issued once its children are placed; resume: vacated
  // under a parent that keeps its progress; partial: computed from a resume
  // point, so its output lacks the prefix its parent already had.
  std::vector<std::uint8_t> filled_, stale_, done_, resume_, partial_;
  std::size_t next_fill_ = 0;          // into shape.fill
  std::vector<std::uint32_t> vacant_;  // positions to refill
  std::unordered_map<std::uint64_t, std::uint32_t> task_pos_;
  std::uint64_t root_task_ = 0;
  std::uint32_t recomputed_ = 0;
};

// The caller's own input, arriving before the last, is kept back for the
// root position: the target then lands where the caller reads it instead of
// crossing the network once more, and the caller's link does not carry a
// chain stream and the target at once. It is one of the first k arrivals
// either way, so the inputs used do not change. `kept`: one is kept already.
bool keep_for_root(bool callers_input, bool kept, const TreeChain& chain);
// The kept input takes its place once it is the last one missing.
inline bool place_kept_now(const TreeChain& chain) {
  return chain.placed() + 1 == chain.k();
}

}  // namespace hoplite::scheduler
