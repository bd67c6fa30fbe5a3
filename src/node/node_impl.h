// Node::Impl: the runtime's state, owned by the progress thread.
//
// Private to src/node/. Everything here runs on the progress thread unless a
// comment says otherwise; the public methods (node.cc) hand work over with
// asio::post. Reduce coordination and reduce tasks live in reduce.cc.
#pragma once

#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/asio.h"
#include "common/log.h"
#include "control/connection.h"
#include "control/messages.h"
#include "directory/shard.h"
#include "hoplite/node.h"
#include "hoplite/reduce.h"
#include "scheduler/reduce_planner.h"
#include "store/object_store.h"
#include "transport/tcp/tcp_transport.h"

namespace hoplite {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using control::Connection;
using control::Rank;
namespace msg = control;

// Runs membership callbacks off the progress thread, one at a time, in order.
class CallbackThread {
 public:
  CallbackThread() : t_([this] { run(); }) {}
  ~CallbackThread() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_one();
    t_.join();
  }
  void post(std::function<void()> f) {
    {
      std::lock_guard lock(mu_);
      q_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return done_ || !q_.empty(); });
      if (q_.empty()) return;
      auto f = std::move(q_.front());
      q_.pop_front();
      lock.unlock();
      f();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool done_ = false;
  std::thread t_;
};

namespace detail {
// Shared by an ObjectWriter and the node; the node outlives every writer by
// contract (documented on Node).
struct WriterState {
  Node::Impl* node = nullptr;
  std::shared_ptr<store::ObjectEntry> entry;
  bool done = false;
};
}  // namespace detail

// Everything below runs on the progress thread unless a comment says
// otherwise; the public methods hand work over with asio::post.
class Node::Impl {
 public:
  explicit Impl(NodeOptions o) : opts(std::move(o)), acceptor(io) {}
  ~Impl() { stop(); }

  Status start();
  void stop();

  // ---- called from user threads ----
  template <typename F>
  auto run_sync(F&& f) {
    std::packaged_task<decltype(f())()> task(std::forward<F>(f));
    auto fut = task.get_future();
    asio::post(io, [&task] { task(); });
    return fut.get();
  }
  Status wait_ack(std::future<Status>& f, const std::string& what) {
    if (f.wait_for(opts.bootstrap_timeout) != std::future_status::ready) {
      return timeout_error(what + ": no answer from the directory after " +
                           std::to_string(opts.bootstrap_timeout.count()) + " ms");
    }
    return f.get();
  }
  // Posts a message that expects an ack and waits for it.
  // The destination is the object's shard, chosen on the progress thread;
  // if that shard's owner fails before answering, the request is re-sent to
  // the new owner (membership_changed).
  template <typename M>
  Status request(M m, const std::string& what) {
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    asio::post(io, [this, m, p]() mutable {
      if (stopping) return p->set_value(Status(StatusCode::kCancelled, "node shutting down"));
      m.request = next_request++;
      acks[m.request] = [p](Status st) { p->set_value(std::move(st)); };
      Rank to = shard_of(m.id);
      unacked[m.request] = {m.id, to, msg::Message(m)};
      send_to(to, m);
    });
    return wait_ack(f, what);
  }
  struct Unacked {
    ObjectID id;
    Rank sent_to;
    msg::Message message;
  };
  std::unordered_map<std::uint64_t, Unacked> unacked;

  // ---- progress thread ----
  // The directory shard of an object: its hash's rank, or the next live rank
  // after it when that one failed (soft state moves with membership).
  Rank shard_of(const ObjectID& id) const { return shard_in(id, alive); }
  bool alive_rank(Rank r) const { return r < world && (alive.empty() || alive[r]); }
  // The same rule under a given membership view (empty: everyone alive).
  Rank shard_in(const ObjectID& id, const std::vector<bool>& view) const {
    auto r = static_cast<Rank>(id.hash() % world);
    for (std::uint32_t i = 0; i < world && !view.empty() && !view[r]; ++i) r = (r + 1) % world;
    return r;
  }
  void send_to(Rank r, const msg::Message& m);
  void accept();
  void on_message(const std::shared_ptr<Connection>& c, msg::Message m);
  void on_closed(const std::shared_ptr<Connection>& c, const Status& why);
  void complete_ack(std::uint64_t request);
  void bootstrap_connect(std::chrono::steady_clock::time_point deadline);
  void install_table(const msg::Table& t);

