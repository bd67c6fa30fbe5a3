#include "node/reduce_executor.h"

#include <algorithm>
#include <cstring>

#include "node/composites.h"
#include "node/directory_client.h"
#include "node/fetcher.h"
#include "node/object_server.h"
#include "reduce/kernels.h"

namespace hoplite::node {

namespace {
// A parent task can ask for its child's output before the child's task
// message has landed at the child's holder; it asks again (about 5 s in
// all, watch_retry_delay) before it gives up.
constexpr int kWatchRetries = 250;
}  // namespace

ReduceExecutor::ReduceExecutor(NodeContext& ctx, Fetcher& fetcher, ObjectServer& server,
                               Composites& composites, DirectoryClient& dir)
    : ctx_(ctx), fetcher_(fetcher), server_(server), composites_(composites), dir_(dir) {
  stream_owner_ = ctx_.streams.add_owner([this](const msg::Progress& p, Rank from) { on_progress(p, from); });
  server_.set_local_listener([this](const ObjectID& id, bool gone) { on_local(id, gone); });
  auto& d = ctx_.dispatch;
  d.on<msg::ReduceTask>([this](const ConnPtr&, const msg::ReduceTask& t) { on_task(t); });
  // Only a task's coordinator may cancel or retarget it.
  d.on<msg::ReduceCancel>([this](const ConnPtr& c, const msg::ReduceCancel& m) {
    if (auto it = execs_.find(m.task); it != execs_.end() && it->second.task.coordinator != ctx_.sender(c)) {
      return ctx_.refuse(ctx_.sender(c), "ReduceCancel",
                         "task " + std::to_string(m.task) + " is coordinated by rank " +
                             std::to_string(it->second.task.coordinator));
    }
    on_cancel(m);
  });
  d.on<msg::ReduceRetarget>([this](const ConnPtr& c, const msg::ReduceRetarget& m) {
    if (auto it = execs_.find(m.task); it != execs_.end() && it->second.task.coordinator != ctx_.sender(c)) {
      return ctx_.refuse(ctx_.sender(c), "ReduceRetarget",
                         "task " + std::to_string(m.task) + " is coordinated by rank " +
                             std::to_string(it->second.task.coordinator));
    }
    on_retarget(m);
  });
  d.on<msg::ReduceRelease>([this](const ConnPtr& c, const msg::ReduceRelease& m) {
    // Only the coordinator's own reduces: a release names no sender.
    const Rank from = ctx_.sender(c);
    std::erase_if(left_, [&](const Left& l) { return l.coordinator == from && l.target == m.target; });
  });
}

void ReduceExecutor::leave(const msg::ReduceTask& t, const std::shared_ptr<store::ObjectEntry>& output) {
  if (left_.size() >= prune_at_) {
    auto& store = *ctx_.store;
    std::erase_if(left_, [&](const Left& l) {
      auto e = l.entry.lock();
      return !e || store.find(l.output) != e;
    });
    prune_at_ = std::max<std::size_t>(64, 2 * left_.size());
  }
  left_.push_back(Left{t.coordinator, t.target, t.output, output});
}

bool ReduceExecutor::withdraw(const ObjectID& id, const std::shared_ptr<store::ObjectEntry>& entry,
                              bool withdrawn) {
  if (!entry || ctx_.store->find(id) != entry) return false;
  ctx_.store->erase(id);
  server_.drop(id, withdrawn);
  ctx_.send(ctx_.shard_of(id), msg::Unpublish{id, ctx_.me});
  return true;
}

void ReduceExecutor::publish_complete(const store::ObjectEntry& output, const msg::ReduceTask& t) {
  ctx_.send(ctx_.shard_of(t.output), dir_.publish_msg(output, msg::LocationState::kComplete));
}

void ReduceExecutor::on_task(const msg::ReduceTask& t) {
  if (cancelled_.erase(t.task)) return;  // its cancel overtook it
  // Sent before its coordinator died: nobody would use or remove its output.
  if (!ctx_.alive_rank(t.coordinator)) return;
  auto reply_error = [&](const Status& st) {
    ctx_.send(t.coordinator, msg::ReduceDone{t.task, static_cast<std::uint16_t>(st.code()), st.message()});
  };
  auto& store = *ctx_.store;
  // An input still being written will do: its chunks are read as its
  // writer publishes them.
  auto input = store.find(t.input);
  if (!input)
    return reply_error(
        not_found("input " + t.input.short_hex() + " is not on rank " + std::to_string(ctx_.me)));
  if (t.input_offset > input->size || t.size > input->size - t.input_offset) {
    return reply_error(invalid_argument("reduce range outside input " + t.input.short_hex()));
  }
  if (auto stale = store.find(t.output)) {
    // Left by an attempt that a failure cut short: this task replaces it.
    for (auto& [id, ex] : execs_) {
      if (ex.task.output == t.output) {
        fail(id, Status(StatusCode::kCancelled, "superseded by a restarted reduce"));
        break;
      }
    }
    // We were assembling the dead attempt's composite under this id: the
    // readers waiting for it get this task's output instead.
    composites_.abandon(t.output, stale);
    store.erase(t.output);
    server_.drop(t.output, true);
  }
  auto out = store.create_object(t.output, t.size);
  if (!out.is_ok()) return reply_error(out.status());
  ctx_.reduce_tasks_started++;

  const unsigned depth = ctx_.opts.pipeline_depth;
  Exec ex;
  ex.task = t;
  ex.input = input;
  ex.output = out.value();
  ex.chunk = ctx_.opts.chunk_size - ctx_.opts.chunk_size % 8;
  ex.nchunks = (t.size + ex.chunk - 1) / ex.chunk;
  ex.combined.assign(ex.nchunks, 0);
  // A resumed position computes only what its reader still needs; the
  // prefix below `start` is never read.
  const std::uint64_t first = t.start / ex.chunk;
  for (std::uint64_t c = 0; c < first; ++c) ex.combined[c] = static_cast<std::uint8_t>(t.upstreams.size());
  ex.contiguous = first;
  for (const auto& u : t.upstreams) {
    Upstream up;
    up.id = u.id;
    up.holder = u.holder;
    up.offset = u.offset;
    up.folded.assign(ex.nchunks, 0);
    std::fill(up.folded.begin(), up.folded.begin() + static_cast<std::ptrdiff_t>(first), 1);
    up.next_chunk = first;
    up.stream = ctx_.streams.next(stream_owner_);
    pulls_[up.stream] = {t.task, ex.ups.size()};
    ex.ups.push_back(std::move(up));
  }
  if ((ex.ups.empty() && !input->sealed() && t.size > 0)) {
    // k = 1 of an input still being written: copied as it grows.
    ex.copy_only = true;
    const std::uint64_t task_id = t.task;
    auto output = ex.output;
    execs_[task_id] = std::move(ex);
    awaiting_input_[t.input].insert(task_id);
    ctx_.send(ctx_.shard_of(t.output), dir_.publish_msg(*output, msg::LocationState::kPartial));
    on_local(t.input, false);
    return;
  }
  if (ex.ups.empty() || t.size == 0) {
    // k = 1 (or empty objects): the target is a copy of the one input.
    if (t.size) std::memcpy(ex.output->data, input->data + t.input_offset, t.size);
    ex.output->seal();
    for (const auto& u : ex.ups) pulls_.erase(u.stream);
    publish_complete(*ex.output, t);
    fetcher_.on_local_sealed(ex.output);
    leave(t, ex.output);
    ctx_.send(t.coordinator, msg::ReduceDone{t.task, 0, {}});
    return;
  }
  for (auto& up : ex.ups) {
    auto scratch = store.create_object(ObjectID::random(), ex.chunk * depth);
    if (!scratch.is_ok()) {
      for (const auto& u : ex.ups) pulls_.erase(u.stream);
      store.erase(t.output);
      return reply_error(scratch.status());
    }
    up.scratch = scratch.value();
    // The scratch is private: unlink it now; the pin keeps the memory.
    store.erase(up.scratch->id);
    for (std::uint32_t s = 0; s < depth; ++s) up.free_slots.push_back(s);
  }
  std::uint64_t task_id = t.task;
  auto output = ex.output;
  if (first > 0) output->advance(std::min(first * ex.chunk, t.size));
  const bool all_done = first >= ex.nchunks;
  execs_[task_id] = std::move(ex);
  if (all_done) return complete(task_id);
  // Published as a partial copy: the parent task and any get of the target
  // can start pulling the prefix that is already reduced.
  ctx_.send(ctx_.shard_of(t.output), dir_.publish_msg(*output, msg::LocationState::kPartial));
  if (!input->sealed()) awaiting_input_[t.input].insert(task_id);
  for (const auto& u : execs_.at(task_id).ups) ctx_.send(u.holder, msg::Watch{u.id, ctx_.me, u.stream});
  if (auto pr = pending_retargets_.extract(task_id)) on_retarget(pr.mapped());
}

std::uint64_t ReduceExecutor::input_ready(const Exec& ex) {
  const std::uint64_t ready = ex.input->ready();
  const std::uint64_t from = ex.task.input_offset;
  return ready <= from ? 0 : std::min(ready - from, ex.task.size);
}

void ReduceExecutor::on_local(const ObjectID& id, bool gone) {
  auto it = awaiting_input_.find(id);
  if (it == awaiting_input_.end()) return;
  const std::vector<std::uint64_t> tasks(it->second.begin(), it->second.end());
  for (std::uint64_t task : tasks) {
    auto eit = execs_.find(task);
    // (Ended meanwhile, or a new task with another input took the id.)
    if (eit == execs_.end() || eit->second.task.input != id) {
      if (auto a = awaiting_input_.find(id); a != awaiting_input_.end()) a->second.erase(task);
      continue;
    }
    Exec& ex = eit->second;
    const bool sealed = ex.input->sealed();
    if (gone && !sealed) {
      fail(task, not_found("input " + id.short_hex() + " went from rank " + std::to_string(ctx_.me) +
                           " before it was complete"));
      continue;
    }
    if (ex.copy_only) {
      const std::uint64_t ready = input_ready(ex);
      if (ready > ex.copied) {
        std::memcpy(ex.output->data + ex.copied, ex.input->data + ex.task.input_offset + ex.copied,
                    ready - ex.copied);
        ex.copied = ready;
        if (ready < ex.task.size) {
          ex.output->advance(ready);
          server_.notify(ex.task.output);
        }
      }
      if (ex.copied == ex.task.size) complete(task);
      continue;
    }
    for (std::size_t ui = 0; ui < ex.ups.size() && execs_.count(task); ++ui) pump(task, ui);
    if (sealed)
      if (auto a = awaiting_input_.find(id); a != awaiting_input_.end()) a->second.erase(task);
  }
  if (auto a = awaiting_input_.find(id); a != awaiting_input_.end() && a->second.empty())
    awaiting_input_.erase(a);
}

void ReduceExecutor::on_progress(const msg::Progress& p, Rank from) {
  auto pit = pulls_.find(p.stream);
  if (pit == pulls_.end()) return;
  auto [task, ui] = pit->second;
  auto eit = execs_.find(task);
  if (eit == execs_.end()) return;
  Upstream& up = eit->second.ups[ui];
  if (from != up.holder || p.id != up.id) {
    return ctx_.refuse(from, "Progress",
                       "stream " + std::to_string(p.stream) + " reads " + up.id.short_hex() + " from rank " +
                           std::to_string(up.holder) + ", not " + p.id.short_hex() + " from rank " +
                           std::to_string(from));
  }
  if (!p.present) {
    if (p.size == msg::kWithdrawn || ++up.watch_retries > kWatchRetries) {
      return fail(task, peer_failure("rank " + std::to_string(up.holder) + " does not hold upstream " +
                                     p.id.short_hex()));
    }
    ctx_.after(watch_retry_delay(up.watch_retries),
               [this, id = p.id, holder = up.holder, stream = up.stream] {
                 if (pulls_.count(stream)) ctx_.send(holder, msg::Watch{id, ctx_.me, stream});
               });
    return;
  }
  if (up.offset > p.size || eit->second.task.size > p.size - up.offset) {
    return fail(task, invalid_argument("upstream " + p.id.short_hex() + " is too small"));
  }
  up.remote_offset = p.offset;
  up.sender_ready = std::max(up.sender_ready, p.ready);
  pump(task, ui);
}

void ReduceExecutor::pump(std::uint64_t task, std::size_t ui) {
  Exec& ex = execs_.at(task);
  Upstream& up = ex.ups[ui];
  if (up.orphaned) return;
  auto* ep = ctx_.transport->endpoint(up.holder);
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
    // And of our own input, only what its writer has published.
    if (off + len > input_ready(ex)) break;
    std::uint32_t slot = up.free_slots.back();
    up.free_slots.pop_back();
    std::uint64_t c = up.next_chunk++;
    up.in_flight++;
    ep->get(up.id, up.scratch->data + slot * ex.chunk, len, up.remote_offset + up.offset + off,
            [this, task, ui, c, slot, gen = up.gen, pin = up.scratch](Status st) {
              on_chunk(task, ui, c, slot, gen, st);
            });
  }
  maybe_finish_up(task, ui);
}

