// The task runtime (include/hoplite/task.h): an owner side (placement,
// lineage, re-execution after a node's death) and a worker side (task
// threads, compute slots, argument waits that see failures).
#include <atomic>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "common/log.h"
#include "common/wire.h"
#include "hoplite/task.h"
#include "reduce/kernels.h"
#include "task/placement.h"
#include "task/task_messages.h"

namespace hoplite {

const char* to_string(TransferPolicy p) {
  return p == TransferPolicy::kDirect ? "direct" : "collective";
}

namespace task {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long a task waits for one argument, and how often every wait looks
// again at what can end it besides its own signal (a stop, a failure).
constexpr milliseconds kArgTimeout{std::chrono::minutes(10)};
constexpr milliseconds kRecheck{100};
// Failures remembered per node: enough for any graph in flight.
constexpr std::size_t kMaxFailures = 65536;

// Wakes every waiter of this runtime when a get completes or a failure
// arrives. Shared with the gets' on_ready callbacks, which may outlive the
// runtime.
struct Signal {
  std::mutex mu;
  std::condition_variable cv;
  void notify() {
    { std::lock_guard lock(mu); }
    cv.notify_all();
  }
};

// Compute slots: a counting semaphore.
class Slots {
 public:
  explicit Slots(unsigned n) : free_(n) {}
  void acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      ++free_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  unsigned free_;
};

Status from_wire(std::uint16_t code, const std::string& message) {
  return Status(wire::status_code(code), message);
}

class Runtime;

// One run of a task on this node: its arguments' gets, its compute slot,
// whether it wrote its result.
// Ownership: on the stack of the task's thread, which the Runtime owns.
// Thread-binding: that thread.
class Context final : public TaskContext {
 public:
  Context(Runtime& rt, Submit spec);
  ~Context() override;

  int rank() const override;
  Node& node() override;
  TransferPolicy transfer() const override { return static_cast<TransferPolicy>(spec_.transfer); }
  std::size_t arg_count() const override { return spec_.args.size(); }
  Result<ObjectView> arg(std::size_t i) override;
  Result<std::size_t> next_ready() override;
  const ObjectID& result_id() const override { return spec_.result; }
  Result<ObjectWriter> create_result(std::uint64_t size) override;
  Status set_result(std::span<const std::byte> bytes) override;
  Result<ReduceResult> reduce_args(ReduceOp op, DataType dtype, std::size_t k) override;

  const Submit& spec() const { return spec_; }
  // Put or reduced into place; created_result(): a writer was made, which
  // counts once sealed.
  bool wrote_result() const { return wrote_; }
  bool created_result() const { return created_; }
  void take_slot();
  void give_slot();
  bool has_slot() const { return slot_; }

 private:
  void start_gets();

  Runtime& rt_;
  Submit spec_;
  std::vector<std::optional<ObjectFuture>> gets_;
  std::vector<bool> taken_;
  bool started_ = false;
  bool slot_ = false;
  bool wrote_ = false;
  bool created_ = false;
};

// Both sides of the task runtime on one node. As an owner: the tasks this
// node scheduled (their lineage), their placement and outstanding counts,
// re-execution when a node dies. As a worker: the tasks sent here, each on
// its own thread, the compute slots, and the failures heard of.
// Ownership: owned by the user; holds a reference to the Node, which
// outlives it. Owns its task threads and joins them on destruction.
// Thread-binding: thread-safe (one mutex over the owner and worker state);
// messages arrive on the node's message thread, membership events on its
// callback thread, tasks run on their own threads.
class Runtime final : public TaskRuntime {
 public:
  Runtime(Node& node, TaskFunctions fns, TaskRuntimeOptions opts)
      : node_(node),
        fns_(std::move(fns)),
        opts_(opts),
        signal_(std::make_shared<Signal>()),
        slots_(opts.slots ? opts.slots : std::max(1u, std::thread::hardware_concurrency())),
        outstanding_(static_cast<std::size_t>(node.world_size()), 0),
        next_task_((static_cast<std::uint64_t>(node.rank()) << 48) | 1),
        rotate_(static_cast<unsigned>(node.rank())) {}

  ~Runtime() override;
  void start();

