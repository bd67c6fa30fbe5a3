// ReduceCoordinator: plans and repairs the reduces this node called.
//
// It sends Locate for every input to its shard; each LocateReply is an
// arrival. Arrival i takes position shape.fill[i] of a tree-chain
// (scheduler/reduce_planner.h). A position without children that is not
// the root needs no work: its partial result is the input object itself.
// Any other position becomes a ReduceTask sent to the input's holder (the
// ReduceExecutor there), naming the upstream objects (its children's
// results) and where they are. The root's output is the target. When the
// root task reports done and the target is complete on this node too (the
// caller reads it here; a root elsewhere streams it over), the reduce is
// complete and the intermediates are removed. An allreduce whose inputs all exist at once is striped instead:
// one chain per stripe through every holder, the target published as a
// composite of the stripes.
//
// Failures: a dead holder's positions that are still needed are vacated
// and refilled by the next arrival. The same input back (same id, same
// bytes) resumes: the parent keeps what it folded and the lost position is
// computed again only from there (ReduceRetarget). Another input
// recomputes the path above the position (ReduceCancel, then fresh tasks);
// everything below and beside it keeps running. A striped allreduce keeps
// the stripes that are done on live holders and computes only the others
// again, over the survivors and the lost inputs' re-puts
// (scheduler::plan_stripe_repair); the target's composite record is
// declared again with the kept parts unchanged.
//
// Small inputs skip all of that: Locate asks for the bytes of inputs the
// directory holds inline (up to a size for which the coordinator's link
// takes them all in about 4 ms), and the coordinator folds the
// first k to arrive itself and puts the target. Nothing runs elsewhere, so
// a holder's death after its answer costs nothing.
//
// Owns: the reduces in progress and their locates and tasks; LocateReply,
// ReduceDone and ReduceLost.
// Thread-binding: the progress thread.
#pragma once

#include <future>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "hoplite/object_view.h"
#include "hoplite/reduce.h"
#include "node/context.h"
#include "scheduler/tree_chain.h"

namespace hoplite::node {

class DirectoryClient;
class Fetcher;
class Membership;
class ObjectServer;

class ReduceCoordinator final : public Component {
 public:
  using Done = std::shared_ptr<std::promise<Result<ReduceResult>>>;
  ReduceCoordinator(NodeContext& ctx, Membership& membership, Fetcher& fetcher, ObjectServer& server,
                    DirectoryClient& dir);

