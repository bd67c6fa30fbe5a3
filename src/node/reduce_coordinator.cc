#include "node/reduce_coordinator.h"

#include "scheduler/stripe_planner.h"

#include <algorithm>
#include <map>

#include <cstring>

#include "node/directory_client.h"
#include "node/fetcher.h"
#include "node/membership.h"
#include "node/object_server.h"
#include "reduce/kernels.h"
#include "scheduler/stripe_planner.h"

namespace hoplite::node {

ReduceCoordinator::ReduceCoordinator(NodeContext& ctx, Membership& membership, Fetcher& fetcher,
                                     ObjectServer& server, DirectoryClient& dir)
    : ctx_(ctx), membership_(membership), fetcher_(fetcher), server_(server), dir_(dir) {
  auto& d = ctx_.dispatch;
  d.on<msg::LocateReply>([this](const ConnPtr&, const msg::LocateReply& r) { on_locate_reply(r); });
  d.on<msg::ReduceDone>([this](const ConnPtr& c, const msg::ReduceDone& m) {
    // Success only from the rank running the task. A failure may also come
    // from the task a retarget forwarded it through.
    auto where = task_rank(m.task);
    if (!where) return;  // of a finished or restarted attempt
    if (m.code == 0 && *where != ctx_.sender(c)) {
      return ctx_.refuse(ctx_.sender(c), "ReduceDone",
                         "task " + std::to_string(m.task) + " runs on rank " + std::to_string(*where));
    }
    on_reduce_done(m);
  });
  d.on<msg::ReduceLost>([this](const ConnPtr& c, const msg::ReduceLost& m) {
    // A claim that a rank died comes only from a task of ours that read
    // from it; anything else would let one member evict another.
    auto where = task_rank(m.task);
    if (!where) return;  // of a finished or restarted attempt: heartbeats will tell
    if (*where != ctx_.sender(c)) {
      return ctx_.refuse(ctx_.sender(c), "ReduceLost",
                         "task " + std::to_string(m.task) + " runs on rank " + std::to_string(*where));
    }
    if (m.failed != ctx_.me && ctx_.alive_rank(m.failed))
      membership_.declare_failed(m.failed, "a reduce task lost it (task " + std::to_string(m.task) + ")");
  });
}

std::uint64_t ReduceCoordinator::start(ReduceOptions o,
                                       std::shared_ptr<std::promise<Result<ReduceResult>>> done,
                                       std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::uint64_t rid = next_reduce_++;
  Reduction& c = reduces_[rid];
  c.k = o.k == 0 ? o.inputs.size() : o.k;
  c.opts = std::move(o);
  c.done = std::move(done);
  c.deadline = deadline.value_or(std::chrono::steady_clock::now() + c.opts.timeout);
  // Inputs small enough that all k of them cross our link within about
  // 4 ms come with their bytes, and are folded here: on the emulated
  // 1 Gbit/s cluster a tree-chain of single-chunk inputs costs more than
  // that (64 KiB, N = 8: 7.7 ms through tasks, 5.0 ms folded here).
  // The floor keeps the rule off a noisy probe's edge: 512 KiB is 4 ms at
  // 1 Gbit/s.
  const double budget = std::max(512.0 * 1024, ctx_.link_bandwidth * 4e-3);
  // A forced depth asks for the tree-chain itself.
  if (!c.opts.depth) {
    c.inline_max = static_cast<std::uint32_t>(
        std::min<double>(static_cast<double>(ctx_.opts.inline_threshold),
                         budget / static_cast<double>(std::max<std::size_t>(c.k - 1, 1))));
  }
  c.deadline_timer = std::make_shared<asio::steady_timer>(ctx_.io, c.deadline);
  c.deadline_timer->async_wait([this, rid](error_code ec) {
    auto it = reduces_.find(rid);
    if (ec || ctx_.stopping || it == reduces_.end() || it->second.finished) return;
    finish_reduce(rid,
                  timeout_error("reduce into " + it->second.opts.target.short_hex() + " not complete after " +
                                std::to_string(it->second.opts.timeout.count()) + " ms"));
  });
  // An allreduce may stripe when every input already exists: give the
  // locate replies a short window to come in before choosing.
  if (c.opts.allow_stripes && c.k == c.opts.inputs.size() && ctx_.world > 1) {
    c.deciding = true;
    c.started = std::chrono::steady_clock::now();
    const auto w = scheduler::stripe_window(0, ctx_.link_bandwidth, ctx_.link_latency);
    c.decide_by = c.started + std::chrono::microseconds(static_cast<long>(w.base * 1e6));
    c.decide_timer = std::make_shared<asio::steady_timer>(ctx_.io);
    arm_decision(rid);
  }
  for (const auto& id : c.opts.inputs) locate(rid, id);
  return rid;
}

void ReduceCoordinator::locate(std::uint64_t rid, const ObjectID& id) {
  std::uint64_t req = ctx_.next_request();
  locate_to_reduce_[req] = rid;
  locate_ids_[req] = id;
  ctx_.send(ctx_.shard_of(id), locate_msg(req, id));
}

// An attempt that cannot be repaired (a participant died before the plan
// was made, or a striped task lost an upstream for another reason than a
// death): cancel it and plan again from the inputs' surviving copies
// (inputs lost with the node wait for their re-put). Deaths during a plan
// are repaired instead (repair_reduce, repair_stripes).
void ReduceCoordinator::restart_reduce(std::uint64_t rid, const std::string& why) {
  auto it = reduces_.find(rid);
  if (it == reduces_.end() || it->second.finished) return;
  Reduction& c = it->second;
  if (c.attempt >= 3)
    return finish_reduce(rid, peer_failure("reduce into " + c.opts.target.short_hex() + " failed " +
                                           std::to_string(c.attempt + 1) + " times; last: " + why));
  LOG_WARN("reduce into " << c.opts.target.short_hex() << " restarts: " << why);
  cancel_open_tasks(c);
  for (const auto& id : c.intermediates) ctx_.send(ctx_.shard_of(id), msg::Remove{id, 0, ctx_.me});
  // A striped attempt declared the target as a composite of its stripes;
  // that record (and the stripes) must go, or readers would keep reading
  // the dead attempt's parts instead of the new target. Sent before the new
  // attempt's messages on the same connection, so the shard sees it first.
  if (c.striped) ctx_.send(ctx_.shard_of(c.opts.target), msg::Remove{c.opts.target, 0, ctx_.me});
  ReduceOptions opts_copy = c.opts;
  auto done = c.done;
  auto ran = std::move(c.ran);
  int attempt = c.attempt + 1;
  const auto c_deadline = c.deadline;
  if (c.deadline_timer) c.deadline_timer->cancel();
  std::erase_if(locate_to_reduce_, [rid](const auto& kv) { return kv.second == rid; });
  std::erase_if(task_to_reduce_, [rid](const auto& kv) { return kv.second == rid; });
  std::erase_if(locate_ids_, [this](const auto& kv) { return !locate_to_reduce_.count(kv.first); });
  reduces_.erase(it);
  std::uint64_t nrid = start(std::move(opts_copy), std::move(done), c_deadline);
  reduces_.at(nrid).attempt = attempt;
  reduces_.at(nrid).ran = std::move(ran);
}

// Stops the tasks of an attempt that is given up, so that they neither
// use bandwidth nor leave outputs that readers might take for the result.
void ReduceCoordinator::cancel_open_tasks(Reduction& c) {
  for (const auto& [task, where] : c.task_where) {
    if (ctx_.alive_rank(where.first)) ctx_.send(where.first, msg::ReduceCancel{task, where.second});
    task_to_reduce_.erase(task);
  }
  c.task_where.clear();
}

msg::Locate ReduceCoordinator::locate_msg(std::uint64_t req, const ObjectID& id) const {
  msg::Locate l{id, req, ctx_.me, 0};
  if (auto it = locate_to_reduce_.find(req); it != locate_to_reduce_.end()) {
    if (auto r = reduces_.find(it->second); r != reduces_.end()) {
      l.inline_max = r->second.inline_max;
      l.partial_ok = r->second.opts.partial_inputs && r->second.k == r->second.opts.inputs.size();
    }
  }
  return l;
}

void ReduceCoordinator::on_locate_reply(const msg::LocateReply& r) {
  auto lit = locate_to_reduce_.find(r.request);
  if (lit == locate_to_reduce_.end()) return;
  if (r.refused) {
    const std::uint64_t rid = lit->second;
    locate_to_reduce_.erase(lit);
    locate_ids_.erase(r.request);
    if (!reduces_.count(rid)) return;
    return finish_reduce(
        rid, capacity_error("reduce into " + reduces_.at(rid).opts.target.short_hex() +
                            ": the directory shard on rank " + std::to_string(ctx_.shard_of(r.id)) +
                            " refused to locate input " + r.id.short_hex() + " at its limit of " +
                            std::to_string(r.size) + " waiting requests"));
  }
  // (With the bytes in hand, the holder's fate does not matter.)
  if (!r.has_inline && (r.holder >= ctx_.world || (!ctx_.alive.empty() && !ctx_.alive[r.holder]))) {
    // A shard that has not yet noticed the failure named a dead holder:
    // ask again shortly (it forgets the rank within a failure timeout, or a
    // re-put gives a live holder), instead of sending work to the dead.
    auto timer = std::make_shared<asio::steady_timer>(ctx_.io, ctx_.opts.failure_timeout / 4);
    timer->async_wait([this, timer, req = r.request, id = r.id](error_code) {
      if (!ctx_.stopping && locate_to_reduce_.count(req)) ctx_.send(ctx_.shard_of(id), locate_msg(req, id));
    });
    return;
  }
  std::uint64_t rid = lit->second;
  locate_to_reduce_.erase(lit);
  locate_ids_.erase(r.request);
  auto it = reduces_.find(rid);
  if (it == reduces_.end()) return;
  Reduction& c = it->second;
  if (c.striped) return stripe_input_back(rid, r);
  if (c.deciding) {
    c.pending.push_back(r);
    if (c.pending.size() == 1) {
      // Inputs sealed "at the same time" by different nodes reach their
      // shards a little apart: a large allreduce should not lose the
      // striped form to a few milliseconds of skew (stripe_planner.h).
      const auto w =
          scheduler::stripe_window(static_cast<double>(r.size), ctx_.link_bandwidth, ctx_.link_latency);
      auto extra = std::chrono::microseconds(static_cast<long>(w.extra * 1e6));
      c.decide_by = std::max(c.decide_by, c.started + extra);
    }
    if (c.pending.size() == c.opts.inputs.size()) {
      c.deciding = false;
      run_striped(rid);
    }
    return;
  }
  arrive(rid, r);
}

// Closes the striping window at c.decide_by (which the first arrival may
// push back): inputs still missing then are late, and the dynamic
// tree-chain starts with those that are here.
void ReduceCoordinator::arm_decision(std::uint64_t rid) {
  Reduction& c = reduces_.at(rid);
  c.decide_timer->expires_at(c.decide_by);
  c.decide_timer->async_wait([this, rid](error_code ec) {
    auto it = reduces_.find(rid);
    if (ec || ctx_.stopping || it == reduces_.end() || !it->second.deciding) return;
    if (std::chrono::steady_clock::now() < it->second.decide_by) return arm_decision(rid);
    it->second.deciding = false;
    auto pending = std::move(it->second.pending);
    for (const auto& r : pending) {
      if (reduces_.count(rid)) arrive(rid, r);
    }
  });
}

// Carries out a chain's decisions for reduce `rid`.
class ReduceCoordinator::ChainEffects final : public scheduler::TreeChain::Effects {
 public:
  ChainEffects(ReduceCoordinator& co, std::uint64_t rid) : co_(co), rid_(rid) {}
  bool alive(Rank r) const override { return co_.ctx_.alive_rank(r); }
  void issue(std::uint32_t pos) override { co_.issue_task(rid_, pos); }
  void resume(std::uint32_t pos, const ObjectID& old_output) override {
    co_.resume_position(rid_, pos, old_output);
  }
  void drop_task(std::uint64_t task, Rank holder, const ObjectID& output, bool cancel) override {
    if (cancel) co_.ctx_.send(holder, msg::ReduceCancel{task, output});
    co_.task_to_reduce_.erase(task);
    co_.reduces_.at(rid_).task_where.erase(task);
  }
  void locate_unused() override { co_.locate_unused(rid_); }