  Result<ObjectRef> schedule(const std::string& function, std::vector<TaskArg> args,
                             ScheduleOptions opts) override;
  Result<ObjectRef> put(std::span<const std::byte> bytes) override;
  Result<ObjectView> get(const ObjectRef& ref, milliseconds timeout, GetOptions opts) override;
  Status remove(const ObjectRef& ref) override;
  Result<ReduceResult> reduce(const std::vector<ObjectRef>& inputs, const ObjectID& target, ReduceOp op,
                              DataType dtype, std::size_t k, milliseconds timeout) override;
  Result<std::vector<std::size_t>> wait(const std::vector<ObjectRef>& refs, std::size_t k,
                                        milliseconds timeout) override;
  void on_membership_change(std::function<void(const MembershipEvent&)> cb) override {
    std::lock_guard lock(mu_);
    user_cb_ = std::move(cb);
  }
  TaskStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }
  Node& node() override { return node_; }

  // Worker side, for Context.
  ObjectFuture start_get(const ObjectID& id, int producer, TransferPolicy policy, GetOptions opts = {});
  // The object once `f` has it, the failure recorded for `id`, a stop or
  // a timeout at `deadline`.
  Result<ObjectView> wait(const ObjectFuture& f, const ObjectID& id, Clock::time_point deadline);
  // The runtime's one wait for "which is ready next": `pick` is asked
  // (under the signal's mutex) whenever a get completes or a failure is
  // heard, and at least every kRecheck, until it names an index, the
  // runtime stops, or `deadline` passes (a timeout saying `what`).
  Result<std::size_t> wait_until(const std::function<std::optional<std::size_t>()>& pick,
                                 Clock::time_point deadline, const std::string& what);
  std::optional<Status> failure_of(const ObjectID& id) const {
    std::lock_guard lock(mu_);
    auto it = failed_.find(id);
    if (it == failed_.end()) return std::nullopt;
    return it->second;
  }
  bool stopping() const { return stopping_.load(); }
  Signal& signal() { return *signal_; }
  Slots& slots() { return slots_; }

 private:
  struct Record {
    std::string function;
    std::vector<TaskArg> args;
    ObjectID result;
    int rank = -1;
    int pinned = -1;
    std::uint32_t attempt = 0;
    bool done = false;
  };
  struct TaskThread {
    std::thread t;
    std::shared_ptr<std::atomic<bool>> finished;
  };

  void on_message(int from, std::span<const std::byte> payload);
  void on_submit(int from, Submit s);
  void on_done(int from, const Done& d);
  void record_failure(const ObjectID& id, Status st);
  void on_membership(const MembershipEvent& e);
  void run(int owner, Submit s);
  void send(int to, const TaskMessage& m);
  // Under mu_: where the task goes, and its Submit.
  int choose(const Record& rec);
  Submit submit_of(std::uint64_t task, const Record& rec) const;
  std::vector<bool> live_ranks() const;
  // Where `ref` is made now (a re-run task's result moved).
  int producer_of(const ObjectRef& ref) const;
  Result<ReduceResult> fold_here(const std::vector<ObjectRef>& inputs, const ObjectID& target, ReduceOp op,
                                 DataType dtype, std::size_t k, Clock::time_point deadline);