  // Progress thread. `deadline`: kept from an earlier attempt.
  std::uint64_t start(ReduceOptions o, Done done,
                      std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

  void on_shards_moved(const std::vector<bool>& old_alive) override;
  void on_peer_failed(Rank r) override;
  void on_stop() override;

 private:
  struct Reduction {
    ReduceOptions opts;
    std::size_t k = 0;
    std::uint64_t size = 0;
    // Positions and their repair state; set at the first arrival.
    std::optional<scheduler::TreeChain> chain;
    std::vector<ObjectID> striped_used;  // a striped attempt's inputs
    // Folded here (inline inputs): the result so far and its inputs.
    bool local = false;
    std::vector<std::uint8_t> acc;
    std::vector<ObjectID> local_used;
    std::uint32_t inline_max = 0;  // asked of every Locate
    std::vector<ObjectID> intermediates;
    // Every task issued and not yet done, for cancelling.
    std::unordered_map<std::uint64_t, std::pair<Rank, ObjectID>> task_where;
    // Every rank sent a task of this reduce (any attempt): told when it is
    // complete (ReduceRelease), so that they keep its result if we die.
    std::unordered_set<Rank> ran;
    int repairs = 0;
    // The caller stops waiting at the deadline; the coordinator then fails
    // the reduce too, which cancels its tasks (a lost input that is never
    // re-put would otherwise keep them, and their memory, forever).
    std::chrono::steady_clock::time_point deadline;
    std::shared_ptr<asio::steady_timer> deadline_timer;
    std::optional<msg::LocateReply> reserved;  // a local input kept for the root
    // Striping (allreduce): arrivals wait here until all are in or the
    // decision window closes.
    bool deciding = false;
    bool striped = false;
    std::chrono::steady_clock::time_point started, decide_by;
    std::shared_ptr<asio::steady_timer> decide_timer;
    std::vector<msg::LocateReply> pending;
    // One per stripe of a striped attempt: its part, where it ends, and
    // its last task until that reports done.
    struct StripeRun {
      ObjectID part;
      Rank end = 0;
      std::uint64_t offset = 0, length = 0;
      std::uint64_t task = 0;
      bool done = false;
    };
    std::vector<StripeRun> stripes;
    std::map<Rank, std::vector<ObjectID>> stripe_inputs;  // by holder, as the plan uses them
    std::unordered_set<ObjectID> awaiting;                // lost inputs located again for a repair
    std::uint32_t stripes_kept = 0, stripes_redone = 0;
    std::unordered_set<Rank> striped_holders;
    int attempt = 0;
    Done done;
    bool finished = false;
    // The tree-chain is done but its root ran on `root_holder`: the result,
    // kept until the target is complete here (`land`).
    std::optional<ReduceResult> landing;
    Rank root_holder = 0;
    std::shared_ptr<hoplite::detail::GetState> land;
    bool relaunching = false;  // waiting for the target's removal to be acked
  };

  class ChainEffects;
  static const std::vector<ObjectID>& used(const Reduction& c);
  msg::Locate locate_msg(std::uint64_t req, const ObjectID& id) const;
  void on_locate_reply(const msg::LocateReply& r);
  void arrive(std::uint64_t rid, const msg::LocateReply& r);
  void fold_here(std::uint64_t rid, const msg::LocateReply& r);
  void arm_decision(std::uint64_t rid);
  void run_striped(std::uint64_t rid);
  // Sends the tasks of stripe j along `hops` (input, holder), in order.
  void issue_stripe(std::uint64_t rid, std::size_t j, const std::vector<std::pair<ObjectID, Rank>>& hops);
  void publish_stripes(std::uint64_t rid);
  // A striped attempt lost holders: keep what is done, locate the lost
  // inputs again, then redo the rest (apply_stripe_repair).
  void repair_stripes(std::uint64_t rid, const std::string& why);
  void stripe_input_back(std::uint64_t rid, const msg::LocateReply& r);
  void apply_stripe_repair(std::uint64_t rid);
  void stripes_done(std::uint64_t rid);
  void locate(std::uint64_t rid, const ObjectID& id);
  void restart_reduce(std::uint64_t rid, const std::string& why);
  void repair_reduce(std::uint64_t rid, const std::string& why);
  void locate_unused(std::uint64_t rid);
  void issue_task(std::uint64_t rid, std::uint32_t pos);
  msg::ReduceTask make_task(std::uint64_t rid, std::uint32_t pos, bool partial = false);
  void resume_position(std::uint64_t rid, std::uint32_t pos, const ObjectID& old_output);
  void cancel_open_tasks(Reduction& c);
  void finish_reduce(std::uint64_t rid, Result<ReduceResult> r);
  void land(std::uint64_t rid, ReduceResult res, Rank root_holder);
  void on_landed(const std::shared_ptr<hoplite::detail::GetState>& st);
  void relaunch(std::uint64_t rid, const std::string& why);
  void on_reduce_done(const msg::ReduceDone& d);
  // Where task `task` of one of our reduces runs; nullopt for a task of no
  // live attempt.
  std::optional<Rank> task_rank(std::uint64_t task) const;

  NodeContext& ctx_;
  Membership& membership_;
  Fetcher& fetcher_;
  ObjectServer& server_;
  DirectoryClient& dir_;
  std::uint64_t next_reduce_ = 1;
  std::unordered_map<std::uint64_t, Reduction> reduces_;
  std::unordered_map<std::uint64_t, std::uint64_t> locate_to_reduce_;
  std::unordered_map<std::uint64_t, ObjectID> locate_ids_;  // request -> input, to re-route
  std::unordered_map<std::uint64_t, std::uint64_t> task_to_reduce_;
};

}  // namespace hoplite::node
