#include "sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>

#include "directory/shard.h"
#include "scheduler/reduce_planner.h"
#include "scheduler/stripe_planner.h"
#include "scheduler/tree_chain.h"
#include "sim/event_queue.h"

namespace hoplite::sim {

const char* to_string(Collective c) {
  switch (c) {
    case Collective::kBroadcast: return "broadcast";
    case Collective::kReduce: return "reduce";
    case Collective::kAllreduce: return "allreduce";
    case Collective::kGather: return "gather";
    case Collective::kAllgather: return "allgather";
  }
  return "?";
}

bool parse_collective(const std::string& s, Collective& out) {
  for (auto c : {Collective::kBroadcast, Collective::kReduce, Collective::kAllreduce, Collective::kGather,
                 Collective::kAllgather}) {
    if (s == to_string(c) || (s == "bcast" && c == Collective::kBroadcast)) {
      out = c;
      return true;
    }
  }
  return false;
}

double lower_bound(Collective c, std::uint32_t n, std::uint64_t bytes, double bandwidth) {
  const double t = static_cast<double>(bytes) / bandwidth;
  if (n < 2) return 0;
  switch (c) {
    case Collective::kBroadcast:
    case Collective::kReduce: return t;
    case Collective::kAllreduce: return 2.0 * (n - 1) / n * t;
    case Collective::kGather:
    case Collective::kAllgather: return (n - 1.0) / n * t;
  }
  return t;
}

namespace {

using control::Rank;
namespace msg = control;
constexpr double kNever = std::numeric_limits<double>::infinity();
constexpr std::uint64_t kNoLimit = std::numeric_limits<std::uint64_t>::max();

// One node's copy of an object: a complete one, or one being received or
// computed (its first `ready` bytes are there).
struct Copy {
  std::uint64_t size = 0;
  std::uint64_t ready = 0;
  bool sealed = false;
  bool servable = true;                 // a composite being assembled is not a copy yet
  std::vector<std::uint32_t> watchers;  // transfers reading it
};

// A receiver-driven read of [offset, offset + size) of `object` at `src`,
// pipeline_depth chunk gets in flight, as the fetcher and the reduce
// executor's upstream reads do.
struct Transfer {
  Rank dst = 0, src = 0;
  ObjectID object;
  std::uint64_t offset = 0, size = 0;
  std::uint64_t next = 0, contiguous = 0, sender_ready = 0, notified = 0;
  std::uint64_t limit = kNoLimit;  // a reduce task's scratch ring
  unsigned in_flight = 0;
  std::uint32_t gen = 0;  // a new sender makes older chunks stale
  bool active = true;
  bool resumable = false;  // a get: a lost sender is replaced through the shard
  std::map<std::uint64_t, std::uint64_t> done;
  std::function<void()> on_progress;
};

// A reduce task at `holder`: output = its input op every upstream, chunk by
// chunk. Its input is complete there, so only the upstreams are modelled.
struct Task {
  std::uint64_t id = 0;
  Rank holder = 0, coordinator = 0;
  ObjectID output;
  std::uint64_t size = 0;
  std::vector<std::uint32_t> ups;   // transfers
  std::vector<std::uint64_t> base;  // where each upstream read starts
  std::uint64_t folded = 0, scheduled = 0;
  double fold_free = 0;
  bool cancelled = false, finished = false;
};

class World;

// The coordinator's reduce: a tree-chain (or stripes) driven by the
// runtime's pure planners.
struct Reduction {
  Rank me = 0;
  ObjectID target;
  std::vector<ObjectID> inputs;
  std::uint32_t k = 0;
  bool deciding = false;
  double decide_by = 0;
  std::vector<msg::LocateReply> pending;
  std::optional<scheduler::TreeChain> chain;
  std::optional<msg::LocateReply> reserved;
  std::uint64_t size = 0;
  bool striped = false, finished = false;
  std::set<std::uint64_t> stripe_tasks;
  std::set<ObjectID> locating;
  // Inline inputs folded here.
  std::vector<ObjectID> folded;
};

class World {
 public:
  explicit World(const Scenario& s)
      : s_(s),
        n_(s.nodes),
        net_(s.nodes, s.net),
        alive_(s.nodes, true),
        view_(s.nodes, true),
        died_at_(s.nodes, kNever),
        copies_(s.nodes),
        waiters_(s.nodes),
        parked_watch_(s.nodes),
        done_(s.nodes, -1.0) {
    shards_.reserve(n_);
    for (std::uint32_t i = 0; i < n_; ++i) shards_.emplace_back(s.rt.inline_threshold);
  }

  Outcome run();

  // --- the cluster's plumbing -------------------------------------------
  double now() const { return q_.now(); }
  Rank shard_of(const ObjectID& id) const { return directory::shard_in(id, n_, view_); }