  Node& node_;
  const TaskFunctions fns_;
  const TaskRuntimeOptions opts_;
  std::shared_ptr<Signal> signal_;
  Slots slots_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;  // guards everything below
  // Owner side.
  std::map<std::uint64_t, Record> owned_;
  std::unordered_map<ObjectID, std::uint64_t> by_result_;
  std::unordered_map<ObjectID, std::uint64_t> sizes_;  // results and puts of known size
  std::vector<unsigned> outstanding_;
  std::uint64_t next_task_;
  unsigned rotate_;
  // Worker side.
  std::unordered_map<ObjectID, Status> failed_;
  std::deque<ObjectID> failed_order_;
  std::set<std::pair<std::uint64_t, std::uint32_t>> running_;
  std::list<TaskThread> threads_;
  std::function<void(const MembershipEvent&)> user_cb_;
  TaskStats stats_;
  // Cleared (under its mutex) by the destructor, so a membership callback
  // that is already queued finds no runtime.
  struct Guard {
    std::mutex mu;
    Runtime* rt = nullptr;
  };
  std::shared_ptr<Guard> guard_ = std::make_shared<Guard>();
};

// ---------------------------------------------------------------- context

Context::Context(Runtime& rt, Submit spec)
    : rt_(rt), spec_(std::move(spec)), gets_(spec_.args.size()), taken_(spec_.args.size(), false) {}

Context::~Context() {
  if (slot_) give_slot();
}

int Context::rank() const {
  return rt_.node().rank();
}
Node& Context::node() {
  return rt_.node();
}

void Context::take_slot() {
  rt_.slots().acquire();
  slot_ = true;
}
void Context::give_slot() {
  slot_ = false;
  rt_.slots().release();
}

// Every reference argument is fetched at once, the first time the task
// asks for one: a task that reduces through the node never fetches any.
void Context::start_gets() {
  if (started_) return;
  started_ = true;
  for (std::size_t i = 0; i < spec_.args.size(); ++i) {
    const auto& a = spec_.args[i];
    if (a.is_ref) gets_[i] = rt_.start_get(a.id, a.producer, transfer());
  }
}

Result<ObjectView> Context::arg(std::size_t i) {
  if (i >= spec_.args.size()) {
    return invalid_argument("argument " + std::to_string(i) + " of " + std::to_string(spec_.args.size()));
  }
  const auto& a = spec_.args[i];
  if (!a.is_ref) {
    return ObjectView(ObjectID(), reinterpret_cast<const std::byte*>(a.bytes.data()), a.bytes.size(), nullptr,
                      -1);
  }
  start_gets();
  const bool held = slot_;
  if (held && !gets_[i]->ready()) give_slot();
  auto r = rt_.wait(*gets_[i], a.id, Clock::now() + kArgTimeout);
  if (held && !slot_) take_slot();
  if (!r.is_ok()) {
    return Status(r.status().code(),
                  "argument " + std::to_string(i) + " (" + a.id.short_hex() + "): " + r.status().message());
  }
  return r;
}

Result<std::size_t> Context::next_ready() {
  start_gets();
  if (std::find(taken_.begin(), taken_.end(), false) == taken_.end()) {
    return not_found("every argument was taken");
  }
  auto pick = [&]() -> std::optional<std::size_t> {
    for (std::size_t i = 0; i < spec_.args.size(); ++i) {
      if (taken_[i]) continue;
      const auto& a = spec_.args[i];
      if (!a.is_ref || gets_[i]->ready() || rt_.failure_of(a.id)) return i;
    }
    return std::nullopt;
  };
  auto got = pick();
  if (!got) {
    const bool held = slot_;
    if (held) give_slot();
    auto r = rt_.wait_until(pick, Clock::now() + kArgTimeout, "no argument became ready");
    if (held) take_slot();
    if (!r.is_ok()) return r.status();
    got = *r;
  }
  taken_[*got] = true;
  return *got;
}

Result<ObjectWriter> Context::create_result(std::uint64_t size) {
  auto w = rt_.node().create(spec_.result, size);
  if (w.is_ok()) created_ = true;
  return w;
}

Status Context::set_result(std::span<const std::byte> bytes) {
  auto st = rt_.node().put(spec_.result, bytes);
  if (st.is_ok()) wrote_ = true;
  return st;
}

Result<ReduceResult> Context::reduce_args(ReduceOp op, DataType dtype, std::size_t k) {
  std::vector<ObjectRef> inputs;
  for (const auto& a : spec_.args) {
    if (a.is_ref) inputs.push_back(ObjectRef{a.id, a.producer});
  }
  if (inputs.empty()) return invalid_argument("reduce_args: the task has no reference arguments");
  const bool held = slot_;
  if (held) give_slot();
  auto r = rt_.reduce(inputs, spec_.result, op, dtype, k, kArgTimeout);
  if (held) take_slot();
  if (r.is_ok()) wrote_ = true;
  return r;
}

// ---------------------------------------------------------------- runtime

void Runtime::start() {
  guard_->rt = this;
  node_.on_message(kTaskChannel, [this](int from, std::span<const std::byte> p) { on_message(from, p); });
  node_.on_membership_change([g = guard_](const MembershipEvent& e) {
    std::lock_guard lock(g->mu);
    if (g->rt) g->rt->on_membership(e);
  });
}

Runtime::~Runtime() {
  stopping_ = true;
  signal_->notify();
  node_.on_message(kTaskChannel, nullptr);
  {
    std::lock_guard lock(guard_->mu);
    guard_->rt = nullptr;
  }
  std::list<TaskThread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.t.join();
}

std::vector<bool> Runtime::live_ranks() const {
  std::vector<bool> alive(static_cast<std::size_t>(node_.world_size()), true);
  for (int r : node_.failed_ranks()) alive[static_cast<std::size_t>(r)] = false;
  return alive;
}

int Runtime::choose(const Record& rec) {
  PlacementInput in;
  in.alive = live_ranks();
  if (rec.pinned >= 0 && rec.pinned < node_.world_size() && in.alive[static_cast<std::size_t>(rec.pinned)]) {
    return rec.pinned;
  }
  in.outstanding = outstanding_;
  in.slack = opts_.locality_slack;
  in.rotate = rotate_++;
  for (const auto& a : rec.args) {
    if (!a.is_ref || a.object.producer < 0) continue;
    auto s = sizes_.find(a.object.id);
    if (s != sizes_.end() && s->second >= opts_.locality_threshold)
      in.large_args.emplace_back(a.object.producer, s->second);
  }
  return place(in);
}

Submit Runtime::submit_of(std::uint64_t task, const Record& rec) const {
  Submit s;
  s.task = task;
  s.attempt = rec.attempt;
  s.result = rec.result;
  s.function = rec.function;
  s.transfer = static_cast<std::uint8_t>(opts_.transfer);
  for (const auto& a : rec.args) {
    WireArg w;
    w.is_ref = a.is_ref;
    if (a.is_ref) {
      w.id = a.object.id;
      // A re-run task's result is made elsewhere now.
      auto it = by_result_.find(a.object.id);
      w.producer = it != by_result_.end() ? owned_.at(it->second).rank : a.object.producer;
    } else {
      auto* b = reinterpret_cast<const std::uint8_t*>(a.bytes.data());
      w.bytes.assign(b, b + a.bytes.size());
    }
    s.args.push_back(std::move(w));
  }
  return s;
}

void Runtime::send(int to, const TaskMessage& m) {
  auto bytes = encode(m);
  auto st = node_.send_message(to, kTaskChannel, std::as_bytes(std::span(bytes)));
  if (!st.is_ok()) LOG_WARN("task message to rank " << to << ": " << st.to_string());
}

Result<ObjectRef> Runtime::schedule(const std::string& function, std::vector<TaskArg> args,
                                    ScheduleOptions opts) {
  if (function.empty() || function.size() > kMaxName)
    return invalid_argument("task function name '" + function + "'");
  if (args.size() > kMaxArgs) return invalid_argument(std::to_string(args.size()) + " task arguments");
  Submit s;
  ObjectRef ref;
  int to;
  {
    std::lock_guard lock(mu_);
    const std::uint64_t task = next_task_++;
    Record rec;
    rec.function = function;
    rec.args = std::move(args);
    rec.result = ObjectID::random();
    rec.pinned = opts.rank;
    to = choose(rec);
    if (to < 0) return peer_failure("no live node to run " + function);
    rec.rank = to;
    ++outstanding_[static_cast<std::size_t>(to)];
    s = submit_of(task, rec);
    ref = ObjectRef{rec.result, to};
    by_result_[rec.result] = task;
    owned_.emplace(task, std::move(rec));
    ++stats_.scheduled;
  }
  send(to, s);
  return ref;
}

Result<ObjectRef> Runtime::put(std::span<const std::byte> bytes) {
  ObjectRef ref{ObjectID::random(), node_.rank()};
  HOPLITE_RETURN_IF_ERROR(node_.put(ref.id, bytes));
  std::lock_guard lock(mu_);
  sizes_[ref.id] = bytes.size();
  return ref;
}

ObjectFuture Runtime::start_get(const ObjectID& id, int producer, TransferPolicy policy, GetOptions opts) {
  if (policy == TransferPolicy::kDirect && producer >= 0 && producer != node_.rank()) {
    opts.after = producer;
    opts.direct = true;
  }
  auto f = node_.get(id, opts);
  f.on_ready([s = signal_] { s->notify(); });
  return f;
}

Result<ObjectView> Runtime::wait(const ObjectFuture& f, const ObjectID& id, Clock::time_point deadline) {
  std::unique_lock lock(signal_->mu);
  for (;;) {
    if (f.ready()) {
      lock.unlock();
      return f.wait(milliseconds(0));
    }
    if (auto st = failure_of(id)) return *st;
    if (stopping_) return Status(StatusCode::kCancelled, "the task runtime is stopping");
    const auto now = Clock::now();
    if (now >= deadline) return timeout_error("get of " + id.short_hex() + ": not ready in time");
    signal_->cv.wait_until(lock, std::min(deadline, now + kRecheck));
  }
}

Result<ObjectView> Runtime::get(const ObjectRef& ref, milliseconds timeout, GetOptions opts) {
  auto f = start_get(ref.id, producer_of(ref), opts_.transfer, opts);
  auto r = wait(f, ref.id, Clock::now() + timeout);
  if (!r.is_ok() && r.status().code() == StatusCode::kTimeout) {
    return timeout_error("get of " + ref.id.short_hex() + ": no complete copy after " +
                         std::to_string(timeout.count()) + " ms");
  }
  return r;
}

Result<std::size_t> Runtime::wait_until(const std::function<std::optional<std::size_t>()>& pick,
                                        Clock::time_point deadline, const std::string& what) {
  std::unique_lock lock(signal_->mu);
  for (;;) {
    if (auto i = pick()) return *i;
    if (stopping_) return Status(StatusCode::kCancelled, "the task runtime is stopping");
    const auto now = Clock::now();
    if (now >= deadline) return timeout_error(what);
    signal_->cv.wait_until(lock, std::min(deadline, now + kRecheck));
  }
}

int Runtime::producer_of(const ObjectRef& ref) const {
  std::lock_guard lock(mu_);
  auto it = by_result_.find(ref.id);
  return it != by_result_.end() ? owned_.at(it->second).rank : ref.producer;
}

Result<std::vector<std::size_t>> Runtime::wait(const std::vector<ObjectRef>& refs, std::size_t k,
                                               milliseconds timeout) {
  if (k == 0 || k > refs.size()) k = refs.size();
  const auto deadline = Clock::now() + timeout;
  std::vector<ObjectFuture> gets;
  for (const auto& r : refs) gets.push_back(start_get(r.id, producer_of(r), opts_.transfer));
  std::vector<std::size_t> ready;
  std::vector<bool> seen(refs.size(), false);
  while (ready.size() < k) {
    auto i = wait_until(
        [&]() -> std::optional<std::size_t> {
          for (std::size_t j = 0; j < refs.size(); ++j) {
            if (!seen[j] && (gets[j].ready() || failure_of(refs[j].id))) return j;
          }
          return std::nullopt;
        },
        deadline,
        std::to_string(ready.size()) + " of the " + std::to_string(k) + " objects waited for after " +
            std::to_string(timeout.count()) + " ms");
    if (!i.is_ok()) return i.status();
    seen[*i] = true;
    ready.push_back(*i);
  }
  return ready;
}

Result<ReduceResult> Runtime::reduce(const std::vector<ObjectRef>& inputs, const ObjectID& target,
                                     ReduceOp op, DataType dtype, std::size_t k, milliseconds timeout) {
  if (inputs.empty()) return invalid_argument("a reduce of no inputs");
  if (k == 0 || k > inputs.size()) k = inputs.size();
  const auto deadline = Clock::now() + timeout;
  if (opts_.transfer == TransferPolicy::kDirect) return fold_here(inputs, target, op, dtype, k, deadline);

  ReduceOptions ro;
  for (const auto& r : inputs) ro.inputs.push_back(r.id);
  ro.target = target;
  ro.op = op;
  ro.dtype = dtype;
  ro.k = k;
  ro.timeout = timeout;
  auto fut = node_.reduce_async(ro);
  // The node's reduce knows nothing of task failures: watch for inputs
  // that can no longer arrive.
  for (;;) {
    if (fut.wait_for(milliseconds(20)) == std::future_status::ready) return fut.get();
    std::size_t failed = 0;
    std::optional<Status> first;
    for (const auto& r : inputs) {
      if (auto f = failure_of(r.id)) {
        ++failed;
        if (!first) first = Status(f->code(), "reduce input " + r.id.short_hex() + ": " + f->message());
      }
    }
    if (inputs.size() - failed < k) return *first;
    if (stopping_) return Status(StatusCode::kCancelled, "the task runtime is stopping");
    if (Clock::now() >= deadline + milliseconds(1000))
      return timeout_error("reduce into " + target.short_hex());
  }
}

// kDirect: every input comes from its producer to this node, and is
// folded here in arrival order.
Result<ReduceResult> Runtime::fold_here(const std::vector<ObjectRef>& inputs, const ObjectID& target,
                                        ReduceOp op, DataType dtype, std::size_t k,
                                        Clock::time_point deadline) {
  std::vector<ObjectFuture> gets;
  for (const auto& r : inputs) gets.push_back(start_get(r.id, producer_of(r), opts_.transfer));
  ReduceResult out;
  std::vector<std::byte> acc;
  std::vector<bool> taken(inputs.size(), false);
  std::size_t failed = 0;
  Status first_error;
  while (out.used.size() < k) {
    auto next = wait_until(
        [&]() -> std::optional<std::size_t> {
          for (std::size_t i = 0; i < inputs.size(); ++i) {
            if (!taken[i] && (gets[i].ready() || failure_of(inputs[i].id))) return i;
          }
          return std::nullopt;
        },
        deadline, "reduce into " + target.short_hex() + ": inputs not ready in time");
    if (!next.is_ok()) return next.status();
    taken[*next] = true;
    auto v = wait(gets[*next], inputs[*next].id, deadline);
    if (!v.is_ok()) {
      if (first_error.is_ok()) {
        first_error = Status(v.status().code(),
                             "reduce input " + inputs[*next].id.short_hex() + ": " + v.status().message());
      }
      if (inputs.size() - ++failed < k) return first_error;
      continue;
    }
    if (acc.empty()) {
      acc.assign(v->bytes().begin(), v->bytes().end());
    } else {
      if (v->size() != acc.size()) {
        return invalid_argument("reduce input " + inputs[*next].id.short_hex() + " has " +
                                std::to_string(v->size()) + " bytes, the first had " +
                                std::to_string(acc.size()));
      }
      reduce::apply(op, dtype, acc.data(), acc.data(), v->data(), acc.size());
    }
    out.used.push_back(inputs[*next].id);
  }
  HOPLITE_RETURN_IF_ERROR(node_.put(target, acc));
  return out;
}

Status Runtime::remove(const ObjectRef& ref) {
  {
    std::lock_guard lock(mu_);
    auto it = by_result_.find(ref.id);
    if (it != by_result_.end()) {
      auto& rec = owned_.at(it->second);
      if (!rec.done) --outstanding_[static_cast<std::size_t>(rec.rank)];
      owned_.erase(it->second);
      by_result_.erase(it);
    }
    sizes_.erase(ref.id);
  }
  return node_.remove(ref.id, RemoveScope::kGlobal);
}

void Runtime::on_message(int from, std::span<const std::byte> payload) {
  auto m = decode({reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()});
  if (!m.is_ok()) {
    LOG_WARN("task message from rank " << from << " refused: " << m.status().to_string());
    return;
  }
  if (auto* s = std::get_if<Submit>(&m.value())) return on_submit(from, std::move(*s));
  if (auto* d = std::get_if<Done>(&m.value())) return on_done(from, *d);
  const auto& f = std::get<Failed>(m.value());
  record_failure(f.result, from_wire(f.code, f.message));
}

void Runtime::record_failure(const ObjectID& id, Status st) {
  {
    std::lock_guard lock(mu_);
    if (failed_.emplace(id, std::move(st)).second) {
      failed_order_.push_back(id);
      if (failed_order_.size() > kMaxFailures) {
        failed_.erase(failed_order_.front());
        failed_order_.pop_front();
      }
    }
  }
  signal_->notify();
}

void Runtime::on_submit(int from, Submit s) {
  if (stopping_) return;
  // A result already here (the owner re-sent a task that finished) needs
  // no second run.
  if (node_.contains(s.result)) {
    send(from, Done{s.task, s.attempt, s.result, 0, "", node_.local_progress(s.result)});
    return;
  }
  std::lock_guard lock(mu_);
  if (!running_.emplace(s.task, s.attempt).second) return;
  // Threads of finished tasks are joined as new ones come.
  for (auto it = threads_.begin(); it != threads_.end();) {
    if (it->finished->load()) {
      it->t.join();
      it = threads_.erase(it);
    } else {
      ++it;
    }
  }
  auto finished = std::make_shared<std::atomic<bool>>(false);
  threads_.push_back(TaskThread{std::thread([this, from, s = std::move(s), finished]() mutable {
                                  run(from, std::move(s));
                                  finished->store(true);
                                }),
                                finished});
}

void Runtime::run(int owner, Submit s) {
  Context ctx(*this, std::move(s));
  const Submit& spec = ctx.spec();
  ctx.take_slot();
  Status st;
  auto fn = fns_.find(spec.function);
  if (fn == fns_.end()) {
    st = not_found("no task function named '" + spec.function + "'");
  } else {
    try {
      st = fn->second(ctx);
    } catch (const std::exception& e) {
      st = internal_error(std::string("threw ") + e.what());
    } catch (...) {
      st = internal_error("threw a non-standard exception");
    }
    if (st.is_ok() && !ctx.wrote_result() && !(ctx.created_result() && node_.contains(spec.result))) {
      st = internal_error("returned without writing (and sealing) its result");
    }
  }
  if (ctx.has_slot()) ctx.give_slot();
  Done d{spec.task, spec.attempt, spec.result, 0, "", 0};
  if (st.is_ok()) {
    d.size = node_.local_progress(spec.result);
  } else {
    // Errors that come from an argument already name their origin.
    Status full(st.code(), "task " + spec.function + " (result " + spec.result.short_hex() + ") on rank " +
                               std::to_string(node_.rank()) + ": " + st.message());
    d.code = static_cast<std::uint16_t>(full.code());
    d.message = full.message().substr(0, kMaxError);
    record_failure(spec.result, Status(full.code(), d.message));
    Failed f{spec.result, d.code, d.message};
    for (int r = 0; r < node_.world_size(); ++r) {
      if (r != node_.rank()) send(r, f);
    }
  }
  {
    std::lock_guard lock(mu_);
    ++stats_.executed;
    if (!st.is_ok()) ++stats_.failed;
    running_.erase({spec.task, spec.attempt});
  }
  send(owner, d);
}

void Runtime::on_done(int from, const Done& d) {
  std::lock_guard lock(mu_);
  auto it = owned_.find(d.task);
  // A stale attempt, or a task removed meanwhile.
  if (it == owned_.end() || it->second.attempt != d.attempt || it->second.rank != from || it->second.done)
    return;
  it->second.done = true;
  --outstanding_[static_cast<std::size_t>(from)];
  if (d.code == 0) sizes_[d.result] = d.size;
}

// A node died: re-run what it had not finished, and what it had finished
// whose result now has no copy.
void Runtime::on_membership(const MembershipEvent& e) {
  if (!e.alive && !stopping_) {
    std::vector<std::pair<std::uint64_t, ObjectID>> unfinished, finished;
    {
      std::lock_guard lock(mu_);
      for (auto& [task, rec] : owned_) {
        if (rec.rank != e.rank) continue;
        (rec.done ? finished : unfinished).emplace_back(task, rec.result);
      }
    }
    for (auto& [task, result] : finished) {
      auto w = node_.where(result);
      bool survives = w.is_ok() && w->inline_copy;
      if (w.is_ok()) {
        const auto alive = live_ranks();
        for (int h : w->holders) survives |= h != e.rank && alive[static_cast<std::size_t>(h)];
      }
      if (!survives) unfinished.emplace_back(task, result);
    }
    std::vector<std::pair<int, Submit>> sends;
    {
      std::lock_guard lock(mu_);
      for (auto& [task, result] : unfinished) {
        auto it = owned_.find(task);
        if (it == owned_.end() || it->second.rank != e.rank) continue;
        auto& rec = it->second;
        if (!rec.done) --outstanding_[static_cast<std::size_t>(rec.rank)];
        int to = choose(rec);
        if (to < 0) continue;
        rec.rank = to;
        rec.done = false;
        ++rec.attempt;
        ++outstanding_[static_cast<std::size_t>(to)];
        ++stats_.reexecuted;
        sends.emplace_back(to, submit_of(task, rec));
      }
    }
    if (!sends.empty())
      LOG_INFO("rank " << e.rank << " failed: re-running " << sends.size() << " of its tasks");
    for (auto& [to, s] : sends) send(to, s);
  }
  std::function<void(const MembershipEvent&)> cb;
  {
    std::lock_guard lock(mu_);
    cb = user_cb_;
  }
  if (cb) cb(e);
}

}  // namespace
}  // namespace task

Result<std::unique_ptr<TaskRuntime>> TaskRuntime::create(Node& node, TaskFunctions functions,
                                                         TaskRuntimeOptions opts) {
  for (const auto& [name, fn] : functions) {
    if (name.empty() || name.size() > task::kMaxName)
      return invalid_argument("task function name '" + name + "'");
    if (!fn) return invalid_argument("task function '" + name + "' is empty");
  }
  auto rt = std::make_unique<task::Runtime>(node, std::move(functions), opts);
  rt->start();
  return std::unique_ptr<TaskRuntime>(std::move(rt));
}

}  // namespace hoplite
