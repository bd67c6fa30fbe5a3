// TaskRuntime: tasks on top of the object store. schedule() returns the
// result's reference at once (a future); later tasks take it as an
// argument before it exists, and the broadcast chains and reduce trees of
// the node form underneath from who gets what when.
//
// Every node of the cluster runs a TaskRuntime with the same functions
// (by name). Any node may schedule: it then owns those tasks. It places
// each one (least outstanding tasks of its own on a live node, preferring
// the holder of a large argument), sends it there, and remembers its
// arguments (lineage): when a node dies, the owner re-runs there whatever
// had not finished, and whatever had finished but left no copy anywhere,
// on another node under the same ObjectID. A task that fails (returns an
// error or throws) fails its result: get() and every task that takes it end
// with that error, naming the task, its node and the cause.
//
// What is not covered: the death of the owner itself (its tasks' lineage
// dies with it, as with Ray's owners); a task's side effects, which a
// re-run repeats.
//
// Ownership: the caller owns the runtime, and the Node, which must outlive
// it. The runtime takes the node's membership callback and message
// channel 1.
// Thread-safety: thread-safe; task functions run on threads of the
// runtime, several at once (TaskRuntimeOptions::slots of them computing).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "hoplite/node.h"
#include "hoplite/object_id.h"
#include "hoplite/reduce.h"
#include "hoplite/status.h"

namespace hoplite {

// An object that exists or will, and the rank that makes it (-1: unknown).
struct ObjectRef {
  ObjectID id;
  int producer = -1;
};

// A task argument: a reference to an object (possibly not produced yet),
// or a small value carried with the task itself.
struct TaskArg {
  static TaskArg ref(ObjectRef r) {
    TaskArg a;
    a.is_ref = true;
    a.object = r;
    return a;
  }
  static TaskArg value(std::span<const std::byte> b) {
    TaskArg a;
    a.bytes.assign(b.begin(), b.end());
    return a;
  }
  bool is_ref = false;
  ObjectRef object;
  std::vector<std::byte> bytes;
};

// How task arguments travel. kCollective: through the node's broadcast
// chains and reduce trees (Hoplite). kDirect: every get reads from the
// object's producer alone and a reduce folds every input at the task's
// node, which is what a task system's object store does without Hoplite
// (the baseline the paper compares against).
enum class TransferPolicy : std::uint8_t { kCollective = 0, kDirect = 1 };
const char* to_string(TransferPolicy p);

struct TaskRuntimeOptions {
  TransferPolicy transfer = TransferPolicy::kCollective;
  // Tasks computing at once on this node (a task waiting for an argument
  // does not hold one). 0: the number of hardware threads.
  unsigned slots = 0;
  // An argument at least this large that a node already holds draws its
  // task there, if that node is not busier than the least busy by more
  // than `locality_slack` tasks.
  std::uint64_t locality_threshold = 1u << 20;
  unsigned locality_slack = 1;
};

struct ScheduleOptions {
  // Run on this rank (-1: the scheduler decides). A pinned task whose rank
  // died is placed elsewhere.
  int rank = -1;
};

struct TaskStats {
  std::uint64_t scheduled = 0;   // tasks this runtime owns
  std::uint64_t executed = 0;    // task runs on this node
  std::uint64_t failed = 0;      // task runs on this node that failed
  std::uint64_t reexecuted = 0;  // runs this owner re-issued after a node died
};

class TaskRuntime;

// What a running task sees. Arguments are fetched when the task arrives;
// waiting for one gives the task's compute slot back until it is there.
// Thread-binding: the task's own thread.
class TaskContext {
 public:
  virtual ~TaskContext() = default;
  virtual int rank() const = 0;
  virtual Node& node() = 0;
  virtual TransferPolicy transfer() const = 0;
  virtual std::size_t arg_count() const = 0;
  // Argument i, complete in the local store (an inline value is a view of
  // the task's own copy). An argument whose task failed gives that error.
  [[nodiscard]] virtual Result<ObjectView> arg(std::size_t i) = 0;
  // The argument (by index) that became ready next among those not taken
  // yet, in the order they become ready: a reduce-like task folds each one
  // while later ones are still being computed. NotFound once all are taken.
  [[nodiscard]] virtual Result<std::size_t> next_ready() = 0;
  virtual const ObjectID& result_id() const = 0;
  // The result, written by streaming put (readers may pull what is
  // published while the rest is computed). Seal it before returning.
  [[nodiscard]] virtual Result<ObjectWriter> create_result(std::uint64_t size) = 0;
  [[nodiscard]] virtual Status set_result(std::span<const std::byte> bytes) = 0;
  // Reduces the first k (0: all) reference arguments into the result, with
  // the node's tree-chain reduce under kCollective, or by folding them here
  // as they arrive from their producers under kDirect.
  [[nodiscard]] virtual Result<ReduceResult> reduce_args(ReduceOp op, DataType dtype, std::size_t k = 0) = 0;
};

// Returns ok once the result is written, or the task's error.
using TaskFunction = std::function<Status(TaskContext&)>;
using TaskFunctions = std::map<std::string, TaskFunction>;

class TaskRuntime {
 public:
  [[nodiscard]] static Result<std::unique_ptr<TaskRuntime>> create(Node& node, TaskFunctions functions,
                                                                   TaskRuntimeOptions opts = {});
  virtual ~TaskRuntime() = default;

  // The result's reference, at once; the task runs when its node has it.
  [[nodiscard]] virtual Result<ObjectRef> schedule(const std::string& function, std::vector<TaskArg> args,
                                                   ScheduleOptions opts = {}) = 0;
  // Puts `bytes` here under a fresh id, for use as an argument.
  [[nodiscard]] virtual Result<ObjectRef> put(std::span<const std::byte> bytes) = 0;
  // The object, complete here; the error of the task that failed to make
  // it; a timeout. must_exist: NotFound at once if no copy is known.
  [[nodiscard]] virtual Result<ObjectView> get(const ObjectRef& ref, std::chrono::milliseconds timeout,
                                               GetOptions opts = {}) = 0;
  // The first k (0: all) of `inputs` to become ready, combined into
  // `target`: through the node's tree-chain reduce under kCollective (this
  // node coordinates), or fetched here from their producers and folded in
  // arrival order under kDirect. An input whose task failed is skipped
  // while k can still be met; then its error ends the reduce.
  [[nodiscard]] virtual Result<ReduceResult> reduce(const std::vector<ObjectRef>& inputs, const ObjectID& target,
                                                    ReduceOp op, DataType dtype, std::size_t k,
                                                    std::chrono::milliseconds timeout) = 0;
  // The indices of the first k of `refs` to be complete here (fetched by
  // the transfer policy), in the order they got there; a ref whose task
  // failed counts as ready (its get returns the error). Like ray.wait.
  [[nodiscard]] virtual Result<std::vector<std::size_t>> wait(const std::vector<ObjectRef>& refs, std::size_t k,
                                                              std::chrono::milliseconds timeout) = 0;
  // Forgets the object everywhere (and the lineage of the task that made it).
  [[nodiscard]] virtual Status remove(const ObjectRef& ref) = 0;
  // Called after the runtime's own handling of a membership change.
  virtual void on_membership_change(std::function<void(const MembershipEvent&)> cb) = 0;
  virtual TaskStats stats() const = 0;
  virtual Node& node() = 0;
};

}  // namespace hoplite