  void start_get(const std::shared_ptr<detail::GetState>& st, GetOptions o);
  void start_lookup(const ObjectID& id, bool must_exist);
  void on_lookup_reply(const msg::LookupReply& r);
  void handle_lookup_reply(const msg::LookupReply& r);
  void replay_parked(const ObjectID& id);
  void drop_watchers(const ObjectID& id, bool withdrawn = false);
  void on_watch(const msg::Watch& w);
  void on_progress(const msg::Progress& p);
  void pump(const ObjectID& id);
  void on_chunk(const ObjectID& id, std::uint64_t gen, std::uint64_t offset, std::uint64_t len, Status st);
  void finish_inbound(const ObjectID& id);
  void abort_inbound(const ObjectID& id, const Status& why, bool retry);
  void notify_watchers(const ObjectID& id);
  void on_local_sealed(const std::shared_ptr<store::ObjectEntry>& e);
  void fulfill_waiters(const ObjectID& id, const Result<ObjectView>& r);
  void delete_local(const ObjectID& id);
  ObjectView view_of(const std::shared_ptr<store::ObjectEntry>& e) const {
    auto it = source_of.find(e->id);
    int src = it == source_of.end() ? -1 : it->second;
    return ObjectView(e->id, e->data, e->size, e, src);
  }
  msg::Publish publish_msg(const store::ObjectEntry& e, msg::LocationState state) const {
    msg::Publish p;
    p.id = e.id;
    p.size = e.size;
    p.rank = me;
    p.state = state;
    if (state == msg::LocationState::kComplete && e.size <= opts.inline_threshold) {
      p.has_inline = true;
      auto* b = reinterpret_cast<const std::uint8_t*>(e.data);
      p.inline_data.assign(b, b + e.size);
    }
    return p;
  }

  NodeOptions opts;
  Rank me = 0;
  std::uint32_t world = 1;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread progress;
  bool stopping = false;

  std::unique_ptr<store::ObjectStore> store;
  std::unique_ptr<transport::tcp::TcpTransport> transport;
  std::unique_ptr<transport::MemoryRegion> region;
  tcp::acceptor acceptor;
  std::string host;
  std::uint16_t control_port = 0;

  std::vector<msg::PeerInfo> peers;
  std::vector<std::shared_ptr<Connection>> out;  // index = rank
  std::vector<std::weak_ptr<Connection>> inbound;
  std::promise<Status> joined;
  bool joined_set = false;
  std::map<Rank, std::pair<msg::PeerInfo, std::shared_ptr<Connection>>> registrations;  // rank 0

  directory::DirectoryShard shard;
  std::uint64_t next_request = 1;
  std::unordered_map<std::uint64_t, std::function<void(Status)>> acks;

  struct Inbound {
    std::shared_ptr<store::ObjectEntry> entry;
    Rank sender = 0;
    std::uint64_t gen = 0;
    std::uint64_t remote_offset = 0;
    std::uint64_t sender_ready = 0;
    std::uint64_t next = 0;        // first byte not yet requested
    std::uint64_t contiguous = 0;  // all bytes below are received
    unsigned in_flight = 0;
    std::map<std::uint64_t, std::uint64_t> done;  // completed ranges above `contiguous`
    // Set for a part of a composite object: the bytes land at `dest` inside
    // the composite's extent, and completion is counted there.
    ObjectID composite;
    std::byte* dest = nullptr;
    std::uint64_t size = 0;
    int watch_retries = 0;
    bool resuming = false;     // the sender died; a new one is being looked up
    std::uint64_t stream = 0;  // of the current Watch
    Rank producer = 0;         // composite parts: where the part is made
    bool serves = false;       // composite parts: `entry` is a view peers read
    int resumes = 0;
  };
  struct CompositeGet {
    std::shared_ptr<store::ObjectEntry> entry;
    std::vector<ObjectID> parts;
    std::vector<ObjectID> views;  // parts registered as views of `entry`
    std::size_t remaining = 0;
  };
  // Views kept after assembly (successors in the ring still read them);
  // removed with the composite.
  std::unordered_map<ObjectID, std::vector<ObjectID>> composite_views;
  std::unordered_map<ObjectID, CompositeGet> composite_gets;
  std::unordered_map<ObjectID, int> composite_retries;
  void start_composite(const msg::LookupReply& r);
  void part_done(const ObjectID& composite, const ObjectID& part);
  void fail_composite(const ObjectID& composite, const Status& why);
  std::uint64_t next_gen = 1;
  std::unordered_map<ObjectID, Inbound> inbound_transfers;
  std::unordered_set<ObjectID> lookups_pending;
  std::unordered_set<ObjectID> must_exist_ids;  // gets that must not wait for a put
  std::vector<std::pair<Rank, msg::Message>> before_table;
  std::unordered_map<ObjectID, std::vector<std::shared_ptr<detail::GetState>>> waiters;
  struct Watcher {
    std::shared_ptr<store::ObjectEntry> pin;
    std::uint64_t sent = 0;
  };
  // Readers of our objects, by (rank, stream).
  std::unordered_map<ObjectID, std::map<std::pair<Rank, std::uint64_t>, Watcher>> watchers;
  std::uint64_t next_stream = 1;
  std::unordered_map<std::uint64_t, ObjectID> stream_to_inbound;
  void watch_inbound(const ObjectID& id);
  void end_stream(Inbound& in);
  std::unordered_map<ObjectID, int> source_of;
  // Watches for an object whose lookup reply is still on its way here.
  std::unordered_map<ObjectID, std::vector<std::pair<Rank, std::uint64_t>>> parked_watches;

