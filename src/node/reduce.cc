// Reduce: the coordinator that places inputs into a tree-chain in arrival
// order, and the tasks that run one position of it, chunk by chunk.
//
// Coordinator (the node that called reduce): sends Locate for every input to
// its shard; each LocateReply is an arrival. Arrival i takes position
// shape.fill[i]. A position without children that is not the root needs no
// work: its partial result is the input object itself. Any other position
// becomes a ReduceTask sent to the input's holder, naming the upstream
// objects (its children's results) and where they are. The root's output is
// the target. When the root task reports done, the reduce is complete and
// the intermediates are removed.
//
// Task (at the input's holder): output = input op upstream_1 op ... streamed:
// the output is published as a partial copy at once (so a parent task, or any
// get of the target, can pull it while it grows), each upstream is pulled in
// chunk-sized pieces into a small ring of scratch slots, and each landed
// chunk is folded into the output; a chunk of the output is valid once every
// upstream has been folded into it, and the valid prefix is announced to
// watchers like any other object's progress.
//
// Failures (repair_reduce): a dead holder's positions that are still needed
// are vacated and refilled by the next arrival. The same input back (same
// id, same bytes) resumes: the parent keeps what it folded and the lost
// position is computed again only from there (ReduceRetarget). Another
// input recomputes the path above the position (ReduceCancel, then fresh
// tasks); everything below and beside it keeps running. A striped allreduce
// has no such structure and restarts (restart_reduce).
#include <algorithm>
#include <cstring>

#include "node/node_impl.h"
#include "reduce/kernels.h"