  // A control message from `from`, handled at `to` (dropped if either died).
  void send(Rank from, Rank to, std::function<void()> f) {
    if (!alive_[from]) return;
    if (from == to) return f();
    q_.at(net_.message(from, now()), [this, to, f = std::move(f)] {
      if (alive_[to]) f();
    });
  }
  // A message that carries `bytes` of data (an inline object).
  void send_data(Rank from, Rank to, std::uint64_t bytes, std::function<void()> f) {
    if (!alive_[from]) return;
    if (from == to) return f();
    q_.at(net_.data(from, to, bytes, net_.message(from, now())), [this, to, f = std::move(f)] {
      if (alive_[to]) f();
    });
  }

  Copy& make_copy(Rank r, const ObjectID& id, std::uint64_t size) {
    Copy& c = copies_[r][id];
    c.size = size;
    replay_watches(r, id);
    return c;
  }
  Copy* find_copy(Rank r, const ObjectID& id) {
    auto it = copies_[r].find(id);
    return it == copies_[r].end() ? nullptr : &it->second;
  }

  msg::Publish publish_msg(Rank r, const ObjectID& id, const Copy& c, bool complete) const {
    msg::Publish p;
    p.id = id;
    p.size = c.size;
    p.rank = r;
    p.state = complete ? msg::LocationState::kComplete : msg::LocationState::kPartial;
    if (complete && c.size <= s_.rt.inline_threshold) {
      p.has_inline = true;
      p.inline_data.assign(c.size, 0);
    }
    return p;
  }
  void publish(Rank r, const ObjectID& id, bool complete) {
    Copy* c = find_copy(r, id);
    if (!c) return;
    msg::Publish p = publish_msg(r, id, *c, complete);
    const Rank s = shard_of(id);
    auto apply = [this, s, p = std::move(p)] {
      for (auto& rep : shards_[s].publish(p)) deliver(s, rep);
      for (auto& a : shards_[s].take_located()) deliver_locate(s, a);
    };
    if (p.has_inline) {
      send_data(r, s, p.size, std::move(apply));
    } else {
      send(r, s, std::move(apply));
    }
  }

  void set_ready(Rank r, const ObjectID& id, std::uint64_t ready) {
    Copy* c = find_copy(r, id);
    if (!c || ready <= c->ready) return;
    c->ready = ready;
    if (c->servable) notify(r, *c);
  }
  void notify(Rank r, Copy& c) {
    for (std::uint32_t tid : c.watchers) {
      Transfer& t = *transfers_[tid];
      if (!t.active || t.src != r || t.dst == r) continue;
      const std::uint64_t rel = c.ready > t.offset ? std::min(c.ready - t.offset, t.size) : 0;
      if (rel <= t.notified) continue;
      t.notified = rel;
      const std::uint32_t gen = t.gen;
      send(r, t.dst, [this, tid, rel, gen] {
        Transfer& x = *transfers_[tid];
        if (!x.active || x.gen != gen) return;
        x.sender_ready = std::max(x.sender_ready, rel);
        pump(tid);
      });
    }
  }
  // The copy is complete: local gets end, and the shard learns it.
  void seal(Rank r, const ObjectID& id, bool announce = true) {
    Copy* c = find_copy(r, id);
    if (!c || c->sealed) return;
    c->sealed = true;
    c->servable = true;
    set_ready(r, id, c->size);
    notify(r, *c);
    if (announce) publish(r, id, true);
    auto w = waiters_[r].find(id);
    if (w != waiters_[r].end()) {
      auto list = std::move(w->second);
      waiters_[r].erase(w);
      for (auto& f : list) f();
    }
  }