  // Numbers barriers; the same sequence on every member. Atomic because a
  // rejoiner learns the current number on the progress thread.
  std::atomic<std::uint64_t> barrier_epoch{0};
  std::uint64_t last_barrier_released = 0;  // rank 0
  std::mutex barrier_mu;
  // Rank 0: who reached each open barrier. A set, not a count: a rank that
  // arrives and then dies must not stand in for a live one.
  std::map<std::uint64_t, std::set<Rank>> barrier_arrivals;
  bool barrier_complete(const std::set<Rank>& arrived) const {
    for (Rank r = 0; r < world; ++r) {
      if (alive_rank(r) && !arrived.count(r)) return false;
    }
    return true;
  }
  void release_barrier(std::uint64_t epoch);
  std::map<std::uint64_t, std::shared_ptr<std::promise<Status>>> barrier_waits;

  // ---- membership (membership.cc) ----
  void start_heartbeats();
  void heartbeat_tick();
  void declare_failed(Rank r, const std::string& why, bool silent = false);
  void membership_changed(const std::vector<bool>& old_alive);
  void resume_inbound(const ObjectID& id, const Status& why);
  void on_rejoin(const std::shared_ptr<Connection>& c, const msg::Rejoin& r);
  void on_peer_update(const msg::PeerUpdate& u);
  void notify_membership();
  std::vector<bool> alive;  // by rank; written only on the progress thread
  std::vector<std::chrono::steady_clock::time_point> last_seen;
  std::uint64_t membership_epoch = 0;
  std::shared_ptr<asio::steady_timer> heartbeat_timer;
  std::mutex membership_mu;  // guards the copies below, read by user threads
  std::vector<int> failed_copy;
  std::uint64_t epoch_copy = 0;
  std::function<void(const MembershipEvent&)> membership_callback;  // guarded by membership_mu
  std::unique_ptr<CallbackThread> callbacks;
  std::unordered_map<std::uint64_t, ObjectID> locate_ids;  // request -> input, to re-route