void ReduceExecutor::on_chunk(std::uint64_t task, std::size_t ui, std::uint64_t c, std::uint32_t slot,
                              std::uint64_t gen, Status st) {
  if (ctx_.stopping) return;
  auto eit = execs_.find(task);
  if (eit == execs_.end()) return;
  Exec& ex = eit->second;
  Upstream& up = ex.ups[ui];
  up.in_flight--;
  up.free_slots.push_back(slot);
  // A read from a holder that has since died or been replaced: its slot
  // is free again for the current holder.
  if (gen != up.gen) return pump(task, ui);
  if (!st.is_ok()) {
    // A dead holder is not the end of the task: the coordinator either
    // moves the same computation elsewhere (retarget) or cancels us.
    if (st.code() == StatusCode::kPeerFailure) return orphan_upstream(task, ui, up.holder);
    return fail(task, Status(st.code(), "pulling " + up.id.short_hex() + " from rank " +
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
  ctx_.bytes_received += len;
  up.folded[c] = 1;
  ex.combined[c]++;
  std::uint64_t before = ex.contiguous;
  while (ex.contiguous < ex.nchunks && ex.combined[ex.contiguous] == ex.ups.size()) ex.contiguous++;
  if (ex.contiguous != before) {
    ex.output->advance(std::min(ex.contiguous * ex.chunk, ex.task.size));
    server_.notify(ex.task.output);
  }
  if (ex.contiguous == ex.nchunks) return complete(task);
  pump(task, ui);
}

// An upstream's last chunk is in: stop watching it.
void ReduceExecutor::maybe_finish_up(std::uint64_t task, std::size_t ui) {
  Upstream& up = execs_.at(task).ups[ui];
  if (up.finished || up.orphaned || up.in_flight != 0) return;
  if (up.next_chunk < up.folded.size()) return;
  up.finished = true;
  pulls_.erase(up.stream);
  ctx_.send(up.holder, msg::Unwatch{up.id, ctx_.me, up.stream});
}

void ReduceExecutor::complete(std::uint64_t task) {
  auto node = execs_.extract(task);
  Exec& ex = node.mapped();
  for (auto& u : ex.ups) {
    if (!u.finished) {
      pulls_.erase(u.stream);
      if (!u.orphaned) ctx_.send(u.holder, msg::Unwatch{u.id, ctx_.me, u.stream});
    }
  }
  ex.output->seal();
  publish_complete(*ex.output, ex.task);
  fetcher_.on_local_sealed(ex.output);
  leave(ex.task, ex.output);
  LOG_DEBUG("reduce task " << ex.task.task << " done: " << ex.task.output.short_hex());
  ctx_.send(ex.task.coordinator, msg::ReduceDone{ex.task.task, 0, {}});
}

// The holder of upstream `ui` died. The task keeps what it folded and tells
// its coordinator, which decides between a retarget and a cancel.
void ReduceExecutor::orphan_upstream(std::uint64_t task, std::size_t ui, Rank failed) {
  auto eit = execs_.find(task);
  if (eit == execs_.end()) return;
  Upstream& up = eit->second.ups[ui];
  if (up.orphaned || up.finished) return;
  up.orphaned = true;
  up.gen++;
  pulls_.erase(up.stream);
  LOG_INFO("reduce task " << task << " lost upstream " << up.id.short_hex() << " on rank " << failed);
  ctx_.send(eit->second.task.coordinator, msg::ReduceLost{task, failed});
}

void ReduceExecutor::on_retarget(const msg::ReduceRetarget& m) {
  if (m.holder >= ctx_.world) return;
  auto eit = execs_.find(m.task);
  if (eit == execs_.end()) {
    // The task may still be on its way (a resumed task travels through its
    // parent's node, the retarget straight here): hold it a while. If the
    // task never comes (it ended meanwhile), the coordinator hears that the
    // forwarded task was not started and issues that position again.
    if (pending_retargets_.size() >= kMaxPending && !pending_retargets_.count(m.task)) {
      // Bounded: a retarget that cannot be held is answered as if its task
      // had ended, which makes the coordinator issue that position again.
      LOG_WARN("reduce: " << pending_retargets_.size() << " retargets wait for their tasks; dropping one");
      if (m.next.task != 0) {
        ctx_.send(m.next.coordinator,
                  msg::ReduceDone{m.next.task, static_cast<std::uint16_t>(StatusCode::kPeerFailure),
                                  "too many retargets waiting"});
      }
      return;
    }
    pending_retargets_[m.task] = m;
    ctx_.after(ctx_.opts.failure_timeout * 2, [this, task = m.task] {
      auto it = pending_retargets_.find(task);
      if (it == pending_retargets_.end()) return;
      const msg::ReduceRetarget late = std::move(it->second);
      pending_retargets_.erase(it);
      if (late.next.task != 0) {
        ctx_.send(late.next.coordinator,
                  msg::ReduceDone{late.next.task, static_cast<std::uint16_t>(StatusCode::kPeerFailure),
                                  "its reader's task had ended"});
      }
    });
    return;
  }
  Exec& ex = eit->second;
  std::size_t ui = 0;
  while (ui < ex.ups.size() && ex.ups[ui].id != m.old_upstream) ++ui;
  if (ui == ex.ups.size()) return;
  Upstream& up = ex.ups[ui];
  if (!up.orphaned) {
    // Its holder's death has not reached us yet: reads from it must not be
    // folded once we move on.
    up.gen++;
    pulls_.erase(up.stream);
    if (ctx_.alive_rank(up.holder)) ctx_.send(up.holder, msg::Unwatch{up.id, ctx_.me, up.stream});
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
  up.stream = ctx_.streams.next(stream_owner_);
  pulls_[up.stream] = {m.task, ui};
  if (m.next.task != 0) {
    msg::ReduceTask next = m.next;
    next.start = std::min(first * ex.chunk, next.size);
    ctx_.send(m.holder, next);
  }
  LOG_INFO("reduce task " << m.task << " resumes upstream " << up.id.short_hex() << " on rank " << m.holder
                          << " at chunk " << first);
  ctx_.send(m.holder, msg::Watch{up.id, ctx_.me, up.stream});
}

void ReduceExecutor::drop(std::uint64_t task, bool withdrawn) {
  auto eit = execs_.find(task);
  if (eit == execs_.end()) return;
  auto node = execs_.extract(eit);
  Exec& ex = node.mapped();
  for (auto& u : ex.ups) {
    if (!u.finished) {
      pulls_.erase(u.stream);
      if (!u.orphaned && ctx_.alive_rank(u.holder))
        ctx_.send(u.holder, msg::Unwatch{u.id, ctx_.me, u.stream});
    }
  }
  withdraw(ex.task.output, ex.output, withdrawn);
}

void ReduceExecutor::fail(std::uint64_t task, const Status& why) {
  auto eit = execs_.find(task);
  if (eit == execs_.end()) return;
  const ObjectID output = eit->second.task.output;
  const Rank coordinator = eit->second.task.coordinator;
  drop(task, false);
  fetcher_.fulfill_waiters(output, why);
  ctx_.send(coordinator, msg::ReduceDone{task, static_cast<std::uint16_t>(why.code()), why.message()});
}

void ReduceExecutor::on_cancel(const msg::ReduceCancel& m) {
  if (execs_.count(m.task)) {
    drop(m.task, true);
  } else if (auto e = ctx_.store->find(m.output)) {
    // Finished just before the cancel: the coordinator recomputes it.
    withdraw(m.output, e, true);
  } else {
    // Not here yet (a resumed task travels through its parent's node, the
    // cancel straight here): it must not start when it comes.
    if (cancelled_.insert(m.task).second) {
      cancel_order_.push_back(m.task);
      // Bounded: the oldest early cancels go first; their tasks, had they
      // still come, would now run and be reported (then cancelled again).
      while (cancel_order_.size() > kMaxPending) {
        cancelled_.erase(cancel_order_.front());
        cancel_order_.pop_front();
      }
    }
    pending_retargets_.erase(m.task);
    return;
  }
  // Local gets of the output (the target, at the root) wait for the new
  // one instead of failing.
  fetcher_.relookup_if_waiting(m.output);
}

// The reduce into `target` lost its coordinator: nobody will finish it,
// release it or remove it. Local gets of the target fail now (a reader
// here need not wait for its timeout), and the target is removed from the
// directory, a striped one's composite record and stripes with it.
// Duplicates from the other nodes that ran its tasks are harmless.
void ReduceExecutor::abandon_target(const ObjectID& target, Rank coordinator) {
  const Status why =
      peer_failure("rank " + std::to_string(coordinator) + ", the coordinator of the reduce into " +
                   target.short_hex() + ", failed before it was complete");
  LOG_WARN(why.message());
  fetcher_.fulfill_waiters(target, why);
  // (No waiters left, so the assembly ends instead of looking again.)
  if (composites_.assembling(target)) composites_.fail(target, why);
  ctx_.send(ctx_.shard_of(target), msg::Remove{target, 0, ctx_.me});
}

// Tasks reading from the dead node keep what they folded and wait for
// their coordinator's retarget or cancel. Reduces the dead node
// coordinated and had not released: nobody will use or remove what their
// tasks made, running or finished.
void ReduceExecutor::on_peer_lost(Rank f) {
  std::vector<std::uint64_t> orphans;
  std::vector<std::pair<std::uint64_t, std::size_t>> stuck;
  std::unordered_set<ObjectID> abandoned;
  for (const auto& [task, ex] : execs_) {
    if (ex.task.coordinator == f) {
      orphans.push_back(task);
      abandoned.insert(ex.task.target);
      continue;
    }
    for (std::size_t ui = 0; ui < ex.ups.size(); ++ui) {
      if (ex.ups[ui].holder == f && !ex.ups[ui].finished) stuck.emplace_back(task, ui);
    }
  }
  for (auto task : orphans) drop(task, true);
  std::erase_if(left_, [&](const Left& l) {
    if (l.coordinator != f) return false;
    // Only what is still here: the outputs of a reduce that ended (failed,
    // or restarted) were removed already, and its target may be the
    // user's by now.
    if (withdraw(l.output, l.entry.lock(), true)) abandoned.insert(l.target);
    return true;
  });
  for (const auto& target : abandoned) abandon_target(target, f);
  for (auto [task, ui] : stuck) orphan_upstream(task, ui, f);
}

}  // namespace hoplite::node