  // --- transfers ---------------------------------------------------------
  std::uint32_t start_transfer(Rank dst, Rank src, const ObjectID& id, std::uint64_t offset,
                               std::uint64_t size, std::function<void()> on_progress) {
    auto t = std::make_unique<Transfer>();
    t->dst = dst;
    t->src = src;
    t->object = id;
    t->offset = offset;
    t->size = size;
    t->on_progress = std::move(on_progress);
    const auto tid = static_cast<std::uint32_t>(transfers_.size());
    transfers_.push_back(std::move(t));
    watch(tid);
    return tid;
  }
  void watch(std::uint32_t tid) {
    Transfer& t = *transfers_[tid];
    const Rank src = t.src;
    const ObjectID id = t.object;
    const std::uint32_t gen = t.gen;
    send(t.dst, src, [this, tid, src, id, gen] {
      if (!transfers_[tid]->active || transfers_[tid]->gen != gen) return;
      Copy* c = find_copy(src, id);
      if (!c) {
        parked_watch_[src][id].push_back(tid);
        return;
      }
      attach(src, *c, tid);
    });
  }
  void attach(Rank src, Copy& c, std::uint32_t tid) {
    c.watchers.push_back(tid);
    transfers_[tid]->notified = 0;
    if (c.servable) notify(src, c);
  }
  void replay_watches(Rank r, const ObjectID& id) {
    auto it = parked_watch_[r].find(id);
    if (it == parked_watch_[r].end()) return;
    auto list = std::move(it->second);
    parked_watch_[r].erase(it);
    for (auto tid : list) attach(r, copies_[r][id], tid);
  }
  void pump(std::uint32_t tid) {
    Transfer& t = *transfers_[tid];
    const std::uint64_t chunk = s_.rt.chunk_size;
    while (t.active && t.in_flight < s_.rt.pipeline_depth && t.next < t.sender_ready && t.next < t.limit) {
      const std::uint64_t off = t.next;
      const std::uint64_t len = std::min(chunk, t.sender_ready - off);
      t.next += len;
      t.in_flight++;
      const double asked = net_.message(t.dst, now());
      const double arrives = net_.data(t.src, t.dst, len, asked);
      const std::uint32_t gen = t.gen;
      const Rank src = t.src;
      q_.at(arrives, [this, tid, off, len, gen, src, arrives] {
        Transfer& x = *transfers_[tid];
        // Lost with its sender (the failure handler resumes the transfer).
        if (!x.active || x.gen != gen || !alive_[x.dst] || died_at_[src] < arrives) return;
        const double landed = net_.land(x.dst, now(), len);
        if (landed <= now()) return on_chunk(tid, off, len);
        q_.at(landed, [this, tid, off, len, gen] {
          Transfer& y = *transfers_[tid];
          if (y.active && y.gen == gen && alive_[y.dst]) on_chunk(tid, off, len);
        });
      });
    }
  }
  void on_chunk(std::uint32_t tid, std::uint64_t off, std::uint64_t len) {
    Transfer& t = *transfers_[tid];
    t.in_flight--;
    t.done[off] = len;
    while (!t.done.empty() && t.done.begin()->first <= t.contiguous) {
      t.contiguous = std::max(t.contiguous, t.done.begin()->first + t.done.begin()->second);
      t.done.erase(t.done.begin());
    }
    auto cb = t.on_progress;  // may start or stop transfers
    if (cb) cb();
    pump(tid);
  }

  // --- gets ----------------------------------------------------------------
  // A get at `r`; `done` runs when r holds a complete copy.
  void get(Rank r, const ObjectID& id, Rank after, std::function<void()> done) {
    if (Copy* c = find_copy(r, id); c && c->sealed) return done();
    waiters_[r][id].push_back(std::move(done));
    lookup(r, id, after, false);
  }
  void lookup(Rank r, const ObjectID& id, Rank after, bool resume) {
    msg::Lookup l{id, next_request_++, r, false, resume, after, false};
    lookups_[l.request] = l;
    const Rank s = shard_of(id);
    send(r, s, [this, s, l] { on_lookup(s, l); });
  }
  void on_lookup(Rank s, const msg::Lookup& l) {
    auto rep = shards_[s].lookup(l);
    if (rep) deliver(s, *rep);
    for (auto& a : shards_[s].take_answered()) deliver(s, a);
  }
  void deliver(Rank s, const directory::Reply& rep) {
    auto f = [this, rep] { on_lookup_reply(rep.to, rep.reply); };
    if (rep.reply.result == msg::LookupResult::kInline) {
      send_data(s, rep.to, rep.reply.size, std::move(f));
    } else {
      send(s, rep.to, std::move(f));
    }
  }
  void on_lookup_reply(Rank r, const msg::LookupReply& rep) {
    auto lit = lookups_.find(rep.request);
    if (lit == lookups_.end()) return;
    const bool resume = lit->second.resume;
    lookups_.erase(lit);
    const ObjectID id = rep.id;
    if (resume) {
      auto it = resuming_.find({r, id});
      if (it == resuming_.end()) return;
      std::uint32_t tid = it->second;
      resuming_.erase(it);
      if (rep.result != msg::LookupResult::kSender || !alive_[rep.sender]) {
        return fail("rank " + std::to_string(r) + " found no copy of " + id.short_hex() + " to resume from");
      }
      Transfer& t = *transfers_[tid];
      t.src = rep.sender;
      t.gen++;
      t.active = true;
      t.next = t.contiguous;
      t.done.clear();
      t.in_flight = 0;
      t.sender_ready = t.contiguous;
      t.notified = t.contiguous;
      watch(tid);
      return;
    }
    if (Copy* c = find_copy(r, id)) {
      (void)c;  // produced here (a reduce's output) or already arriving
      return;
    }
    switch (rep.result) {
      case msg::LookupResult::kSender: {
        if (rep.sender == r) return;
        make_copy(r, id, rep.size);
        const std::uint32_t tid = start_transfer(r, rep.sender, id, 0, rep.size, nullptr);
        transfers_[tid]->resumable = true;
        transfers_[tid]->on_progress = [this, r, id, tid] {
          Transfer& t = *transfers_[tid];
          set_ready(r, id, t.contiguous);
          if (t.contiguous == t.size) {
            t.active = false;
            seal(r, id);
          }
        };
        if (rep.size == 0) seal(r, id);
        return;
      }
      case msg::LookupResult::kInline:
        make_copy(r, id, rep.size);
        seal(r, id, false);
        return;
      case msg::LookupResult::kComposite: {
        Copy& c = make_copy(r, id, rep.size);
        c.servable = false;
        auto left = std::make_shared<std::size_t>(rep.parts.size());
        auto part_done = [this, r, id, left] {
          if (--*left == 0) seal(r, id, false);
        };
        for (const auto& p : rep.parts) {
          if (p.holder == r || p.size == 0) {
            Copy* mine = find_copy(r, p.id);
            if (p.size == 0 || (mine && mine->sealed)) {
              part_done();
            } else {
              waiters_[r][p.id].push_back(part_done);
            }
            continue;
          }
          auto tid = std::make_shared<std::uint32_t>(0);
          *tid = start_transfer(r, p.holder, p.id, 0, p.size, [this, tid, part_done] {
            Transfer& t = *transfers_[*tid];
            if (t.contiguous == t.size && t.active) {
              t.active = false;
              part_done();
            }
          });
        }
        if (rep.parts.empty()) seal(r, id, false);
        return;
      }
      case msg::LookupResult::kNotFound:
        return fail(id.short_hex() + " not found at rank " + std::to_string(r));
      case msg::LookupResult::kRefused:
        return fail(id.short_hex() + " refused at rank " + std::to_string(r) + " (parked-request limit)");
    }
  }