  std::atomic<std::uint64_t> bytes_received{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> protocol_errors{0};
  std::atomic<std::uint64_t> reduce_tasks_started{0};

  // ---- reduce (reduce.cc) ----
  struct ReduceCoord {
    ReduceOptions opts;
    std::size_t k = 0;
    bool planned = false;
    std::uint64_t size = 0;
    scheduler::ReduceShape shape;
    std::vector<ObjectID> used;    // inputs at filled positions, arrival order
    std::vector<Rank> pos_holder;  // by position
    std::vector<ObjectID> pos_output;
    std::vector<ObjectID> intermediates;
    std::uint64_t root_task = 0;
    // Repair state, by position: a failure vacates the positions it
    // cost and marks every position above them stale (its task is
    // cancelled and issued again once its children are placed).
    std::vector<ObjectID> pos_input;
    std::vector<std::uint32_t> pos_parent;  // kNoParent at the root
    std::vector<std::uint64_t> pos_task;    // 0: a leaf, or not issued
    std::vector<std::uint32_t> pos_gen;     // names a re-issued output
    std::vector<std::uint8_t> pos_filled, pos_stale, pos_done;
    // A lost position whose parent keeps its progress and will read the
    // same computation from its new holder (same input: same bytes); and
    // positions computed that way, whose output lacks the prefix the
    // parent already had.
    std::vector<std::uint8_t> pos_resume, pos_partial;
    std::size_t next_fill = 0;          // into shape.fill
    std::vector<std::uint32_t> vacant;  // positions to refill
    std::unordered_map<std::uint64_t, std::uint32_t> task_pos;
    // Every task issued and not yet done, for cancelling.
    std::unordered_map<std::uint64_t, std::pair<Rank, ObjectID>> task_where;
    int repairs = 0;
    // The caller stops waiting at the deadline; the coordinator then fails
    // the reduce too, which cancels its tasks (a lost input that is never
    // re-put would otherwise keep them, and their memory, forever).
    std::chrono::steady_clock::time_point deadline;
    std::shared_ptr<asio::steady_timer> deadline_timer;
    std::uint32_t recomputed = 0;
    std::optional<msg::LocateReply> reserved;  // a local input kept for the root
    // Striping (allreduce): arrivals wait here until all are in or the
    // decision window closes.
    bool deciding = false;
    bool striped = false;
    std::chrono::steady_clock::time_point started, decide_by;
    std::shared_ptr<asio::steady_timer> decide_timer;
    std::vector<msg::LocateReply> pending;
    std::unordered_set<std::uint64_t> stripe_tasks;
    std::unordered_set<Rank> striped_holders;
    int attempt = 0;
    std::shared_ptr<std::promise<Result<ReduceResult>>> done;
    bool finished = false;
  };
  struct ReduceUp {
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
  struct ReduceExec {
    msg::ReduceTask task;
    std::shared_ptr<store::ObjectEntry> input, output;
    std::vector<ReduceUp> ups;
    std::vector<std::uint8_t> combined;  // upstreams folded into each chunk
    std::uint64_t chunk = 0;
    std::uint64_t nchunks = 0;
    std::uint64_t contiguous = 0;  // chunks complete from the start
  };

  std::uint64_t start_reduce(ReduceOptions o, std::shared_ptr<std::promise<Result<ReduceResult>>> done,
                             std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
  void on_locate_reply(const msg::LocateReply& r);
  void place_arrival(std::uint64_t rid, const ObjectID& input, Rank holder);
  void arrive(std::uint64_t rid, const msg::LocateReply& r);
  void arm_decision(std::uint64_t rid);
  void run_striped(std::uint64_t rid);
  void restart_reduce(std::uint64_t rid, const std::string& why);
  void repair_reduce(std::uint64_t rid, const std::string& why);
  void stale_up_from(ReduceCoord& c, std::uint32_t pos);
  void drop_position_task(ReduceCoord& c, std::uint32_t pos, bool cancel);
  void mark_whole_stale(ReduceCoord& c, std::uint32_t pos);
  void vacate_position(ReduceCoord& c, std::uint32_t pos);
  void locate_unused(std::uint64_t rid);
  void issue_ready(std::uint64_t rid);
  void issue_task(std::uint64_t rid, std::uint32_t pos);
  msg::ReduceTask make_task(std::uint64_t rid, std::uint32_t pos);
  void resume_position(std::uint64_t rid, std::uint32_t pos, const ObjectID& old_output);
  void on_reduce_retarget(const msg::ReduceRetarget& m);
  void orphan_upstream(std::uint64_t task, std::size_t ui, Rank failed);
  void complete_reduce_exec(std::uint64_t task);
  void maybe_finish_up(std::uint64_t task, std::size_t ui);
  void on_reduce_cancel(const msg::ReduceCancel& m);
  void drop_reduce_exec(std::uint64_t task, bool withdrawn);
  void cancel_open_tasks(ReduceCoord& c);
  void finish_reduce(std::uint64_t rid, Result<ReduceResult> r);
  void on_reduce_task(const msg::ReduceTask& t);
  void on_reduce_done(const msg::ReduceDone& d);
  void reduce_pump(std::uint64_t task, std::size_t up);
  void on_reduce_progress(const msg::Progress& p);
  void on_reduce_chunk(std::uint64_t task, std::size_t up, std::uint64_t chunk, std::uint32_t slot,
                       std::uint64_t gen, Status st);
  void fail_reduce_exec(std::uint64_t task, const Status& why);

  std::uint64_t next_reduce = 1;
  std::unordered_map<std::uint64_t, ReduceCoord> reduces;
  std::unordered_map<std::uint64_t, std::uint64_t> locate_to_reduce;
  std::unordered_map<std::uint64_t, std::uint64_t> task_to_reduce;
  std::unordered_map<std::uint64_t, ReduceExec> reduce_execs;
  std::unordered_map<std::uint64_t, std::pair<std::uint64_t, std::size_t>> reduce_pulls;  // by stream
  // Retargets for tasks that have not arrived yet, and tasks cancelled
  // before they arrived (both possible when a task is forwarded).
  std::unordered_map<std::uint64_t, msg::ReduceRetarget> pending_retargets;
  std::unordered_set<std::uint64_t> cancelled_tasks;
  // Link model for reduce planning, from options or the start-up probe.
  double link_bandwidth = 0;  // bytes/s
  double link_latency = 0;    // s
};

}  // namespace hoplite