namespace hoplite {

namespace {
// A parent task can ask for its child's output before the child's task
// message has landed at the child's holder; it asks again, this often, for
// this long, before it gives up.
constexpr auto kWatchRetryDelay = std::chrono::milliseconds(20);
constexpr int kWatchRetries = 250;
constexpr std::uint32_t kNoParent = 0xffffffffu;
}  // namespace

// ------------------------------------------------------------ coordinator

std::uint64_t Node::Impl::start_reduce(ReduceOptions o,
                                       std::shared_ptr<std::promise<Result<ReduceResult>>> done,
                                       std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::uint64_t rid = next_reduce++;
  ReduceCoord& c = reduces[rid];
  c.k = o.k == 0 ? o.inputs.size() : o.k;
  c.opts = std::move(o);
  c.done = std::move(done);
  c.deadline = deadline.value_or(std::chrono::steady_clock::now() + c.opts.timeout);
  c.deadline_timer = std::make_shared<asio::steady_timer>(io, c.deadline);
  c.deadline_timer->async_wait([this, rid](error_code ec) {
    auto it = reduces.find(rid);
    if (ec || stopping || it == reduces.end() || it->second.finished) return;
    finish_reduce(rid,
                  timeout_error("reduce into " + it->second.opts.target.short_hex() + " not complete after " +
                                std::to_string(it->second.opts.timeout.count()) + " ms"));
  });
  // An allreduce may stripe when every input already exists: give the
  // locate replies a short window to come in before choosing.
  if (c.opts.allow_stripes && c.k == c.opts.inputs.size() && world > 1) {
    c.deciding = true;
    c.started = std::chrono::steady_clock::now();
    c.decide_by =
        c.started + std::chrono::microseconds(std::max<long>(2000, static_cast<long>(link_latency * 40e6)));
    c.decide_timer = std::make_shared<asio::steady_timer>(io);
    arm_decision(rid);
  }
  for (const auto& id : c.opts.inputs) {
    std::uint64_t req = next_request++;
    locate_to_reduce[req] = rid;
    locate_ids[req] = id;
    send_to(shard_of(id), msg::Locate{id, req, me});
  }
  return rid;
}

// A striped allreduce lost a participant (or the plan was not made yet):
// cancel this attempt and plan again from the inputs' surviving copies
// (inputs lost with the node wait for their re-put). Every stripe chain
// passes through every holder, so no part of a striped attempt survives a
// failure; tree-chains are repaired instead (repair_reduce).
void Node::Impl::restart_reduce(std::uint64_t rid, const std::string& why) {
  auto it = reduces.find(rid);
  if (it == reduces.end() || it->second.finished) return;
  ReduceCoord& c = it->second;
  if (c.attempt >= 3)
    return finish_reduce(rid, peer_failure("reduce into " + c.opts.target.short_hex() + " failed " +
                                           std::to_string(c.attempt + 1) + " times; last: " + why));
  LOG_WARN("reduce into " << c.opts.target.short_hex() << " restarts: " << why);
  cancel_open_tasks(c);
  for (const auto& id : c.intermediates) send_to(shard_of(id), msg::Remove{id, 0, me});
  // A striped attempt declared the target as a composite of its stripes;
  // that record (and the stripes) must go, or readers would keep reading
  // the dead attempt's parts instead of the new target. Sent before the new
  // attempt's messages on the same connection, so the shard sees it first.
  if (c.striped) send_to(shard_of(c.opts.target), msg::Remove{c.opts.target, 0, me});
  ReduceOptions opts_copy = c.opts;
  auto done = c.done;
  int attempt = c.attempt + 1;
  const auto c_deadline = c.deadline;
  if (c.deadline_timer) c.deadline_timer->cancel();
  std::erase_if(locate_to_reduce, [rid](const auto& kv) { return kv.second == rid; });
  std::erase_if(task_to_reduce, [rid](const auto& kv) { return kv.second == rid; });
  std::erase_if(locate_ids, [this](const auto& kv) { return !locate_to_reduce.count(kv.first); });
  reduces.erase(it);
  std::uint64_t nrid = start_reduce(std::move(opts_copy), std::move(done), c_deadline);
  reduces.at(nrid).attempt = attempt;
}

// Stops the tasks of an attempt that is given up, so that they neither
// use bandwidth nor leave outputs that readers might take for the result.
void Node::Impl::cancel_open_tasks(ReduceCoord& c) {
  for (const auto& [task, where] : c.task_where) {
    if (alive_rank(where.first)) send_to(where.first, msg::ReduceCancel{task, where.second});
    task_to_reduce.erase(task);
  }
  c.task_where.clear();
}

void Node::Impl::on_locate_reply(const msg::LocateReply& r) {
  auto lit = locate_to_reduce.find(r.request);
  if (lit == locate_to_reduce.end()) return;
  if (r.holder >= world || (!alive.empty() && !alive[r.holder])) {
    // A shard that has not yet noticed the failure named a dead holder:
    // ask again shortly (it forgets the rank within a failure timeout, or a
    // re-put gives a live holder), instead of sending work to the dead.
    auto timer = std::make_shared<asio::steady_timer>(io, opts.failure_timeout / 4);
    timer->async_wait([this, timer, req = r.request, id = r.id](error_code) {
      if (!stopping && locate_to_reduce.count(req)) send_to(shard_of(id), msg::Locate{id, req, me});
    });
    return;
  }
  std::uint64_t rid = lit->second;
  locate_to_reduce.erase(lit);
  locate_ids.erase(r.request);
  auto it = reduces.find(rid);
  if (it == reduces.end()) return;
  ReduceCoord& c = it->second;
  if (c.deciding) {
    c.pending.push_back(r);
    if (c.pending.size() == 1) {
      // Inputs sealed "at the same time" by different nodes reach their
      // shards a little apart; waiting 1 % of the object's transfer time for
      // them costs little and keeps a large allreduce from losing the
      // striped form to a few milliseconds of skew.
      double transfer = static_cast<double>(r.size) / std::max(link_bandwidth, 1.0);
      auto extra = std::chrono::microseconds(static_cast<long>(std::min(transfer * 0.01, 0.05) * 1e6));
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
void Node::Impl::arm_decision(std::uint64_t rid) {
  ReduceCoord& c = reduces.at(rid);
  c.decide_timer->expires_at(c.decide_by);
  c.decide_timer->async_wait([this, rid](error_code ec) {
    auto it = reduces.find(rid);
    if (ec || stopping || it == reduces.end() || !it->second.deciding) return;
    if (std::chrono::steady_clock::now() < it->second.decide_by) return arm_decision(rid);
    it->second.deciding = false;
    auto pending = std::move(it->second.pending);
    for (const auto& r : pending) {
      if (reduces.count(rid)) arrive(rid, r);
    }
  });
}

void Node::Impl::arrive(std::uint64_t rid, const msg::LocateReply& r) {
  ReduceCoord& c = reduces.at(rid);
  if (c.finished || c.used.size() >= c.k) return;  // a k-of-n straggler: not needed

  const std::size_t esize = element_size(c.opts.dtype);
  if (!c.planned) {
    if (r.size % esize != 0) {
      return finish_reduce(
          rid, invalid_argument("reduce input " + r.id.short_hex() + " has " + std::to_string(r.size) +
                                " bytes, not a multiple of " + std::to_string(esize)));
    }
    c.size = r.size;
    scheduler::ReduceCost cost{static_cast<double>(r.size), link_bandwidth, link_latency};
    c.shape = c.opts.depth ? scheduler::plan_reduce_with_depth(static_cast<std::uint32_t>(c.k), *c.opts.depth)
                           : scheduler::plan_reduce(static_cast<std::uint32_t>(c.k), cost);
    c.pos_holder.assign(c.k, msg::kNoRank);
    c.pos_output.assign(c.k, ObjectID());
    c.pos_input.assign(c.k, ObjectID());
    c.pos_parent.assign(c.k, kNoParent);
    for (std::uint32_t p = 0; p < c.k; ++p) {
      for (auto kid : c.shape.children[p]) c.pos_parent[kid] = p;
    }
    c.pos_task.assign(c.k, 0);
    c.pos_gen.assign(c.k, 0);
    c.pos_filled.assign(c.k, 0);
    c.pos_stale.assign(c.k, 0);
    c.pos_done.assign(c.k, 0);
    c.pos_resume.assign(c.k, 0);
    c.pos_partial.assign(c.k, 0);
    c.planned = true;
    LOG_DEBUG("reduce " << c.opts.target.short_hex() << ": " << c.k << " of " << c.opts.inputs.size()
                        << " inputs, " << r.size << " B, depth " << c.shape.depth);
  } else if (r.size != c.size) {
    return finish_reduce(
        rid, invalid_argument("reduce inputs differ in size: " + std::to_string(c.size) + " and " +
                              std::to_string(r.size) + " (" + r.id.short_hex() + ")"));
  }

  // An input on this node that arrives before the last is kept for the root
  // position: the target then lands here, where the caller will read it,
  // instead of crossing the network once more (and this node's link does
  // not carry a chain stream and the target at once). It was one of the
  // first k arrivals either way, so the inputs used do not change.
  if (std::find(c.used.begin(), c.used.end(), r.id) != c.used.end()) return;  // asked again after a failure
  const std::size_t placed = c.used.size() + (c.reserved ? 1 : 0);
  if (r.holder == me && !c.reserved && c.vacant.empty() && placed + 1 < c.k) {
    c.reserved = msg::LocateReply(r);
    return;
  }
  place_arrival(rid, r.id, r.holder);
  if (c.reserved && c.next_fill + 1 == c.k) {
    auto keep = *c.reserved;
    place_arrival(rid, keep.id, keep.holder);
  }
}

void Node::Impl::place_arrival(std::uint64_t rid, const ObjectID& input, Rank holder) {
  ReduceCoord& c = reduces.at(rid);
  std::uint32_t pos;
  if (!c.vacant.empty()) {
    // A refill: the position a failure vacated. Lower positions in fill
    // order first, so children are placed before their parents.
    auto order = [&](std::uint32_t p) {
      return std::find(c.shape.fill.begin(), c.shape.fill.end(), p) - c.shape.fill.begin();
    };
    auto it = std::min_element(c.vacant.begin(), c.vacant.end(),
                               [&](std::uint32_t a, std::uint32_t b) { return order(a) < order(b); });
    pos = *it;
    c.vacant.erase(it);
  } else {
    pos = c.shape.fill[c.next_fill++];
  }
  const ObjectID old_input = c.pos_input[pos];
  c.used.push_back(input);
  c.pos_holder[pos] = holder;
  c.pos_input[pos] = input;
  c.pos_filled[pos] = 1;
  c.pos_done[pos] = 0;
  if (c.pos_resume[pos]) {
    c.pos_resume[pos] = 0;
    const std::uint32_t up = c.pos_parent[pos];
    // (A parent that finished before the refill already gave the position
    // back, with its old input: on_reduce_done.)
    const bool parent_running =
        c.pos_task[up] != 0 && !c.pos_stale[up] && !c.pos_done[up] && alive_rank(c.pos_holder[up]);
    // Its children's outputs must be whole and ready: one computed from
    // where a previous task of this position had got to lacks what a
    // restart from the parent's (earlier) point needs.
    bool kids_ready = true;
    for (auto kid : c.shape.children[pos]) {
      kids_ready = kids_ready && !c.pos_partial[kid] && c.pos_filled[kid] && !c.pos_stale[kid] &&
                   alive_rank(c.pos_holder[kid]);
    }
    if (parent_running && kids_ready && input == old_input)
      return resume_position(rid, pos, c.pos_output[pos]);
    // Another input: the parent's prefix folded the lost one, so the path
    // above is recomputed.
    stale_up_from(c, pos);
  }
  if (c.shape.children[pos].empty() && pos != c.shape.root) {
    c.pos_output[pos] = input;  // a leaf's partial result is its input
  } else {
    mark_whole_stale(c, pos);
  }
  issue_ready(rid);
}

// `pos` will be computed again from byte 0: children computed only from a
// resume point must then be computed whole too (and theirs, recursively).
void Node::Impl::mark_whole_stale(ReduceCoord& c, std::uint32_t pos) {
  c.pos_stale[pos] = 1;
  for (auto kid : c.shape.children[pos]) {
    if (!c.pos_partial[kid]) continue;
    drop_position_task(c, kid, true);
    mark_whole_stale(c, kid);
  }
}

// Issues every stale position whose children are all placed on live
// holders. Fill order is post-order, so one pass settles a whole path.
void Node::Impl::issue_ready(std::uint64_t rid) {
  ReduceCoord& c = reduces.at(rid);
  bool vacated = false;
  for (std::uint32_t i = 0; i < c.k; ++i) {
    const std::uint32_t pos = c.shape.fill[i];
    if (!c.pos_filled[pos] || !c.pos_stale[pos]) continue;
    // A position that starts over needs every child's output again, and its
    // own input: any of them left on a dead rank (it was not needed when
    // the rank died) has to be found again.
    for (auto kid : c.shape.children[pos]) {
      if (c.pos_filled[kid] && !alive_rank(c.pos_holder[kid])) {
        vacate_position(c, kid);
        vacated = true;
      }
    }
    if (!alive_rank(c.pos_holder[pos])) {
      vacate_position(c, pos);
      vacated = true;
      continue;
    }
    bool ready = true;
    for (auto kid : c.shape.children[pos]) {
      ready = ready && c.pos_filled[kid] && !c.pos_stale[kid] && alive_rank(c.pos_holder[kid]);
    }
    if (ready) issue_task(rid, pos);
  }
  if (vacated) locate_unused(rid);
}

// Takes `pos` out of the plan (its holder is dead); the next arrival refills it.
void Node::Impl::vacate_position(ReduceCoord& c, std::uint32_t pos) {
  std::erase(c.used, c.pos_input[pos]);
  drop_position_task(c, pos, false);
  c.pos_filled[pos] = 0;
  c.pos_stale[pos] = 0;
  c.pos_resume[pos] = 0;
  c.vacant.push_back(pos);
}

// Asks again for every input not in the plan: the lost ones (a re-put or
// another copy) and, for k < n, the spares whose answers were dropped.
void Node::Impl::locate_unused(std::uint64_t rid) {
  ReduceCoord& c = reduces.at(rid);
  std::unordered_set<ObjectID> asking;
  for (const auto& [req, r] : locate_to_reduce) {
    if (r == rid) asking.insert(locate_ids[req]);
  }
  for (const auto& id : c.opts.inputs) {
    if (asking.count(id) || std::find(c.used.begin(), c.used.end(), id) != c.used.end()) continue;
    if (c.reserved && c.reserved->id == id) continue;
    std::uint64_t req = next_request++;
    locate_to_reduce[req] = rid;
    locate_ids[req] = id;
    send_to(shard_of(id), msg::Locate{id, req, me});
  }
}

// The task for `pos` under a fresh output name (the root's is the target),
// registered as the position's current task.
msg::ReduceTask Node::Impl::make_task(std::uint64_t rid, std::uint32_t pos) {
  ReduceCoord& c = reduces.at(rid);
  const bool is_root = pos == c.shape.root;
  std::string name = c.opts.target.hex() + "/partial/" + std::to_string(rid) + "/" + std::to_string(pos);
  if (c.pos_gen[pos] > 0) {
    name += "/" + std::to_string(c.pos_gen[pos]);
    c.recomputed++;
  }
  c.pos_gen[pos]++;
  ObjectID out = is_root ? c.opts.target : ObjectID::from_name(name);
  c.pos_output[pos] = out;
  if (!is_root) c.intermediates.push_back(out);
  msg::ReduceTask t;
  t.task = (static_cast<std::uint64_t>(me) << 40) | next_request++;
  t.coordinator = me;
  t.output = out;
  t.input = c.pos_input[pos];
  t.size = c.size;
  t.op = static_cast<std::uint8_t>(c.opts.op);
  t.dtype = static_cast<std::uint8_t>(c.opts.dtype);
  for (auto kid : c.shape.children[pos]) t.upstreams.push_back({c.pos_output[kid], c.pos_holder[kid], 0});
  task_to_reduce[t.task] = rid;
  c.task_pos[t.task] = pos;
  c.task_where[t.task] = {c.pos_holder[pos], out};
  c.pos_task[pos] = t.task;
  c.pos_stale[pos] = 0;
  c.pos_done[pos] = 0;
  c.pos_partial[pos] = 0;
  if (is_root) c.root_task = t.task;
  LOG_DEBUG("reduce " << c.opts.target.short_hex() << ": position " << pos << " (" << t.input.short_hex()
                      << ") runs on rank " << c.pos_holder[pos] << ", output " << out.short_hex());
  return t;
}

void Node::Impl::issue_task(std::uint64_t rid, std::uint32_t pos) {
  ReduceCoord& c = reduces.at(rid);
  send_to(c.pos_holder[pos], make_task(rid, pos));
}

// The lost position `pos` was refilled with the same input (so the same
// bytes): its parent keeps the prefix it folded and reads the rest from the
// new holder. A leaf's output is its input, read straight from there; an
// inner position's task is sent through the parent, which sets where it
// starts. Nothing above the parent changes.
void Node::Impl::resume_position(std::uint64_t rid, std::uint32_t pos, const ObjectID& old_output) {
  ReduceCoord& c = reduces.at(rid);
  const std::uint32_t up = c.pos_parent[pos];
  msg::ReduceRetarget m;
  m.task = c.pos_task[up];
  m.old_upstream = old_output;
  m.holder = c.pos_holder[pos];
  if (c.shape.children[pos].empty()) {
    c.pos_output[pos] = c.pos_input[pos];
    m.next.output = c.pos_output[pos];
    m.next.size = c.size;
  } else {
    m.next = make_task(rid, pos);
    c.pos_partial[pos] = 1;
  }
  LOG_DEBUG("reduce " << c.opts.target.short_hex() << ": position " << pos << " resumes on rank " << m.holder
                      << " for the task at position " << up);
  send_to(c.pos_holder[up], m);
}

// Forgets `pos`'s task (stopping it if its holder lives) and marks the
// position for issuing again.
void Node::Impl::drop_position_task(ReduceCoord& c, std::uint32_t pos, bool cancel) {
  if (std::uint64_t task = c.pos_task[pos]) {
    if (cancel && alive_rank(c.pos_holder[pos]))
      send_to(c.pos_holder[pos], msg::ReduceCancel{task, c.pos_output[pos]});
    task_to_reduce.erase(task);
    c.task_pos.erase(task);
    c.task_where.erase(task);
    c.pos_task[pos] = 0;
  }
  c.pos_partial[pos] = 0;
  c.pos_done[pos] = 0;
}

// Marks every position above `pos` stale: each one's output folds in what
// `pos` produced, which is being replaced. Their running tasks are
// cancelled; positions below and beside the path keep going.
void Node::Impl::stale_up_from(ReduceCoord& c, std::uint32_t pos) {
  for (std::uint32_t a = c.pos_parent[pos]; a != kNoParent; a = c.pos_parent[a]) {
    if (!c.pos_filled[a]) {
      // Vacant, waiting to resume into a parent that kept its prefix: that
      // prefix now holds a subtree being replaced, so no resume, and the
      // path goes on up.
      if (!c.pos_resume[a]) break;
      c.pos_resume[a] = 0;
      continue;
    }
    if (c.pos_stale[a]) break;  // handled already, with everything above
    drop_position_task(c, a, true);
    mark_whole_stale(c, a);
  }
}

// A participant died. Positions it held whose output is still needed
// (their parent has not completed, or is itself recomputed) are vacated and
// refilled by the next arrival: for k = n the same input again (a copy or
// a re-put), for k < n any unused one. Only the positions above them are
// recomputed; the rest of the tree-chain keeps its progress.
void Node::Impl::repair_reduce(std::uint64_t rid, const std::string& why) {
  auto it = reduces.find(rid);
  if (it == reduces.end() || it->second.finished) return;
  ReduceCoord& c = it->second;
  if (c.striped || !c.planned) return restart_reduce(rid, why);
  if (++c.repairs > static_cast<int>(4 * world)) {
    return finish_reduce(rid, peer_failure("reduce into " + c.opts.target.short_hex() + " lost " +
                                           std::to_string(c.repairs) + " participants; last: " + why));
  }
  std::vector<std::uint8_t> lost(c.k, 0);
  bool any = false;
  for (std::uint32_t i = c.k; i-- > 0;) {  // parents before children
    const std::uint32_t pos = c.shape.fill[i];
    if (!c.pos_filled[pos] || alive_rank(c.pos_holder[pos])) continue;
    const std::uint32_t up = c.pos_parent[pos];
    const bool needed =
        up == kNoParent || lost[up] || c.pos_stale[up] || !c.pos_filled[up] || !c.pos_done[up];
    if (!needed) continue;  // already folded into a complete parent
    lost[pos] = 1;
    any = true;
  }
  if (!any) return;
  LOG_WARN("reduce into " << c.opts.target.short_hex() << " repairs: " << why);
  for (std::uint32_t i = 0; i < c.k; ++i) {  // children before parents
    const std::uint32_t pos = c.shape.fill[i];
    if (!lost[pos]) continue;
    vacate_position(c, pos);
    // With its parent still running, the parent's progress is worth keeping
    // if the same input comes back (decided at the refill); otherwise the
    // path above is recomputed now.
    const std::uint32_t up = c.pos_parent[pos];
    const bool resumable = up != kNoParent && !lost[up] && c.pos_filled[up] && !c.pos_stale[up] &&
                           c.pos_task[up] != 0 && alive_rank(c.pos_holder[up]);
    c.pos_resume[pos] = resumable ? 1 : 0;
    if (!resumable) stale_up_from(c, pos);
  }
  locate_unused(rid);
  issue_ready(rid);
}

// Striped allreduce: the object is cut into one stripe per input holder;
// stripe j is reduced by a chain through every holder that ends at holder j
// (so each node sends and receives (m-1)/m of the object), and the target is
// declared as the composite of the stripes, which every reader pulls from
// their producers (another (m-1)/m each way). Both phases overlap because a
// stripe is readable while it is still being reduced.
void Node::Impl::run_striped(std::uint64_t rid) {
  ReduceCoord& c = reduces.at(rid);
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
  for (const auto& [h, ids] : by_holder) holders.push_back(h);
  const std::size_t m = holders.size();
  // Too small to be worth m chains, or nothing to spread: the dynamic form.
  if (m < 2 || size < m * (64u << 10)) {
    auto pending = std::move(c.pending);
    for (const auto& r : pending) {
      if (reduces.count(rid)) arrive(rid, r);
    }
    return;
  }
  c.striped = true;
  c.size = size;
  c.striped_holders.insert(holders.begin(), holders.end());
  for (const auto& r : c.pending) c.used.push_back(r.id);
  const std::uint64_t base = ((size + m - 1) / m + 63) / 64 * 64;
  msg::PublishComposite comp;
  comp.id = c.opts.target;
  comp.size = size;
  for (std::size_t j = 0; j < m; ++j) {
    const std::uint64_t off = std::min<std::uint64_t>(j * base, size);
    const std::uint64_t len = std::min<std::uint64_t>(base, size - off);
    ObjectID part_id =
        ObjectID::from_name(c.opts.target.hex() + "/stripe/" + std::to_string(rid) + "/" + std::to_string(j));
    comp.parts.push_back({part_id, holders[j], off, len});
    if (len == 0) continue;
    // The chain visits the holders starting after j and ends at j.
    std::vector<std::pair<ObjectID, Rank>> seq;
    for (std::size_t h = 1; h <= m; ++h) {
      Rank holder = holders[(j + h) % m];
      for (const auto& id : by_holder[holder]) seq.emplace_back(id, holder);
    }
    msg::Upstream prev{seq[0].first, seq[0].second, off};
    for (std::size_t i = 1; i < seq.size(); ++i) {
      const bool last = i + 1 == seq.size();
      ObjectID out = last ? part_id
                          : ObjectID::from_name(c.opts.target.hex() + "/stripe/" + std::to_string(rid) + "/" +
                                                std::to_string(j) + "/" + std::to_string(i));
      if (!last) c.intermediates.push_back(out);
      msg::ReduceTask t;
      t.task = (static_cast<std::uint64_t>(me) << 40) | next_request++;
      t.coordinator = me;
      t.output = out;
      t.input = seq[i].first;
      t.input_offset = off;
      t.size = len;
      t.op = static_cast<std::uint8_t>(c.opts.op);
      t.dtype = static_cast<std::uint8_t>(c.opts.dtype);
      t.upstreams.push_back(prev);
      task_to_reduce[t.task] = rid;
      c.task_where[t.task] = {seq[i].second, out};
      if (last) c.stripe_tasks.insert(t.task);
      send_to(seq[i].second, t);
      prev = msg::Upstream{out, seq[i].second, 0};
    }
  }
  c.pending.clear();
  LOG_DEBUG("reduce " << c.opts.target.short_hex() << ": striped over " << m << " holders");
  send_to(shard_of(c.opts.target), comp);
}

void Node::Impl::on_reduce_done(const msg::ReduceDone& d) {
  auto tit = task_to_reduce.find(d.task);
  if (tit == task_to_reduce.end()) return;  // cancelled, or of a finished reduce
  std::uint64_t rid = tit->second;
  auto it = reduces.find(rid);
  if (it == reduces.end()) return;
  if (d.code == static_cast<std::uint16_t>(StatusCode::kPeerFailure)) {
    // A task that loses an upstream's holder waits (ReduceLost); one that
    // ends with a peer failure found its upstream gone for another reason
    // (withdrawn, or never made): issue it again, and everything above it,
    // which folded its output.
    ReduceCoord& c = it->second;
    auto pit = c.task_pos.find(d.task);
    if (c.striped || pit == c.task_pos.end()) return restart_reduce(rid, d.message);
    const std::uint32_t pos = pit->second;
    drop_position_task(c, pos, false);  // it erased its output itself
    mark_whole_stale(c, pos);
    stale_up_from(c, pos);
    if (++c.repairs > static_cast<int>(4 * world)) {
      return finish_reduce(rid, peer_failure("reduce into " + c.opts.target.short_hex() + ": " + d.message));
    }
    return issue_ready(rid);
  }
  task_to_reduce.erase(tit);
  ReduceCoord& c = it->second;
  c.task_where.erase(d.task);
  if (d.code != 0) {
    return finish_reduce(rid, Status(static_cast<StatusCode>(d.code),
                                     "reduce into " + c.opts.target.short_hex() + ": " + d.message));
  }
  if (c.striped) {
    c.stripe_tasks.erase(d.task);
    if (!c.stripe_tasks.empty()) return;
  } else {
    if (auto pit = c.task_pos.find(d.task); pit != c.task_pos.end()) {
      const std::uint32_t pos = pit->second;
      c.pos_done[pos] = 1;
      // A child vacated while this task kept its progress, with nothing
      // moved in yet: the task finished, so it had folded all of the old
      // child before the child's holder died. That input is in the result.
      for (auto kid : c.shape.children[pos]) {
        if (c.pos_filled[kid] || !c.pos_resume[kid]) continue;
        c.pos_resume[kid] = 0;
        c.pos_filled[kid] = 1;
        std::erase(c.vacant, kid);
        c.used.push_back(c.pos_input[kid]);
      }
    }
    if (d.task != c.root_task) return;
  }
  ReduceResult res;
  res.used = c.used;
  res.depth = c.shape.depth;
  res.striped = c.striped;
  res.recomputed = c.recomputed;
  res.restarts = static_cast<std::uint32_t>(c.attempt);
  finish_reduce(rid, std::move(res));
}

void Node::Impl::finish_reduce(std::uint64_t rid, Result<ReduceResult> r) {
  auto it = reduces.find(rid);
  if (it == reduces.end()) return;
  ReduceCoord& c = it->second;
  if (c.finished) return;
  c.finished = true;
  if (c.deadline_timer) c.deadline_timer->cancel();
  if (!r.is_ok()) LOG_WARN(r.status().to_string());
  cancel_open_tasks(c);  // a failed reduce leaves nothing running
  // The target is complete, so the partial results are garbage now.
  for (const auto& id : c.intermediates) send_to(shard_of(id), msg::Remove{id, 0, me});
  c.done->set_value(std::move(r));
  std::erase_if(locate_to_reduce, [rid](const auto& kv) { return kv.second == rid; });
  std::erase_if(task_to_reduce, [rid](const auto& kv) { return kv.second == rid; });
  std::erase_if(locate_ids, [this](const auto& kv) { return !locate_to_reduce.count(kv.first); });
  reduces.erase(it);
}

// ------------------------------------------------------------------ tasks

void Node::Impl::on_reduce_task(const msg::ReduceTask& t) {
  if (cancelled_tasks.erase(t.task)) return;  // its cancel overtook it
  auto reply_error = [&](const Status& st) {
    send_to(t.coordinator, msg::ReduceDone{t.task, static_cast<std::uint16_t>(st.code()), st.message()});
  };
  auto input = store->find(t.input);
  if (!input || !input->sealed())
    return reply_error(not_found("input " + t.input.short_hex() + " is not on rank " + std::to_string(me)));
  if (t.input_offset > input->size || t.size > input->size - t.input_offset) {
    return reply_error(invalid_argument("reduce range outside input " + t.input.short_hex()));
  }
  if (auto stale = store->find(t.output)) {
    // Left by an attempt that a failure cut short: this task replaces it.
    for (auto& [id, ex] : reduce_execs) {
      if (ex.task.output == t.output) {
        fail_reduce_exec(id, Status(StatusCode::kCancelled, "superseded by a restarted reduce"));
        break;
      }
    }
    if (auto cg = composite_gets.find(t.output); cg != composite_gets.end() && cg->second.entry == stale) {
      // We were assembling the dead attempt's composite under this id: the
      // readers waiting for it get this task's output instead.
      for (const auto& part : cg->second.parts) {
        auto pit = inbound_transfers.find(part);
        if (pit != inbound_transfers.end() && pit->second.composite == t.output) {
          end_stream(pit->second);
          inbound_transfers.erase(pit);
        }
      }
      for (const auto& v : cg->second.views) {
        store->erase(v);
        drop_watchers(v, true);  // our ring successors look elsewhere
      }
      composite_gets.erase(cg);
    }
    store->erase(t.output);
    drop_watchers(t.output, true);
  }
  auto out = store->create_object(t.output, t.size);
  if (!out.is_ok()) return reply_error(out.status());
  reduce_tasks_started++;

  ReduceExec ex;
  ex.task = t;
  ex.input = input;
  ex.output = out.value();
  ex.chunk = opts.chunk_size - opts.chunk_size % 8;
  ex.nchunks = (t.size + ex.chunk - 1) / ex.chunk;
  ex.combined.assign(ex.nchunks, 0);
  // A resumed position computes only what its reader still needs; the
  // prefix below `start` is never read.
  const std::uint64_t first = t.start / ex.chunk;
  for (std::uint64_t c = 0; c < first; ++c) ex.combined[c] = static_cast<std::uint8_t>(t.upstreams.size());
  ex.contiguous = first;
  for (const auto& u : t.upstreams) {
    ReduceUp up;
    up.id = u.id;
    up.holder = u.holder;
    up.offset = u.offset;
    up.folded.assign(ex.nchunks, 0);
    std::fill(up.folded.begin(), up.folded.begin() + static_cast<std::ptrdiff_t>(first), 1);
    up.next_chunk = first;
    up.stream = next_stream++;
    reduce_pulls[up.stream] = {t.task, ex.ups.size()};
    ex.ups.push_back(std::move(up));
  }
  if (ex.ups.empty() || t.size == 0) {
    // k = 1 (or empty objects): the target is a copy of the one input.
    if (t.size) std::memcpy(ex.output->data, input->data + t.input_offset, t.size);
    ex.output->seal();
    for (const auto& u : ex.ups) reduce_pulls.erase(u.stream);
    send_to(shard_of(t.output), publish_msg(*ex.output, msg::LocationState::kComplete));
    on_local_sealed(ex.output);
    send_to(t.coordinator, msg::ReduceDone{t.task, 0, {}});
    return;
  }
  for (auto& up : ex.ups) {
    auto scratch = store->create_object(ObjectID::random(), ex.chunk * opts.pipeline_depth);
    if (!scratch.is_ok()) {
      for (const auto& u : ex.ups) reduce_pulls.erase(u.stream);
      store->erase(t.output);
      return reply_error(scratch.status());
    }
    up.scratch = scratch.value();
    // The scratch is private: unlink it now; the pin keeps the memory.
    store->erase(up.scratch->id);
    for (std::uint32_t s = 0; s < opts.pipeline_depth; ++s) up.free_slots.push_back(s);
  }
  std::uint64_t task_id = t.task;
  auto output = ex.output;
  if (first > 0) output->advance(std::min(first * ex.chunk, t.size));
  const bool done = first >= ex.nchunks;
  reduce_execs[task_id] = std::move(ex);
  if (done) return complete_reduce_exec(task_id);
  // Published as a partial copy: the parent task and any get of the target
  // can start pulling the prefix that is already reduced.
  send_to(shard_of(t.output), publish_msg(*output, msg::LocationState::kPartial));
  for (const auto& u : reduce_execs.at(task_id).ups) send_to(u.holder, msg::Watch{u.id, me, u.stream});
  if (auto pr = pending_retargets.extract(task_id)) on_reduce_retarget(pr.mapped());
}

void Node::Impl::on_reduce_progress(const msg::Progress& p) {
  auto pit = reduce_pulls.find(p.stream);
  if (pit == reduce_pulls.end()) return;
  auto [task, ui] = pit->second;
  auto eit = reduce_execs.find(task);
  if (eit == reduce_execs.end()) return;
  ReduceUp& up = eit->second.ups[ui];
  if (!p.present) {
    if (p.size == msg::kWithdrawn || ++up.watch_retries > kWatchRetries) {
      return fail_reduce_exec(task, peer_failure("rank " + std::to_string(up.holder) +
                                                 " does not hold upstream " + p.id.short_hex()));
    }
    auto timer = std::make_shared<asio::steady_timer>(io, kWatchRetryDelay);
    timer->async_wait([this, timer, id = p.id, holder = up.holder, stream = up.stream](error_code) {
      if (!stopping && reduce_pulls.count(stream)) send_to(holder, msg::Watch{id, me, stream});
    });
    return;
  }
  if (up.offset > p.size || eit->second.task.size > p.size - up.offset) {
    return fail_reduce_exec(task, invalid_argument("upstream " + p.id.short_hex() + " is too small"));
  }
  up.remote_offset = p.offset;
  up.sender_ready = std::max(up.sender_ready, p.ready);
  reduce_pump(task, ui);
}

void Node::Impl::reduce_pump(std::uint64_t task, std::size_t ui) {
  ReduceExec& ex = reduce_execs.at(task);
  ReduceUp& up = ex.ups[ui];
  if (up.orphaned) return;
  auto* ep = transport->endpoint(up.holder);
  if (!ep) return orphan_upstream(task, ui, up.holder);
  while (!up.free_slots.empty() && up.next_chunk < ex.nchunks) {
    if (up.folded[up.next_chunk]) {  // folded before a retarget
      up.next_chunk++;
      continue;
    }
    std::uint64_t off = up.next_chunk * ex.chunk;
    std::uint64_t len = std::min(ex.chunk, ex.task.size - off);
    // Whole chunks only: the fold works chunk by chunk.
    if (up.offset + off + len > up.sender_ready) break;
    std::uint32_t slot = up.free_slots.back();
    up.free_slots.pop_back();
    std::uint64_t c = up.next_chunk++;
    up.in_flight++;
    ep->get(up.scratch->data + slot * ex.chunk, len, up.remote_offset + up.offset + off,
            [this, task, ui, c, slot, gen = up.gen, pin = up.scratch](Status st) {
              on_reduce_chunk(task, ui, c, slot, gen, st);
            });
  }
  maybe_finish_up(task, ui);
}

void Node::Impl::on_reduce_chunk(std::uint64_t task, std::size_t ui, std::uint64_t c, std::uint32_t slot,
                                 std::uint64_t gen, Status st) {
  if (stopping) return;
  auto eit = reduce_execs.find(task);
  if (eit == reduce_execs.end()) return;
  ReduceExec& ex = eit->second;
  ReduceUp& up = ex.ups[ui];
  up.in_flight--;
  up.free_slots.push_back(slot);
  // A read from a holder that has since died or been replaced: its slot
  // is free again for the current holder.
  if (gen != up.gen) return reduce_pump(task, ui);
  if (!st.is_ok()) {
    // A dead holder is not the end of the task: the coordinator either
    // moves the same computation elsewhere (retarget) or cancels us.
    if (st.code() == StatusCode::kPeerFailure) return orphan_upstream(task, ui, up.holder);
    return fail_reduce_exec(task, Status(st.code(), "pulling " + up.id.short_hex() + " from rank " +
                                                        std::to_string(up.holder) + ": " + st.message()));
  }
  std::uint64_t off = c * ex.chunk;
  std::uint64_t len = std::min(ex.chunk, ex.task.size - off);
  auto op = static_cast<ReduceOp>(ex.task.op);
  auto dt = static_cast<DataType>(ex.task.dtype);
  std::byte* dst = ex.output->data + off;
  const std::byte* src = up.scratch->data + slot * ex.chunk;
  // The first fold reads the input; later ones read the output so far.
  const std::byte* acc = ex.combined[c] == 0 ? ex.input->data + ex.task.input_offset + off : dst;
  reduce::apply(op, dt, dst, acc, src, len);
  bytes_received += len;
  up.folded[c] = 1;
  ex.combined[c]++;
  std::uint64_t before = ex.contiguous;
  while (ex.contiguous < ex.nchunks && ex.combined[ex.contiguous] == ex.ups.size()) ex.contiguous++;
  if (ex.contiguous != before) {
    ex.output->advance(std::min(ex.contiguous * ex.chunk, ex.task.size));
    notify_watchers(ex.task.output);
  }
  if (ex.contiguous == ex.nchunks) return complete_reduce_exec(task);
  reduce_pump(task, ui);
}

// An upstream's last chunk is in: stop watching it.
void Node::Impl::maybe_finish_up(std::uint64_t task, std::size_t ui) {
  ReduceUp& up = reduce_execs.at(task).ups[ui];
  if (up.finished || up.orphaned || up.in_flight != 0) return;
  if (up.next_chunk < up.folded.size()) return;
  up.finished = true;
  reduce_pulls.erase(up.stream);
  send_to(up.holder, msg::Unwatch{up.id, me, up.stream});
}

void Node::Impl::complete_reduce_exec(std::uint64_t task) {
  auto node = reduce_execs.extract(task);
  ReduceExec& done = node.mapped();
  for (auto& u : done.ups) {
    if (!u.finished) {
      reduce_pulls.erase(u.stream);
      if (!u.orphaned) send_to(u.holder, msg::Unwatch{u.id, me, u.stream});
    }
  }
  done.output->seal();
  send_to(shard_of(done.task.output), publish_msg(*done.output, msg::LocationState::kComplete));
  on_local_sealed(done.output);
  send_to(done.task.coordinator, msg::ReduceDone{done.task.task, 0, {}});
}

// The holder of upstream `ui` died. The task keeps what it folded and tells
// its coordinator, which decides between a retarget and a cancel.
void Node::Impl::orphan_upstream(std::uint64_t task, std::size_t ui, Rank failed) {
  auto eit = reduce_execs.find(task);
  if (eit == reduce_execs.end()) return;
  ReduceUp& up = eit->second.ups[ui];
  if (up.orphaned || up.finished) return;
  up.orphaned = true;
  up.gen++;
  reduce_pulls.erase(up.stream);
  LOG_INFO("reduce task " << task << " lost upstream " << up.id.short_hex() << " on rank " << failed);
  send_to(eit->second.task.coordinator, msg::ReduceLost{task, failed});
}

void Node::Impl::on_reduce_retarget(const msg::ReduceRetarget& m) {
  if (m.holder >= world) return;
  auto eit = reduce_execs.find(m.task);
  if (eit == reduce_execs.end()) {
    // The task may still be on its way (a resumed task travels through its
    // parent's node, the retarget straight here): hold it a while. If the
    // task never comes (it ended meanwhile), the coordinator hears that the
    // forwarded task was not started and issues that position again.
    pending_retargets[m.task] = m;
    auto timer = std::make_shared<asio::steady_timer>(io, opts.failure_timeout * 2);
    timer->async_wait([this, timer, task = m.task](error_code) {
      auto it = pending_retargets.find(task);
      if (stopping || it == pending_retargets.end()) return;
      const msg::ReduceRetarget late = std::move(it->second);
      pending_retargets.erase(it);
      if (late.next.task != 0) {
        send_to(late.next.coordinator,
                msg::ReduceDone{late.next.task, static_cast<std::uint16_t>(StatusCode::kPeerFailure),
                                "its reader's task had ended"});
      }
    });
    return;
  }
  ReduceExec& ex = eit->second;
  std::size_t ui = 0;
  while (ui < ex.ups.size() && ex.ups[ui].id != m.old_upstream) ++ui;
  if (ui == ex.ups.size()) return;
  ReduceUp& up = ex.ups[ui];
  if (!up.orphaned) {
    // Its holder's death has not reached us yet: reads from it must not be
    // folded once we move on.
    up.gen++;
    reduce_pulls.erase(up.stream);
    if (alive_rank(up.holder)) send_to(up.holder, msg::Unwatch{up.id, me, up.stream});
  }
  std::uint64_t first = 0;
  while (first < ex.nchunks && up.folded[first]) ++first;
  up.id = m.next.output;
  up.holder = m.holder;
  up.orphaned = false;
  up.finished = false;
  up.sender_ready = 0;
  up.remote_offset = 0;
  up.watch_retries = 0;
  up.next_chunk = first;
  up.stream = next_stream++;
  reduce_pulls[up.stream] = {m.task, ui};
  if (m.next.task != 0) {
    msg::ReduceTask next = m.next;
    next.start = std::min(first * ex.chunk, next.size);
    send_to(m.holder, next);
  }
  LOG_INFO("reduce task " << m.task << " resumes upstream " << up.id.short_hex() << " on rank " << m.holder
                          << " at chunk " << first);
  send_to(m.holder, msg::Watch{up.id, me, up.stream});
}

void Node::Impl::drop_reduce_exec(std::uint64_t task, bool withdrawn) {
  auto eit = reduce_execs.find(task);
  if (eit == reduce_execs.end()) return;
  auto node = reduce_execs.extract(eit);
  ReduceExec& ex = node.mapped();
  for (auto& u : ex.ups) {
    if (!u.finished) {
      reduce_pulls.erase(u.stream);
      if (!u.orphaned && alive_rank(u.holder)) send_to(u.holder, msg::Unwatch{u.id, me, u.stream});
    }
  }
  if (store->find(ex.task.output) == ex.output) {
    store->erase(ex.task.output);
    drop_watchers(ex.task.output, withdrawn);
    send_to(shard_of(ex.task.output), msg::Unpublish{ex.task.output, me});
  }
}

void Node::Impl::fail_reduce_exec(std::uint64_t task, const Status& why) {
  auto eit = reduce_execs.find(task);
  if (eit == reduce_execs.end()) return;
  const ObjectID output = eit->second.task.output;
  const Rank coordinator = eit->second.task.coordinator;
  drop_reduce_exec(task, false);
  fulfill_waiters(output, why);
  send_to(coordinator, msg::ReduceDone{task, static_cast<std::uint16_t>(why.code()), why.message()});
}

void Node::Impl::on_reduce_cancel(const msg::ReduceCancel& m) {
  if (reduce_execs.count(m.task)) {
    drop_reduce_exec(m.task, true);
  } else if (auto e = store->find(m.output)) {
    // Finished just before the cancel: the coordinator recomputes it.
    store->erase(m.output);
    drop_watchers(m.output, true);
    send_to(shard_of(m.output), msg::Unpublish{m.output, me});
  } else {
    // Not here yet (a resumed task travels through its parent's node, the
    // cancel straight here): it must not start when it comes.
    cancelled_tasks.insert(m.task);
    pending_retargets.erase(m.task);
    return;
  }
  // Local gets of the output (the target, at the root) wait for the new
  // one instead of failing.
  if (waiters.count(m.output)) start_lookup(m.output, must_exist_ids.count(m.output) > 0);
}

}  // namespace hoplite