  // --- reduce: the coordinator ----------------------------------------------
  void start_reduce(Rank me, const ObjectID& target, std::vector<ObjectID> inputs, std::uint32_t k,
                    bool allow_stripes) {
    red_.me = me;
    red_.target = target;
    red_.inputs = std::move(inputs);
    red_.k = k ? k : static_cast<std::uint32_t>(red_.inputs.size());
    decision_start_ = now();
    const double B = planner_bandwidth();
    if (allow_stripes && red_.k == red_.inputs.size() && n_ > 1) {
      red_.deciding = true;
      red_.decide_by = now() + scheduler::stripe_window(0, B, s_.rt.planner_latency).base;
      arm_decision();
    }
    for (const auto& id : red_.inputs) locate(id);
  }
  double planner_bandwidth() const {
    return s_.rt.planner_bandwidth > 0 ? s_.rt.planner_bandwidth : s_.net.bandwidth;
  }
  std::uint32_t inline_max() const {
    const double budget = std::max(512.0 * 1024, planner_bandwidth() * 4e-3);
    return static_cast<std::uint32_t>(std::min<double>(static_cast<double>(s_.rt.inline_threshold),
                                                       budget / std::max<double>(red_.k - 1, 1)));
  }
  void locate(const ObjectID& id) {
    red_.locating.insert(id);
    msg::Locate l{id, next_request_++, red_.me, inline_max()};
    const Rank s = shard_of(id);
    send(red_.me, s, [this, s, l] {
      auto a = shards_[s].locate(l);
      if (a) deliver_locate(s, *a);
    });
  }
  void deliver_locate(Rank s, const directory::LocateAnswer& a) {
    auto f = [this, rep = a.reply] { on_locate_reply(rep); };
    if (a.reply.has_inline) {
      send_data(s, a.to, a.reply.size, std::move(f));
    } else {
      send(s, a.to, std::move(f));
    }
  }
  void arm_decision() {
    q_.at(red_.decide_by, [this] {
      if (!red_.deciding || red_.finished) return;
      if (now() < red_.decide_by) return arm_decision();
      red_.deciding = false;
      auto pending = std::move(red_.pending);
      for (const auto& r : pending) arrive(r);
    });
  }
  void on_locate_reply(const msg::LocateReply& r) {
    red_.locating.erase(r.id);
    if (red_.finished) return;
    if (!r.has_inline && !alive_[r.holder]) return locate(r.id);
    if (red_.deciding) {
      red_.pending.push_back(r);
      if (red_.pending.size() == 1) {
        const auto w =
            scheduler::stripe_window(static_cast<double>(r.size), planner_bandwidth(), s_.rt.planner_latency);
        red_.decide_by = std::max(red_.decide_by, decision_start_ + w.extra);
      }
      if (red_.pending.size() == red_.inputs.size()) {
        red_.deciding = false;
        run_striped();
      }
      return;
    }
    arrive(r);
  }
  std::size_t used_count() const {
    if (!red_.folded.empty()) return red_.folded.size();
    return red_.chain ? red_.chain->used().size() : 0;
  }
  void arrive(const msg::LocateReply& r) {
    if (red_.finished || used_count() >= red_.k) return;
    if (r.has_inline) return fold_here(r);
    if (!red_.chain) {
      red_.size = r.size;
      scheduler::ReduceCost cost{static_cast<double>(r.size), planner_bandwidth(), s_.rt.planner_latency,
                                 static_cast<double>(s_.rt.chunk_size)};
      red_.chain.emplace(s_.reduce_depth >= 0 ? scheduler::plan_reduce_with_depth(
                                                    red_.k, static_cast<std::uint32_t>(s_.reduce_depth))
                                              : scheduler::plan_reduce(red_.k, cost),
                         red_.k);
      depth_ = red_.chain->shape().depth;
    }
    if (red_.chain->has_input(r.id)) return;
    if (scheduler::keep_for_root(r.holder == red_.me, red_.reserved.has_value(), *red_.chain)) {
      red_.reserved = r;
      return;
    }
    Effects fx(*this);
    red_.chain->place(r.id, r.holder, fx);
    if (red_.reserved && scheduler::place_kept_now(*red_.chain)) {
      auto keep = *red_.reserved;
      red_.chain->place(keep.id, keep.holder, fx);
    }
  }
  void fold_here(const msg::LocateReply& r) {
    if (std::find(red_.folded.begin(), red_.folded.end(), r.id) != red_.folded.end()) return;
    red_.folded.push_back(r.id);
    red_.size = r.size;
    if (red_.folded.size() < red_.k) return;
    const double kernel = static_cast<double>(r.size) * (red_.k - 1) / s_.rt.reduce_rate;
    q_.after(kernel, [this] {
      make_copy(red_.me, red_.target, red_.size);
      seal(red_.me, red_.target);
      red_.finished = true;
    });
  }