 private:
  ReduceCoordinator& co_;
  std::uint64_t rid_;
};

const std::vector<ObjectID>& ReduceCoordinator::used(const Reduction& c) {
  static const std::vector<ObjectID> kNone;
  if (c.striped) return c.striped_used;
  if (c.local) return c.local_used;
  return c.chain ? c.chain->used() : kNone;
}

void ReduceCoordinator::arrive(std::uint64_t rid, const msg::LocateReply& r) {
  Reduction& c = reduces_.at(rid);
  if (c.finished || used(c).size() >= c.k) return;  // a k-of-n straggler: not needed
  // First, as sizes that differ also differ in being held inline.
  if ((c.chain || c.local) && r.size != c.size) {
    return finish_reduce(
        rid, invalid_argument("reduce inputs differ in size: " + std::to_string(c.size) + " and " +
                              std::to_string(r.size) + " (" + r.id.short_hex() + ")"));
  }
  if (r.has_inline || c.local) return fold_here(rid, r);

  const std::size_t esize = element_size(c.opts.dtype);
  if (!c.chain) {
    if (r.size % esize != 0) {
      return finish_reduce(
          rid, invalid_argument("reduce input " + r.id.short_hex() + " has " + std::to_string(r.size) +
                                " bytes, not a multiple of " + std::to_string(esize)));
    }
    c.size = r.size;
    scheduler::ReduceCost cost{static_cast<double>(r.size), ctx_.link_bandwidth, ctx_.link_latency,
                               static_cast<double>(ctx_.opts.chunk_size)};
    const auto k = static_cast<std::uint32_t>(c.k);
    c.chain.emplace(
        c.opts.depth ? scheduler::plan_reduce_with_depth(k, *c.opts.depth) : scheduler::plan_reduce(k, cost),
        k);
    LOG_DEBUG("reduce " << c.opts.target.short_hex() << ": " << c.k << " of " << c.opts.inputs.size()
                        << " inputs, " << r.size << " B, depth " << c.chain->shape().depth);
  } else if (r.size != c.size) {
    return finish_reduce(
        rid, invalid_argument("reduce inputs differ in size: " + std::to_string(c.size) + " and " +
                              std::to_string(r.size) + " (" + r.id.short_hex() + ")"));
  }

  // The caller's own input may wait for the root position (keep_for_root).
  if (c.chain->has_input(r.id)) return;  // asked again after a failure
  if (scheduler::keep_for_root(r.holder == ctx_.me, c.reserved.has_value(), *c.chain)) {
    c.reserved = msg::LocateReply(r);
    return;
  }
  ChainEffects fx(*this, rid);
  c.chain->place(r.id, r.holder, fx);
  if (reduces_.count(rid) && c.reserved && scheduler::place_kept_now(*c.chain)) {
    auto keep = *c.reserved;
    c.chain->place(keep.id, keep.holder, fx);
  }
}

// An inline input: folded into the result here; the k-th completes it.
void ReduceCoordinator::fold_here(std::uint64_t rid, const msg::LocateReply& r) {
  Reduction& c = reduces_.at(rid);
  if (!r.has_inline || c.chain) {
    // Nodes that disagree on the inline threshold: some inputs came with
    // their bytes and some without.
    return finish_reduce(rid, invalid_argument("reduce into " + c.opts.target.short_hex() +
                                               ": some inputs are held inline and some are not (do all "
                                               "nodes use the same inline threshold?)"));
  }
  const std::size_t esize = element_size(c.opts.dtype);
  if (std::find(c.local_used.begin(), c.local_used.end(), r.id) != c.local_used.end()) return;
  if (!c.local) {
    if (r.size % esize != 0) {
      return finish_reduce(
          rid, invalid_argument("reduce input " + r.id.short_hex() + " has " + std::to_string(r.size) +
                                " bytes, not a multiple of " + std::to_string(esize)));
    }
    c.local = true;
    c.size = r.size;
    c.acc = r.inline_data;
  } else if (r.size != c.size) {
    return finish_reduce(
        rid, invalid_argument("reduce inputs differ in size: " + std::to_string(c.size) + " and " +
                              std::to_string(r.size) + " (" + r.id.short_hex() + ")"));
  } else if (c.size) {
    auto* acc = reinterpret_cast<std::byte*>(c.acc.data());
    reduce::apply(c.opts.op, c.opts.dtype, acc, acc, reinterpret_cast<const std::byte*>(r.inline_data.data()),
                  c.size);
  }
  c.local_used.push_back(r.id);
  if (c.local_used.size() < c.k) return;
  // The result is a local copy like any other: published (inline, since it
  // is small) and handed to local gets.
  auto& store = *ctx_.store;
  if (store.find(c.opts.target)) {
    store.erase(c.opts.target);
    server_.drop(c.opts.target, true);
  }
  auto e = store.create_object(c.opts.target, c.size);
  if (!e.is_ok()) return finish_reduce(rid, e.status());
  auto entry = std::move(e).value();
  if (c.size) std::memcpy(entry->data, c.acc.data(), c.size);
  entry->seal();
  fetcher_.on_local_sealed(entry);
  // Done once the directory knows the target, as a put is: a must_exist
  // get anywhere after the reduce returns finds it.
  dir_.request_here(dir_.publish_msg(*entry, msg::LocationState::kComplete), [this, rid](Status st) {
    auto it = reduces_.find(rid);
    if (it == reduces_.end()) return;
    if (!st.is_ok()) return finish_reduce(rid, st);
    ReduceResult res;
    res.used = it->second.local_used;
    finish_reduce(rid, std::move(res));
  });
}

// Asks again for every input not in the plan: the lost ones (a re-put or
// another copy) and, for k < n, the spares whose answers were dropped.
void ReduceCoordinator::locate_unused(std::uint64_t rid) {
  Reduction& c = reduces_.at(rid);
  std::unordered_set<ObjectID> asking;
  for (const auto& [req, r] : locate_to_reduce_) {
    if (r == rid) asking.insert(locate_ids_[req]);
  }
  for (const auto& id : c.opts.inputs) {
    if (asking.count(id) || c.chain->has_input(id)) continue;
    if (c.reserved && c.reserved->id == id) continue;
    locate(rid, id);
  }
}

// The task for `pos` under a fresh output name (the root's is the target),
// registered as the position's current task.
msg::ReduceTask ReduceCoordinator::make_task(std::uint64_t rid, std::uint32_t pos, bool partial) {
  Reduction& c = reduces_.at(rid);
  scheduler::TreeChain& chain = *c.chain;
  const bool is_root = pos == chain.root();
  std::string name = c.opts.target.hex() + "/partial/" + std::to_string(rid) + "/" + std::to_string(pos);
  if (chain.generation(pos) > 0) name += "/" + std::to_string(chain.generation(pos));
  ObjectID out = is_root ? c.opts.target : ObjectID::from_name(name);
  if (!is_root) c.intermediates.push_back(out);
  msg::ReduceTask t;
  t.task = (static_cast<std::uint64_t>(ctx_.me) << 40) | ctx_.next_request();
  t.coordinator = ctx_.me;
  t.output = out;
  t.input = chain.input(pos);
  t.size = c.size;
  t.op = static_cast<std::uint8_t>(c.opts.op);
  t.dtype = static_cast<std::uint8_t>(c.opts.dtype);
  t.target = c.opts.target;
  for (auto kid : chain.shape().children[pos])
    t.upstreams.push_back({chain.output(kid), chain.holder(kid), 0});
  chain.assign(pos, t.task, out, partial);
  task_to_reduce_[t.task] = rid;
  c.task_where[t.task] = {chain.holder(pos), out};
  c.ran.insert(chain.holder(pos));
  LOG_DEBUG("reduce " << c.opts.target.short_hex() << ": position " << pos << " (" << t.input.short_hex()
                      << ") runs on rank " << chain.holder(pos) << ", output " << out.short_hex());
  return t;
}

void ReduceCoordinator::issue_task(std::uint64_t rid, std::uint32_t pos) {
  const Rank holder = reduces_.at(rid).chain->holder(pos);
  ctx_.send(holder, make_task(rid, pos));
}

// The lost position `pos` was refilled with the same input (so the same
// bytes): its parent keeps the prefix it folded and reads the rest from the
// new holder. A leaf's output is its input, read straight from there; an
// inner position's task is sent through the parent, which sets where it
// starts. Nothing above the parent changes.
void ReduceCoordinator::resume_position(std::uint64_t rid, std::uint32_t pos, const ObjectID& old_output) {
  Reduction& c = reduces_.at(rid);
  scheduler::TreeChain& chain = *c.chain;
  const std::uint32_t up = chain.parent(pos);
  msg::ReduceRetarget m;
  m.task = chain.task(up);
  m.old_upstream = old_output;
  m.holder = chain.holder(pos);
  if (chain.shape().children[pos].empty()) {
    m.next.output = chain.output(pos);
    m.next.size = c.size;
  } else {
    m.next = make_task(rid, pos, true);
  }
  LOG_DEBUG("reduce " << c.opts.target.short_hex() << ": position " << pos << " resumes on rank " << m.holder
                      << " for the task at position " << up);
  ctx_.send(chain.holder(up), m);
}

// A participant died. Positions it held whose output is still needed are
// vacated and refilled by the next arrival: for k = n the same input again
// (a copy or a re-put), for k < n any unused one. Only the positions above
// them are recomputed; the rest of the tree-chain keeps its progress.
void ReduceCoordinator::repair_reduce(std::uint64_t rid, const std::string& why) {
  auto it = reduces_.find(rid);
  if (it == reduces_.end() || it->second.finished) return;
  Reduction& c = it->second;
  if (c.striped) return repair_stripes(rid, why);
  if (!c.chain) return restart_reduce(rid, why);
  if (++c.repairs > static_cast<int>(4 * ctx_.world)) {
    return finish_reduce(rid, peer_failure("reduce into " + c.opts.target.short_hex() + " lost " +
                                           std::to_string(c.repairs) + " participants; last: " + why));
  }
  ChainEffects fx(*this, rid);
  if (c.chain->repair(fx)) LOG_WARN("reduce into " << c.opts.target.short_hex() << " repaired: " << why);
}

// Striped allreduce: the object is cut into one stripe per input holder;
// stripe j is reduced by a chain through every holder that ends at holder j
// (so each node sends and receives (m-1)/m of the object), and the target is
// declared as the composite of the stripes, which every reader pulls from
// their producers (another (m-1)/m each way). Both phases overlap because a
// stripe is readable while it is still being reduced.
void ReduceCoordinator::run_striped(std::uint64_t rid) {
  Reduction& c = reduces_.at(rid);
  const std::uint64_t size = c.pending.front().size;
  const std::size_t esize = element_size(c.opts.dtype);
  std::map<Rank, std::vector<ObjectID>> by_holder;
  for (const auto& r : c.pending) {
    if (r.size != size || r.size % esize != 0) {
      return finish_reduce(rid, invalid_argument("reduce inputs differ in size or are not whole elements (" +
                                                 r.id.short_hex() + ": " + std::to_string(r.size) + " B)"));
    }
    by_holder[r.holder].push_back(r.id);
  }
  std::vector<Rank> holders;
  std::vector<std::size_t> counts;
  for (const auto& [h, ids] : by_holder) {
    holders.push_back(h);
    counts.push_back(ids.size());
  }
  // Too small to be worth m chains, nothing to spread, or inputs that came
  // with their bytes (they fold here, whatever became of their holders):
  // the dynamic form.
  const bool have_bytes =
      std::any_of(c.pending.begin(), c.pending.end(), [](const msg::LocateReply& r) { return r.has_inline; });
  if (!scheduler::should_stripe(holders.size(), size, have_bytes, ctx_.opts.chunk_size)) {
    auto pending = std::move(c.pending);
    for (const auto& r : pending) {
      if (reduces_.count(rid)) arrive(rid, r);
    }
    return;
  }
  c.striped = true;
  c.size = size;
  c.striped_holders.insert(holders.begin(), holders.end());
  for (const auto& r : c.pending) c.striped_used.push_back(r.id);
  c.pending.clear();
  c.stripe_inputs = std::move(by_holder);
  const std::vector<scheduler::Stripe> stripes = scheduler::plan_stripes(counts, size);
  c.stripes.resize(stripes.size());
  for (std::size_t j = 0; j < stripes.size(); ++j) {
    const scheduler::Stripe& s = stripes[j];
    auto& run = c.stripes[j];
    run.end = holders[j];
    run.offset = s.offset;
    run.length = s.length;
    run.part =
        ObjectID::from_name(c.opts.target.hex() + "/stripe/" + std::to_string(rid) + "/" + std::to_string(j));
    run.done = s.length == 0;
    if (run.done) continue;
    std::vector<std::pair<ObjectID, Rank>> hops;
    for (const auto& hop : s.chain) {
      const Rank holder = holders[hop.holder];
      hops.emplace_back(c.stripe_inputs[holder][hop.input], holder);
    }
    issue_stripe(rid, j, hops);
  }
  LOG_DEBUG("reduce " << c.opts.target.short_hex() << ": striped over " << holders.size() << " holders");
  publish_stripes(rid);
}

void ReduceCoordinator::issue_stripe(std::uint64_t rid, std::size_t j,
                                     const std::vector<std::pair<ObjectID, Rank>>& hops) {
  Reduction& c = reduces_.at(rid);
  auto& run = c.stripes[j];
  // A redone stripe's names are new: readers must not take the old
  // attempt's partial part for it.
  std::string name = c.opts.target.hex() + "/stripe/" + std::to_string(rid) + "/" + std::to_string(j);
  if (c.repairs > 0) {
    name += "/r" + std::to_string(c.repairs);
    run.part = ObjectID::from_name(name);
  }
  msg::Upstream prev{hops[0].first, hops[0].second, run.offset};
  for (std::size_t i = 1; i < hops.size(); ++i) {
    const bool last = i + 1 == hops.size();
    const auto& [input, holder] = hops[i];
    ObjectID out = last ? run.part : ObjectID::from_name(name + "/" + std::to_string(i));
    if (!last) c.intermediates.push_back(out);
    msg::ReduceTask t;
    t.task = (static_cast<std::uint64_t>(ctx_.me) << 40) | ctx_.next_request();
    t.coordinator = ctx_.me;
    t.output = out;
    t.input = input;
    t.input_offset = run.offset;
    t.size = run.length;
    t.op = static_cast<std::uint8_t>(c.opts.op);
    t.dtype = static_cast<std::uint8_t>(c.opts.dtype);
    t.upstreams.push_back(prev);
    t.target = c.opts.target;
    task_to_reduce_[t.task] = rid;
    c.task_where[t.task] = {holder, out};
    c.ran.insert(holder);
    if (last) run.task = t.task;
    LOG_DEBUG("reduce " << c.opts.target.short_hex() << ": stripe " << j << " hop " << i << " on rank "
                        << holder << " task " << t.task << " output " << out.short_hex());
    ctx_.send(holder, t);
    prev = msg::Upstream{out, holder, 0};
  }
}

// The target as the composite of the stripes (a second declaration
// replaces the first: kept parts keep their ids and holders).
void ReduceCoordinator::publish_stripes(std::uint64_t rid) {
  Reduction& c = reduces_.at(rid);
  msg::PublishComposite comp;
  comp.id = c.opts.target;
  comp.size = c.size;
  for (const auto& run : c.stripes) comp.parts.push_back({run.part, run.end, run.offset, run.length});
  ctx_.send(ctx_.shard_of(c.opts.target), comp);
}

// A holder of a striped attempt died. Stripes done on live holders are
// results already; every task still running belongs to a stripe that is
// computed again, so all are stopped, and every intermediate is garbage.
// The dead holders' inputs are located again: their re-puts (or other
// copies) answer, and the redo waits for them, as the dynamic form does.
void ReduceCoordinator::repair_stripes(std::uint64_t rid, const std::string& why) {
  auto it = reduces_.find(rid);
  if (it == reduces_.end() || it->second.finished) return;
  Reduction& c = it->second;
  if (++c.repairs > static_cast<int>(4 * ctx_.world)) {
    return finish_reduce(rid, peer_failure("reduce into " + c.opts.target.short_hex() + " lost " +
                                           std::to_string(c.repairs) + " participants; last: " + why));
  }
  LOG_WARN("reduce into " << c.opts.target.short_hex() << " repairs its stripes: " << why);
  // Landing: our get of the target fails on the lost part and looks the
  // composite up again; we land once more when the redone stripes are done.
  c.landing.reset();
  c.land.reset();
  cancel_open_tasks(c);
  for (const auto& id : c.intermediates) ctx_.send(ctx_.shard_of(id), msg::Remove{id, 0, ctx_.me});
  c.intermediates.clear();
  for (auto h = c.stripe_inputs.begin(); h != c.stripe_inputs.end();) {
    if (ctx_.alive_rank(h->first)) {
      ++h;
      continue;
    }
    for (const auto& id : h->second) {
      if (c.awaiting.insert(id).second) locate(rid, id);
    }
    h = c.stripe_inputs.erase(h);
  }
  if (c.awaiting.empty()) apply_stripe_repair(rid);
}

void ReduceCoordinator::stripe_input_back(std::uint64_t rid, const msg::LocateReply& r) {
  Reduction& c = reduces_.at(rid);
  if (!c.awaiting.erase(r.id)) return;
  if (r.size != c.size) {
    return finish_reduce(rid,
                         invalid_argument("reduce input " + r.id.short_hex() + " came back with " +
                                          std::to_string(r.size) + " bytes, not " + std::to_string(c.size)));
  }
  c.stripe_inputs[r.holder].push_back(r.id);
  if (c.awaiting.empty()) apply_stripe_repair(rid);
}

// Every input is placed again: apply scheduler::plan_stripe_repair.
void ReduceCoordinator::apply_stripe_repair(std::uint64_t rid) {
  Reduction& c = reduces_.at(rid);
  std::vector<Rank> holders;
  std::vector<std::size_t> counts;
  for (const auto& [h, ids] : c.stripe_inputs) {
    holders.push_back(h);
    counts.push_back(ids.size());
  }
  std::vector<scheduler::StripeState> state;
  for (const auto& run : c.stripes) {
    scheduler::StripeState st;
    st.length = run.length;
    st.done = run.done;
    auto at = std::find(holders.begin(), holders.end(), run.end);
    if (at != holders.end() && ctx_.alive_rank(run.end))
      st.end = static_cast<std::size_t>(at - holders.begin());
    state.push_back(st);
  }
  const auto fixes = scheduler::plan_stripe_repair(state, counts);
  std::uint32_t kept = 0, redone = 0;
  for (std::size_t j = 0; j < fixes.size(); ++j) {
    auto& run = c.stripes[j];
    run.end = holders[fixes[j].end];
    if (!fixes[j].redo) {
      if (run.length > 0) kept++;
      continue;
    }
    redone++;
    run.done = false;
    std::vector<std::pair<ObjectID, Rank>> hops;
    for (const auto& hop : fixes[j].chain) {
      const Rank holder = holders[hop.holder];
      hops.emplace_back(c.stripe_inputs[holder][hop.input], holder);
    }
    issue_stripe(rid, j, hops);
  }
  c.stripes_kept += kept;
  c.stripes_redone += redone;
  c.striped_holders = {holders.begin(), holders.end()};
  LOG_WARN("reduce into " << c.opts.target.short_hex() << ": kept " << kept << " stripes, redoing " << redone
                          << " over " << holders.size() << " holders");
  publish_stripes(rid);
  if (redone == 0) stripes_done(rid);
}

std::optional<Rank> ReduceCoordinator::task_rank(std::uint64_t task) const {
  auto t = task_to_reduce_.find(task);
  if (t == task_to_reduce_.end()) return std::nullopt;
  auto c = reduces_.find(t->second);
  if (c == reduces_.end()) return std::nullopt;
  auto w = c->second.task_where.find(task);
  if (w == c->second.task_where.end()) return std::nullopt;
  return w->second.first;
}

void ReduceCoordinator::on_reduce_done(const msg::ReduceDone& d) {
  auto tit = task_to_reduce_.find(d.task);
  if (tit == task_to_reduce_.end()) return;  // cancelled, or of a finished reduce
  std::uint64_t rid = tit->second;
  auto it = reduces_.find(rid);
  if (it == reduces_.end()) return;
  Reduction& c = it->second;
  if (d.code == static_cast<std::uint16_t>(StatusCode::kPeerFailure)) {
    // A task that loses an upstream's holder waits (ReduceLost); one that
    // ends with a peer failure found its upstream gone for another reason
    // (withdrawn, or never made): issue it again, and everything above it,
    // which folded its output.
    ChainEffects fx(*this, rid);
    if (c.striped || !c.chain || !c.chain->task_lost(d.task, fx)) return restart_reduce(rid, d.message);
    if (++c.repairs > static_cast<int>(4 * ctx_.world)) {
      return finish_reduce(rid, peer_failure("reduce into " + c.opts.target.short_hex() + ": " + d.message));
    }
    return c.chain->issue_ready(fx);
  }
  task_to_reduce_.erase(tit);
  c.task_where.erase(d.task);
  if (d.code != 0) {
    return finish_reduce(rid, Status(static_cast<StatusCode>(d.code),
                                     "reduce into " + c.opts.target.short_hex() + ": " + d.message));
  }
  if (c.striped) {
    for (auto& run : c.stripes) {
      if (run.task != d.task) continue;
      run.done = true;
      run.task = 0;
    }
    return stripes_done(rid);
  }
  if (!c.chain || !c.chain->task_done(d.task)) return;
  ReduceResult res;
  res.used = used(c);
  res.depth = c.chain ? c.chain->shape().depth : 0;
  res.striped = c.striped;
  res.recomputed = c.chain ? c.chain->recomputed() : 0;
  res.restarts = static_cast<std::uint32_t>(c.attempt);
  res.stripes_kept = c.stripes_kept;
  res.stripes_redone = c.stripes_redone;
  // A striped target is a composite of stripes held everywhere: it too is
  // not safe until assembled here.
  const Rank root_holder = c.chain && !c.striped ? c.chain->holder(c.chain->root()) : ctx_.me;
  if (c.striped || root_holder != ctx_.me) return land(rid, std::move(res), root_holder);
  finish_reduce(rid, std::move(res));
}

// A stripe reported done: once all are (and no repair waits for inputs),
// the striped target is assembled here.
void ReduceCoordinator::stripes_done(std::uint64_t rid) {
  Reduction& c = reduces_.at(rid);
  if (!c.awaiting.empty() || c.landing) return;
  for (const auto& run : c.stripes) {
    if (!run.done) return;
  }
  ReduceResult res;
  res.used = c.striped_used;
  res.striped = true;
  res.restarts = static_cast<std::uint32_t>(c.attempt);
  res.stripes_kept = c.stripes_kept;
  res.stripes_redone = c.stripes_redone;
  land(rid, std::move(res), ctx_.me);
}

// The root ran on another node: the reduce is not over until the target is
// complete here, so that the root holder's death before then is repaired
// here rather than leaving the only copy to die with it. A caller that
// reads the target (the common case) is already fetching it, and this get
// joins that transfer.
void ReduceCoordinator::land(std::uint64_t rid, ReduceResult res, Rank root_holder) {
  Reduction& c = reduces_.at(rid);
  c.landing = std::move(res);
  c.root_holder = root_holder;
  for (Rank r : c.striped_holders) {
    if (!ctx_.alive_rank(r)) return repair_stripes(rid, "rank " + std::to_string(r) + " failed");
  }
  if (!ctx_.alive_rank(root_holder)) return relaunch(rid, "rank " + std::to_string(root_holder) + " failed");
  auto st = std::make_shared<detail::GetState>();
  st->id = c.opts.target;
  c.land = st;
  // on_ready may run inside the fetcher's fulfilment: finish from the loop.
  ObjectFuture(st).on_ready([this, st] { asio::post(ctx_.io, [this, st] { on_landed(st); }); });
  fetcher_.start_get(st, false);
}

void ReduceCoordinator::on_landed(const std::shared_ptr<hoplite::detail::GetState>& st) {
  for (auto& [rid, c] : reduces_) {
    if (c.land != st) continue;
    if (!c.landing || c.finished) return;
    Result<ObjectView> got = Status(StatusCode::kInternal, "unset");
    {
      std::lock_guard lock(st->mu);
      got = *st->result;
    }
    if (!got.is_ok()) {
      return finish_reduce(rid, Status(got.status().code(), "reduce into " + c.opts.target.short_hex() +
                                                                ": the target did not reach the caller: " +
                                                                got.status().message()));
    }
    ReduceResult res = std::move(*c.landing);
    return finish_reduce(rid, std::move(res));
  }
}

// The root's holder died before the target was complete here (or, for
// k < n, while the root was being written): remove the
// target everywhere (readers drop their prefix and wait for a new put), and
// only once that is acked start the next attempt, whose root may write
// other bytes under the same id.
void ReduceCoordinator::relaunch(std::uint64_t rid, const std::string& why) {
  Reduction& c = reduces_.at(rid);
  if (c.relaunching) return;
  c.relaunching = true;
  c.landing.reset();
  c.land.reset();
  LOG_WARN("reduce into " << c.opts.target.short_hex() << " lost a part of its result (" << why
                          << ") before the target arrived here; removing it and reducing again");
  dir_.request_here(msg::Remove{c.opts.target, 0, ctx_.me}, [this, rid, why](Status) {
    auto it = reduces_.find(rid);
    if (it == reduces_.end() || it->second.finished || ctx_.stopping) return;
    restart_reduce(rid, why);
  });
  // After the Remove on the same connection, so the shard parks our fresh
  // lookup instead of naming our own dropped prefix.
  fetcher_.delete_local(c.opts.target);
}

void ReduceCoordinator::finish_reduce(std::uint64_t rid, Result<ReduceResult> r) {
  auto it = reduces_.find(rid);
  if (it == reduces_.end()) return;
  Reduction& c = it->second;
  if (c.finished) return;
  c.finished = true;
  if (c.deadline_timer) c.deadline_timer->cancel();
  if (!r.is_ok()) LOG_WARN(r.status().to_string());
  cancel_open_tasks(c);  // a failed reduce leaves nothing running
  // The target is complete, so the partial results are garbage now.
  for (const auto& id : c.intermediates) ctx_.send(ctx_.shard_of(id), msg::Remove{id, 0, ctx_.me});
  // ...and what the tasks left is the result: it outlives us. Sent before
  // the caller hears, so that our death after the return cannot beat it.
  if (r.is_ok()) {
    for (Rank h : c.ran) {
      if (ctx_.alive_rank(h)) ctx_.send(h, msg::ReduceRelease{c.opts.target});
    }
  }
  c.done->set_value(std::move(r));
  std::erase_if(locate_to_reduce_, [rid](const auto& kv) { return kv.second == rid; });
  std::erase_if(task_to_reduce_, [rid](const auto& kv) { return kv.second == rid; });
  std::erase_if(locate_ids_, [this](const auto& kv) { return !locate_to_reduce_.count(kv.first); });
  reduces_.erase(it);
}

// Locates still waiting at a shard that moved.
void ReduceCoordinator::on_shards_moved(const std::vector<bool>& old_alive) {
  for (const auto& [req, id] : locate_ids_) {
    if (ctx_.shard_in(id, old_alive) == ctx_.shard_of(id)) continue;
    ctx_.send(ctx_.shard_of(id), locate_msg(req, id));
  }
}

// Reduces whose plan used the dead node: a tree-chain recomputes the path
// above the lost positions, a striped allreduce the stripes it lost.
void ReduceCoordinator::on_peer_failed(Rank f) {
  std::vector<std::uint64_t> repair, restart, stripes;
  std::vector<std::uint64_t> relaunches;
  for (auto& [rid, c] : reduces_) {
    if (c.relaunching || c.finished) continue;
    if (c.striped) {
      if (c.striped_holders.count(f)) stripes.push_back(rid);
      continue;
    }
    if (c.landing) {
      // Done but for the target's trip here: only the root's holder matters.
      if (c.root_holder == f) relaunches.push_back(rid);
      continue;
    }
    // A root being written on f may already be streaming to readers: for
    // k < n the next root may fold other inputs, so, as above, the target
    // goes first. (For k = n it folds the same ones, so readers may resume.)
    if (c.chain && c.k < c.opts.inputs.size() && c.chain->task(c.chain->root()) != 0 &&
        c.chain->holder(c.chain->root()) == f) {
      c.root_holder = f;
      relaunches.push_back(rid);
      continue;
    }
    bool hit = c.chain && c.chain->uses(f);
    bool pending_hit = c.reserved && c.reserved->holder == f;
    // (An answer that brought the bytes does not need its holder.)
    for (const auto& r : c.pending) pending_hit = pending_hit || (r.holder == f && !r.has_inline);
    if (pending_hit) {
      restart.push_back(rid);
    } else if (hit) {
      repair.push_back(rid);
    }
  }
  const std::string lost = "rank " + std::to_string(f) + " failed";
  for (auto rid : relaunches) relaunch(rid, lost);
  for (auto rid : restart) restart_reduce(rid, lost);
  for (auto rid : repair) repair_reduce(rid, lost);
  for (auto rid : stripes) repair_stripes(rid, lost);
}

void ReduceCoordinator::on_stop() {
  for (auto& [rid, c] : reduces_) {
    if (!c.finished) c.done->set_value(Status(StatusCode::kCancelled, "node shut down"));
  }
  reduces_.clear();
}

}  // namespace hoplite::node
