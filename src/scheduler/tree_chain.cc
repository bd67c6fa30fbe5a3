#include "scheduler/tree_chain.h"

#include <algorithm>

namespace hoplite::scheduler {

TreeChain::TreeChain(ReduceShape shape, std::uint32_t k)
    : shape_(std::move(shape)),
      k_(k),
      holder_(k, control::kNoRank),
      input_(k),
      output_(k),
      parent_(k, kNoParent),
      task_(k, 0),
      gen_(k, 0),
      filled_(k, 0),
      stale_(k, 0),
      done_(k, 0),
      resume_(k, 0),
      partial_(k, 0) {
  for (std::uint32_t p = 0; p < k_; ++p) {
    for (auto kid : shape_.children[p]) parent_[kid] = p;
  }
}

bool TreeChain::uses(Rank r) const {
  return std::find(holder_.begin(), holder_.end(), r) != holder_.end();
}

bool TreeChain::has_input(const ObjectID& id) const {
  return std::find(used_.begin(), used_.end(), id) != used_.end();
}

void TreeChain::place(const ObjectID& input, Rank holder, Effects& fx) {
  std::uint32_t pos;
  if (!vacant_.empty()) {
    // A refill: the position a failure vacated. Lower positions in fill
    // order first, so children are placed before their parents.
    auto order = [&](std::uint32_t p) {
      return std::find(shape_.fill.begin(), shape_.fill.end(), p) - shape_.fill.begin();
    };
    auto it = std::min_element(vacant_.begin(), vacant_.end(),
                               [&](std::uint32_t a, std::uint32_t b) { return order(a) < order(b); });
    pos = *it;
    vacant_.erase(it);
  } else {
    pos = shape_.fill[next_fill_++];
  }
  const ObjectID old_input = input_[pos];
  used_.push_back(input);
  holder_[pos] = holder;
  input_[pos] = input;
  filled_[pos] = 1;
  done_[pos] = 0;
  if (resume_[pos]) {
    resume_[pos] = 0;
    const std::uint32_t up = parent_[pos];
    // (A parent that finished before the refill already gave the position
    // back, with its old input: task_done.)
    const bool parent_running = task_[up] != 0 && !stale_[up] && !done_[up] && fx.alive(holder_[up]);
    // Its children's outputs must be whole and ready: one computed from
    // where a previous task of this position had got to lacks what a
    // restart from the parent's (earlier) point needs.
    bool kids_ready = true;
    for (auto kid : shape_.children[pos]) {
      kids_ready = kids_ready && !partial_[kid] && filled_[kid] && !stale_[kid] && fx.alive(holder_[kid]);
    }
    if (parent_running && kids_ready && input == old_input) {
      const ObjectID old_output = output_[pos];
      if (is_leaf(pos)) output_[pos] = input;
      return fx.resume(pos, old_output);
    }
    // Another input: the parent's prefix folded the lost one, so the path
    // above is recomputed.
    stale_up_from(pos, fx);
  }
  if (is_leaf(pos)) {
    output_[pos] = input;  // a leaf's partial result is its input
  } else {
    mark_whole_stale(pos, fx);
  }
  issue_ready(fx);
}

// `pos` will be computed again from byte 0: children computed only from a
// resume point must then be computed whole too (and theirs, recursively).
void TreeChain::mark_whole_stale(std::uint32_t pos, Effects& fx) {
  stale_[pos] = 1;
  for (auto kid : shape_.children[pos]) {
    if (!partial_[kid]) continue;
    drop_position_task(kid, true, fx);
    mark_whole_stale(kid, fx);
  }
}

// Fill order is post-order, so one pass settles a whole path.
void TreeChain::issue_ready(Effects& fx) {
  bool vacated = false;
  for (std::uint32_t i = 0; i < k_; ++i) {
    const std::uint32_t pos = shape_.fill[i];
    if (!filled_[pos] || !stale_[pos]) continue;
    // A position that starts over needs every child's output again, and its
    // own input: any of them left on a dead rank (it was not needed when
    // the rank died) has to be found again.
    for (auto kid : shape_.children[pos]) {
      if (filled_[kid] && !fx.alive(holder_[kid])) {
        vacate(kid, fx);
        vacated = true;
      }
    }
    if (!fx.alive(holder_[pos])) {
      vacate(pos, fx);
      vacated = true;
      continue;
    }
    bool ready = true;
    for (auto kid : shape_.children[pos])
      ready = ready && filled_[kid] && !stale_[kid] && fx.alive(holder_[kid]);
    if (ready) fx.issue(pos);
  }
  if (vacated) fx.locate_unused();
}

// Takes `pos` out of the plan (its holder is dead); the next arrival refills it.
void TreeChain::vacate(std::uint32_t pos, Effects& fx) {
  std::erase(used_, input_[pos]);
  drop_position_task(pos, false, fx);
  filled_[pos] = 0;
  stale_[pos] = 0;
  resume_[pos] = 0;
  vacant_.push_back(pos);
}

void TreeChain::assign(std::uint32_t pos, std::uint64_t task, const ObjectID& output, bool partial) {
  if (gen_[pos] > 0) recomputed_++;
  gen_[pos]++;
  output_[pos] = output;
  task_pos_[task] = pos;
  task_[pos] = task;
  stale_[pos] = 0;
  done_[pos] = 0;
  partial_[pos] = partial ? 1 : 0;
  if (pos == shape_.root) root_task_ = task;
}

// Forgets `pos`'s task (stopping it if asked and its holder lives) and
// marks the position for issuing again.
void TreeChain::drop_position_task(std::uint32_t pos, bool cancel, Effects& fx) {
  if (std::uint64_t task = task_[pos]) {
    fx.drop_task(task, holder_[pos], output_[pos], cancel && fx.alive(holder_[pos]));
    task_pos_.erase(task);
    task_[pos] = 0;
  }
  partial_[pos] = 0;
  done_[pos] = 0;
}

// Marks every position above `pos` stale: each one's output folds in what
// `pos` produced, which is being replaced. Their running tasks are
// cancelled; positions below and beside the path keep going.
void TreeChain::stale_up_from(std::uint32_t pos, Effects& fx) {
  for (std::uint32_t a = parent_[pos]; a != kNoParent; a = parent_[a]) {
    if (!filled_[a]) {
      // Vacant, waiting to resume into a parent that kept its prefix: that
      // prefix now holds a subtree being replaced, so no resume, and the
      // path goes on up.
      if (!resume_[a]) break;
      resume_[a] = 0;
      continue;
    }
    if (stale_[a]) break;  // handled already, with everything above
    drop_position_task(a, true, fx);
    mark_whole_stale(a, fx);
  }
}

bool TreeChain::repair(Effects& fx) {
  std::vector<std::uint8_t> lost(k_, 0);
  bool any = false;
  for (std::uint32_t i = k_; i-- > 0;) {  // parents before children
    const std::uint32_t pos = shape_.fill[i];
    if (!filled_[pos] || fx.alive(holder_[pos])) continue;
    const std::uint32_t up = parent_[pos];
    const bool needed = up == kNoParent || lost[up] || stale_[up] || !filled_[up] || !done_[up];
    if (!needed) continue;  // already folded into a complete parent
    lost[pos] = 1;
    any = true;
  }
  if (!any) return false;
  for (std::uint32_t i = 0; i < k_; ++i) {  // children before parents
    const std::uint32_t pos = shape_.fill[i];
    if (!lost[pos]) continue;
    vacate(pos, fx);
    // With its parent still running, the parent's progress is worth keeping
    // if the same input comes back (decided at the refill); otherwise the
    // path above is recomputed now.
    const std::uint32_t up = parent_[pos];
    const bool resumable =
        up != kNoParent && !lost[up] && filled_[up] && !stale_[up] && task_[up] != 0 && fx.alive(holder_[up]);
    resume_[pos] = resumable ? 1 : 0;
    if (!resumable) stale_up_from(pos, fx);
  }
  fx.locate_unused();
  issue_ready(fx);
  return true;
}

bool TreeChain::task_done(std::uint64_t task) {
  if (auto pit = task_pos_.find(task); pit != task_pos_.end()) {
    const std::uint32_t pos = pit->second;
    done_[pos] = 1;
    // A child vacated while this task kept its progress, with nothing moved
    // in yet: the task finished, so it had folded all of the old child
    // before the child's holder died. That input is in the result.
    for (auto kid : shape_.children[pos]) {
      if (filled_[kid] || !resume_[kid]) continue;
      resume_[kid] = 0;
      filled_[kid] = 1;
      std::erase(vacant_, kid);
      used_.push_back(input_[kid]);
    }
  }
  return task == root_task_;
}

bool TreeChain::task_lost(std::uint64_t task, Effects& fx) {
  auto pit = task_pos_.find(task);
  if (pit == task_pos_.end()) return false;
  const std::uint32_t pos = pit->second;
  drop_position_task(pos, false, fx);  // it erased its output itself
  mark_whole_stale(pos, fx);
  stale_up_from(pos, fx);
  return true;
}

bool keep_for_root(bool callers_input, bool kept, const TreeChain& chain) {
  return callers_input && !kept && !chain.has_vacancy() && chain.used().size() + 1 < chain.k();
}

}  // namespace hoplite::scheduler