  // What the tree-chain decides, carried out as the coordinator does.
  class Effects final : public scheduler::TreeChain::Effects {
   public:
    explicit Effects(World& w) : w_(w) {}
    bool alive(Rank r) const override { return w_.view_[r]; }
    void issue(std::uint32_t pos) override { w_.issue(pos, 0); }
    void resume(std::uint32_t pos, const ObjectID& old_output) override {
      w_.resume_position(pos, old_output);
    }
    void drop_task(std::uint64_t task, Rank holder, const ObjectID&, bool cancel) override {
      World* w = &w_;  // this Effects lives on the caller's stack only
      if (cancel) w_.send(w_.red_.me, holder, [w, task] { w->cancel_task(task); });
    }
    void locate_unused() override {
      for (const auto& id : w_.red_.inputs) {
        if (w_.red_.locating.count(id) || w_.red_.chain->has_input(id)) continue;
        if (w_.red_.reserved && w_.red_.reserved->id == id) continue;
        w_.locate(id);
      }
    }

   private:
    World& w_;
  };

  ObjectID position_output(std::uint32_t pos) const {
    if (pos == red_.chain->root()) return red_.target;
    return ObjectID::from_name(red_.target.hex() + "/partial/" + std::to_string(pos) + "/" +
                               std::to_string(red_.chain->generation(pos)));
  }
  // Sends `pos`'s task; `start` > 0: it computes only from there (a resume).
  std::uint64_t issue(std::uint32_t pos, std::uint64_t start) {
    scheduler::TreeChain& chain = *red_.chain;
    const std::uint64_t task = next_task_++;
    const ObjectID out = position_output(pos);
    std::vector<msg::Upstream> ups;
    for (auto kid : chain.shape().children[pos]) ups.push_back({chain.output(kid), chain.holder(kid), 0});
    chain.assign(pos, task, out, start > 0);
    send_task(chain.holder(pos), task, out, red_.size, start, std::move(ups));
    return task;
  }
  // A task's own input is complete at its holder (it was located there),
  // so only its upstreams cost anything.
  void send_task(Rank holder, std::uint64_t task, const ObjectID& out, std::uint64_t size,
                 std::uint64_t start, std::vector<msg::Upstream> ups) {
    const Rank me = red_.me;
    send(me, holder, [=, this] { run_task(holder, me, task, out, size, start, ups); });
  }
  void resume_position(std::uint32_t pos, const ObjectID& old_output) {
    scheduler::TreeChain& chain = *red_.chain;
    const std::uint32_t up = chain.parent(pos);
    auto pit = tasks_.find(chain.task(up));
    const std::uint64_t from = pit == tasks_.end() ? 0 : pit->second.folded;
    if (!chain.shape().children[pos].empty()) issue(pos, from);
    if (pit == tasks_.end()) return;
    // The parent's read of the lost output continues from the new holder.
    const Rank holder = chain.holder(pos);
    const ObjectID next = chain.output(pos);
    send(red_.me, chain.holder(up),
         [this, tid = pit->first, old_output, holder, next] { retarget(tid, old_output, holder, next); });
  }

