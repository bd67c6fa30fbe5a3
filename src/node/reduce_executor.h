// ReduceExecutor: runs the reduce tasks sent to this node, chunk by chunk.
//
// A task computes output = input op upstream_1 op ... for one position of
// a tree-chain (or one link of a stripe chain). The output is published as
// a partial copy at once, so a parent task or any get of the target can
// pull it while it grows; each upstream is pulled in chunk-sized pieces
// into a small ring of scratch slots (pipeline_depth of them) and each
// landed chunk is folded into the output. A chunk of the output is valid
// once every upstream has been folded into it, and the valid prefix is
// announced to watchers like any other object's progress. An upstream
// whose holder dies keeps what it folded; the task tells its coordinator
// (ReduceLost) and waits for a retarget (the same computation moved: read
// only the chunks not yet folded) or a cancel.
//
// A coordinator that dies takes its reduces with it: its running tasks
// stop, and what its finished tasks left here (intermediates, stripes, the
// root's copy of the target) is withdrawn unless the coordinator released
// the reduce as complete (ReduceRelease). Gets of such a reduce's target on
// this node fail, and the target is removed from the directory.
//
// A task's own input may still be written here (a streaming put, another
// reduce's output; ReduceOptions::partial_inputs): each chunk is pulled from
// the upstreams only once the input's writer has published it.
//
// Owns: running tasks, their upstream streams, retargets and cancels that
// overtook their task, the outputs finished tasks left until their reduce
// is released; ReduceTask, ReduceCancel, ReduceRetarget, ReduceRelease and
// Progress on its own streams.
// Thread-binding: the progress thread.
#pragma once

#include <deque>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "node/context.h"

namespace hoplite::node {

class Composites;
class DirectoryClient;
class Fetcher;
class ObjectServer;

class ReduceExecutor final : public Component {
 public:
  ReduceExecutor(NodeContext& ctx, Fetcher& fetcher, ObjectServer& server, Composites& composites,
                 DirectoryClient& dir);

  void on_peer_lost(Rank r) override;

 private:
  struct Upstream {
    ObjectID id;
    Rank holder = 0;
    std::uint64_t offset = 0;
    std::shared_ptr<store::ObjectEntry> scratch;  // pipeline_depth chunk slots
    std::vector<std::uint32_t> free_slots;
    std::uint64_t remote_offset = 0;
    std::uint64_t sender_ready = 0;
    std::uint64_t next_chunk = 0;
    std::uint32_t in_flight = 0;
    bool finished = false;
    int watch_retries = 0;
    std::uint64_t stream = 0;
    // Chunks of this upstream folded so far: a retarget (the upstream's
    // holder died and the same computation moved) reads only the rest.
    std::vector<std::uint8_t> folded;
    bool orphaned = false;  // the holder died; waiting for a retarget or a cancel
    std::uint64_t gen = 0;  // reads of an older holder are not folded
  };
  struct Exec {
    msg::ReduceTask task;
    std::shared_ptr<store::ObjectEntry> input, output;
    std::vector<Upstream> ups;
    std::vector<std::uint8_t> combined;  // upstreams folded into each chunk
    std::uint64_t chunk = 0;
    std::uint64_t nchunks = 0;
    std::uint64_t contiguous = 0;  // chunks complete from the start
    // No upstreams (k = 1) and an input still being written: the output
    // is the input copied as it grows; bytes copied so far.
    bool copy_only = false;
    std::uint64_t copied = 0;
  };

  void on_task(const msg::ReduceTask& t);
  void on_progress(const msg::Progress& p, Rank from);
  void pump(std::uint64_t task, std::size_t up);
  void on_chunk(std::uint64_t task, std::size_t up, std::uint64_t chunk, std::uint32_t slot,
                std::uint64_t gen, Status st);
  void maybe_finish_up(std::uint64_t task, std::size_t up);
  // The local copy of `id` grew, or went (`gone`): tasks whose input it is
  // and that wait for its bytes go on, or fail.
  void on_local(const ObjectID& id, bool gone);
  // Bytes [0, n) of the task's range of its input are written here.
  static std::uint64_t input_ready(const Exec& ex);
  void complete(std::uint64_t task);
  void orphan_upstream(std::uint64_t task, std::size_t up, Rank failed);
  void on_retarget(const msg::ReduceRetarget& m);
  void on_cancel(const msg::ReduceCancel& m);
  void drop(std::uint64_t task, bool withdrawn);
  void fail(std::uint64_t task, const Status& why);
  void publish_complete(const store::ObjectEntry& output, const msg::ReduceTask& t);
  // A finished task's output, kept until its coordinator releases the reduce.
  void leave(const msg::ReduceTask& t, const std::shared_ptr<store::ObjectEntry>& output);
  // Erases `id` here and from the directory if it is still `entry`; false
  // if it was not.
  bool withdraw(const ObjectID& id, const std::shared_ptr<store::ObjectEntry>& entry, bool withdrawn);
  // The coordinator of the reduce into `target` died before releasing it.
  void abandon_target(const ObjectID& target, Rank coordinator);

  NodeContext& ctx_;
  Fetcher& fetcher_;
  ObjectServer& server_;
  Composites& composites_;
  DirectoryClient& dir_;
  std::uint8_t stream_owner_ = 0;
  std::unordered_map<std::uint64_t, Exec> execs_;
  std::unordered_map<std::uint64_t, std::pair<std::uint64_t, std::size_t>> pulls_;  // by stream
  // Tasks whose input is still being written here, by input.
  std::unordered_map<ObjectID, std::unordered_set<std::uint64_t>> awaiting_input_;
  // Retargets for tasks that have not arrived yet, and tasks cancelled
  // before they arrived (both possible when a task is forwarded).
  // Both bounded by kMaxPending (a peer can send them at will).
  static constexpr std::size_t kMaxPending = 65536;
  std::unordered_map<std::uint64_t, msg::ReduceRetarget> pending_retargets_;
  std::unordered_set<std::uint64_t> cancelled_;
  std::deque<std::uint64_t> cancel_order_;  // cancelled_, oldest first
  // Outputs of finished tasks whose reduce is not released yet. An entry
  // whose object went another way (removed when its reduce completed,
  // replaced by a restart) is dead weight: they are pruned whenever the
  // list doubles, so it stays within twice what the store holds.
  struct Left {
    Rank coordinator = 0;
    ObjectID target, output;
    std::weak_ptr<store::ObjectEntry> entry;
  };
  std::vector<Left> left_;
  std::size_t prune_at_ = 64;
};

}  // namespace hoplite::node