  // --- reduce: the executor -------------------------------------------------
  void run_task(Rank holder, Rank coordinator, std::uint64_t id, const ObjectID& out, std::uint64_t size,
                std::uint64_t start, const std::vector<msg::Upstream>& ups) {
    if (cancelled_.count(id)) return;
    Task& t = tasks_[id];
    t.id = id;
    t.holder = holder;
    t.coordinator = coordinator;
    t.output = out;
    t.size = size;
    t.folded = t.scheduled = start;
    Copy& c = make_copy(holder, out, size);
    c.ready = start;
    publish(holder, out, false);
    for (const auto& u : ups) add_upstream(t, u.id, u.holder, u.offset + start, size - start, start);
    task_progress(id);
  }
  void add_upstream(Task& t, const ObjectID& uid, Rank uholder, std::uint64_t remote, std::uint64_t len,
                    std::uint64_t base) {
    const std::uint64_t id = t.id;
    auto tidp = std::make_shared<std::uint32_t>(0);
    *tidp = start_transfer(t.holder, uholder, uid, remote, len, [this, id] { task_progress(id); });
    transfers_[*tidp]->limit = t.folded - base + window();
    t.ups.push_back(*tidp);
    t.base.push_back(base);
  }
  std::uint64_t window() const { return s_.rt.pipeline_depth * s_.rt.chunk_size; }
  void retarget(std::uint64_t task, const ObjectID& old_output, Rank holder, const ObjectID& next) {
    auto it = tasks_.find(task);
    if (it == tasks_.end() || it->second.cancelled) return;
    Task& t = it->second;
    for (std::size_t i = 0; i < t.ups.size(); ++i) {
      Transfer& x = *transfers_[t.ups[i]];
      if (!(x.object == old_output)) continue;
      x.active = false;
      t.ups.erase(t.ups.begin() + static_cast<std::ptrdiff_t>(i));
      t.base.erase(t.base.begin() + static_cast<std::ptrdiff_t>(i));
      add_upstream(t, next, holder, t.folded, t.size - t.folded, t.folded);
      return;
    }
  }
  void cancel_task(std::uint64_t task) {
    cancelled_.insert(task);
    auto it = tasks_.find(task);
    if (it == tasks_.end()) return;
    it->second.cancelled = true;
    for (auto tid : it->second.ups) transfers_[tid]->active = false;
    copies_[it->second.holder].erase(it->second.output);
    shards_[shard_of(it->second.output)].unpublish(it->second.output, it->second.holder);
  }
  void task_progress(std::uint64_t id) {
    Task& t = tasks_.at(id);
    if (t.cancelled || t.finished || !alive_[t.holder]) return;
    std::uint64_t avail = t.size;
    for (std::size_t i = 0; i < t.ups.size(); ++i)
      avail = std::min(avail, t.base[i] + transfers_[t.ups[i]]->contiguous);
    if (avail <= t.scheduled && !(t.ups.empty() && t.scheduled < t.size)) return;
    const double kernel = static_cast<double>(avail - t.scheduled) *
                          static_cast<double>(std::max<std::size_t>(t.ups.size(), 1)) / s_.rt.reduce_rate;
    t.scheduled = avail;
    t.fold_free = std::max(now(), t.fold_free) + kernel;
    q_.at(t.fold_free, [this, id, avail] {
      auto it = tasks_.find(id);
      if (it == tasks_.end()) return;
      Task& x = it->second;
      if (x.cancelled || !alive_[x.holder]) return;
      x.folded = std::max(x.folded, avail);
      set_ready(x.holder, x.output, x.folded);
      for (std::size_t i = 0; i < x.ups.size(); ++i) {
        transfers_[x.ups[i]]->limit = x.folded - x.base[i] + window();
        pump(x.ups[i]);
      }
      if (x.folded == x.size && !x.finished) {
        x.finished = true;
        for (auto tid : x.ups) transfers_[tid]->active = false;
        seal(x.holder, x.output);
        send(x.holder, x.coordinator, [this, id] { task_done(id); });
      }
    });
  }
  void task_done(std::uint64_t task) {
    if (red_.finished) return;
    if (red_.striped) {
      red_.stripe_tasks.erase(task);
      if (red_.stripe_tasks.empty()) red_.finished = true;
      return;
    }
    if (red_.chain && red_.chain->task_done(task)) red_.finished = true;
  }

  // --- reduce: the striped form ---------------------------------------------
  void run_striped() {
    std::map<Rank, std::vector<ObjectID>> by_holder;
    bool have_bytes = false;
    for (const auto& r : red_.pending) {
      by_holder[r.holder].push_back(r.id);
      have_bytes = have_bytes || r.has_inline;
    }
    std::vector<Rank> holders;
    std::vector<std::size_t> counts;
    for (const auto& [h, ids] : by_holder) {
      holders.push_back(h);
      counts.push_back(ids.size());
    }
    const std::uint64_t size = red_.pending.front().size;
    if (!scheduler::should_stripe(holders.size(), size, have_bytes, s_.rt.chunk_size)) {
      auto pending = std::move(red_.pending);
      for (const auto& r : pending) arrive(r);
      return;
    }
    red_.striped = true;
    striped_ = true;
    red_.size = size;
    msg::PublishComposite comp;
    comp.id = red_.target;
    comp.size = size;
    const auto stripes = scheduler::plan_stripes(counts, size);
    for (std::size_t j = 0; j < stripes.size(); ++j) {
      const auto& st = stripes[j];
      const ObjectID part = ObjectID::from_name(red_.target.hex() + "/stripe/" + std::to_string(j));
      comp.parts.push_back({part, holders[j], st.offset, st.length});
      if (st.length == 0) continue;
      auto hop = [&](std::size_t i) {
        const Rank h = holders[st.chain[i].holder];
        return std::make_pair(by_holder[h][st.chain[i].input], h);
      };
      // The first hop reads the leaf's input at the stripe's offset.
      msg::Upstream prev{hop(0).first, hop(0).second, st.offset};
      for (std::size_t i = 1; i < st.chain.size(); ++i) {
        const bool last = i + 1 == st.chain.size();
        const Rank h = hop(i).second;
        const ObjectID out = last ? part
                                  : ObjectID::from_name(red_.target.hex() + "/stripe/" + std::to_string(j) +
                                                        "/" + std::to_string(i));
        const std::uint64_t task = next_task_++;
        if (last) red_.stripe_tasks.insert(task);
        send_task(h, task, out, st.length, 0, {prev});
        prev = {out, h, 0};
      }
    }
    red_.pending.clear();
    const Rank s = shard_of(red_.target);
    send(red_.me, s, [this, s, comp] {
      for (auto& rep : shards_[s].publish_composite(comp)) deliver(s, rep);
    });
  }

  // --- failures ----------------------------------------------------------------
  void kill(Rank f) {
    alive_[f] = false;
    died_at_[f] = now();
    q_.after(s_.detect_delay, [this, f] { on_failure_known(f); });
  }
  void on_failure_known(Rank f) {
    std::vector<bool> old = view_;
    view_[f] = false;
    for (Rank s = 0; s < n_; ++s) {
      if (!alive_[s]) continue;
      shards_[s].forget_rank(f);
      for (auto& a : shards_[s].take_answered()) deliver(s, a);
    }
    // Shards that moved are rebuilt from the holders (soft state), and the
    // lookups parked there are sent again.
    for (Rank r = 0; r < n_; ++r) {
      if (!alive_[r]) continue;
      for (auto& [id, c] : copies_[r]) {
        if (directory::shard_in(id, n_, old) != shard_of(id) && c.servable) publish(r, id, c.sealed);
      }
    }
    std::vector<msg::Lookup> again;
    for (auto& [req, l] : lookups_) {
      if (alive_[l.requester] && directory::shard_in(l.id, n_, old) == f) again.push_back(l);
    }
    for (const auto& l : again) {
      const Rank s = shard_of(l.id);
      send(l.requester, s, [this, s, l] { on_lookup(s, l); });
    }
    // Reads from the dead resume from another copy.
    for (std::uint32_t tid = 0; tid < transfers_.size(); ++tid) {
      Transfer& t = *transfers_[tid];
      if (!t.active || t.src != f || !alive_[t.dst]) continue;
      if (t.resumable) {
        t.active = false;
        resuming_[{t.dst, t.object}] = tid;
        lookup(t.dst, t.object, msg::kNoRank, true);
      }
    }
    if (!alive_[red_.me] || red_.finished) return;
    if (red_.striped)
      return fail("a striped allreduce lost rank " + std::to_string(f) + " (it restarts; not simulated)");
    if (red_.chain) {
      Effects fx(*this);
      red_.chain->repair(fx);
      red_.chain->issue_ready(fx);
    }
  }

  void fail(const std::string& why) {
    if (error_.empty()) error_ = why;
  }

  const Scenario& s_;
  std::uint32_t n_;
  EventQueue q_;
  Network net_;
  std::vector<bool> alive_, view_;
  std::vector<double> died_at_;
  std::vector<std::unordered_map<ObjectID, Copy>> copies_;
  std::vector<std::unordered_map<ObjectID, std::vector<std::function<void()>>>> waiters_;
  std::vector<std::unordered_map<ObjectID, std::vector<std::uint32_t>>> parked_watch_;
  std::vector<directory::DirectoryShard> shards_;
  std::vector<std::unique_ptr<Transfer>> transfers_;
  std::unordered_map<std::uint64_t, msg::Lookup> lookups_;
  std::map<std::pair<Rank, ObjectID>, std::uint32_t> resuming_;
  std::unordered_map<std::uint64_t, Task> tasks_;
  std::set<std::uint64_t> cancelled_;
  Reduction red_;
  std::uint64_t next_request_ = 1, next_task_ = 1;
  double decision_start_ = 0;
  std::vector<double> done_;
  std::string error_;
  bool striped_ = false;
  std::uint32_t depth_ = 0;
};

Outcome World::run() {
  const Scenario& s = s_;
  std::vector<bool> timed(n_, false);
  // Each rank starts when it leaves the barrier before the collective: the
  // leader (rank 0) releases itself, then sends the others BarrierDone one
  // after another. A rank's time counts from its own start, as a perf tool
  // measures it.
  std::vector<double> start(n_, 0.0);
  for (Rank r = 1; r < n_; ++r) start[r] = net_.message(0, 0);
  auto record = [this, start](Rank r) { return [this, r, t0 = start[r]] { done_[r] = now() - t0; }; };
  auto delay = [&](Rank r) { return start[r] + (r < s.input_delay.size() ? s.input_delay[r] : 0.0); };
  // Objects written before t = 0 (a create publishes a partial location).
  auto create = [&](Rank r, const ObjectID& id, std::uint64_t size) {
    Copy& c = make_copy(r, id, size);
    shards_[shard_of(id)].publish(publish_msg(r, id, c, false));
  };
  auto seal_at = [&](Rank r, const ObjectID& id, double t) { q_.at(t, [this, r, id] { seal(r, id); }); };

  switch (s.collective) {
    case Collective::kBroadcast: {
      const ObjectID id = ObjectID::from_name("broadcast/0");
      create(0, id, s.bytes);
      seal_at(0, id, 0);
      for (Rank r = 1; r < n_; ++r) {
        timed[r] = true;
        q_.at(start[r], [this, r, id, f = record(r)] { get(r, id, msg::kNoRank, f); });
      }
      break;
    }
    case Collective::kReduce:
    case Collective::kAllreduce: {
      const bool all = s.collective == Collective::kAllreduce;
      const ObjectID target = ObjectID::from_name("reduce/0/out");
      std::vector<ObjectID> inputs;
      for (Rank r = 0; r < n_; ++r) {
        inputs.push_back(ObjectID::from_name("reduce/0/in/" + std::to_string(r)));
        create(r, inputs.back(), s.bytes);
        seal_at(r, inputs.back(), delay(r));
      }
      q_.at(0, [this, target, inputs, k = s.k, stripes = all && s.allow_stripes] {
        start_reduce(0, target, inputs, k, stripes);
      });
      for (Rank r = 0; r < n_; ++r) {
        if (!all && r != 0) continue;
        timed[r] = true;
        q_.at(start[r], [this, r, target, f = record(r)] { get(r, target, msg::kNoRank, f); });
      }
      break;
    }
    case Collective::kGather:
    case Collective::kAllgather: {
      const bool all = s.collective == Collective::kAllgather;
      const std::uint64_t part = s.bytes / n_;
      std::vector<ObjectID> parts;
      for (Rank r = 0; r < n_; ++r) {
        parts.push_back(ObjectID::from_name("gather/0/" + std::to_string(r)));
        create(r, parts.back(), part);
        seal_at(r, parts.back(), start[r]);
      }
      for (Rank r = 0; r < n_; ++r) {
        if (!all && r != 0) continue;
        timed[r] = true;
        auto left = std::make_shared<std::uint32_t>(n_);
        const Rank after = all ? (r + n_ - 1) % n_ : msg::kNoRank;
        for (Rank p = 0; p < n_; ++p) {
          q_.at(start[r], [this, r, id = parts[p], after, left, f = record(r)] {
            get(r, id, after, [left, f] {
              if (--*left == 0) f();
            });
          });
        }
      }
      break;
    }
  }
  if (s.fail_rank >= 0 && static_cast<std::uint32_t>(s.fail_rank) < n_) {
    q_.at(s.fail_time, [this, f = static_cast<Rank>(s.fail_rank)] { kill(f); });
  }
  q_.run(kNever);

  Outcome o;
  o.events = q_.executed();
  o.lower_bound = lower_bound(s.collective, n_, s.bytes, s.net.bandwidth);
  o.striped = striped_;
  o.depth = depth_;
  o.recomputed = red_.chain ? red_.chain->recomputed() : 0;
  o.done.assign(n_, -1.0);
  o.error = error_;
  for (Rank r = 0; r < n_; ++r) {
    if (!timed[r] || !alive_[r]) continue;
    if (done_[r] < 0) {
      if (o.error.empty()) o.error = "rank " + std::to_string(r) + " never completed";
      continue;
    }
    o.done[r] = done_[r];
    o.time = std::max(o.time, done_[r]);
  }
  return o;
}

}  // namespace

Outcome simulate(const Scenario& s) {
  if (s.nodes == 0) {
    Outcome o;
    o.error = "no nodes";
    return o;
  }
  World w(s);
  return w.run();
}

}  // namespace hoplite::sim

namespace hoplite::sim {

NetworkModel emulated_cluster(double rate) {
  NetworkModel m;
  m.bandwidth = rate;
  m.efficiency = 0.956;
  m.latency = 60e-6;
  m.message_cost = 15e-6;
  m.byte_cost = 2e-9;
  m.host_cores = 2;
  return m;
}

}  // namespace hoplite::sim
