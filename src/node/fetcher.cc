#include "node/fetcher.h"

#include <cstring>

#include "node/composites.h"
#include "node/directory_client.h"
#include "node/object_server.h"

namespace hoplite::node {

Fetcher::Fetcher(NodeContext& ctx, ObjectServer& server, DirectoryClient& dir)
    : ctx_(ctx), server_(server), dir_(dir) {
  stream_owner_ = ctx_.streams.add_owner([this](const msg::Progress& p, Rank from) { on_progress(p, from); });
  ctx_.dispatch.on<msg::LookupReply>([this](const ConnPtr& c, const msg::LookupReply& r) {
    // Only the shard we asked answers; an answer nobody asked for (an
    // inline object pushed into our store) is refused.
    if (!lookups_pending_.count(r.id)) {
      if (!ctx_.store->find(r.id))
        ctx_.refuse(ctx_.sender(c), "LookupReply", "no lookup of " + r.id.short_hex() + " is pending");
      return;
    }
    if (ctx_.sender(c) != ctx_.shard_of(r.id)) {
      return ctx_.refuse(ctx_.sender(c), "LookupReply",
                         r.id.short_hex() + "'s shard is rank " + std::to_string(ctx_.shard_of(r.id)));
    }
    on_lookup_reply(r);
  });
  ctx_.dispatch.on<msg::Delete>([this](const ConnPtr&, const msg::Delete& d) { delete_local(d.id); });
}

ObjectView Fetcher::view_of(const std::shared_ptr<store::ObjectEntry>& e) const {
  auto it = source_of_.find(e->id);
  int src = it == source_of_.end() ? -1 : it->second;
  return ObjectView(e->id, e->data, e->size, e, src);
}

void Fetcher::start_get(const std::shared_ptr<detail::GetState>& st, bool must_exist, Rank after,
                        bool direct) {
  if (ctx_.stopping) return st->fulfill(Status(StatusCode::kCancelled, "node shut down"));
  auto e = ctx_.store->find(st->id);
  if (e && e->sealed()) return st->fulfill(view_of(e));
  waiters_[st->id].push_back(st);
  if (must_exist) must_exist_ids_.insert(st->id);
  if (e || lookups_pending_.count(st->id)) return;  // already on its way here
  start_lookup(st->id, must_exist, after, direct);
}

void Fetcher::start_lookup(const ObjectID& id, bool must_exist, Rank after, bool direct) {
  lookups_pending_.insert(id);
  const Rank from = ctx_.alive_rank(after) ? after : msg::kNoRank;
  ctx_.send(ctx_.shard_of(id),
            msg::Lookup{id, 0, ctx_.me, must_exist, false, from, direct && from != msg::kNoRank});
}

void Fetcher::on_lookup_reply(const msg::LookupReply& r) {
  lookups_pending_.erase(r.id);
  handle_lookup_reply(r);
  // Watches that arrived while we waited: served now if we have the object,
  // told "not here" otherwise.
  server_.replay_parked(r.id);
}

void Fetcher::handle_lookup_reply(const msg::LookupReply& r) {
  const Rank me = ctx_.me;
  if (auto it = inbound_.find(r.id); it != inbound_.end() && it->second.resuming) {
    Inbound& in = it->second;
    if (r.result != msg::LookupResult::kSender || r.sender == me || !ctx_.alive_rank(r.sender) ||
        r.size != in.size) {
      // A shard that has not yet noticed the failure can still name the
      // dead sender (or its chain around it): ask again shortly, once it
      // has forgotten the rank. A shard that keeps naming it sees the rank
      // alive where we do not; start over from a fresh lookup instead.
      if (++in.resumes > static_cast<int>(2 * ctx_.world)) {
        return abort(r.id, peer_failure("the directory keeps naming a dead sender"), true);
      }
      lookups_pending_.insert(r.id);
      ctx_.after(ctx_.opts.failure_timeout / 8, [this, id = r.id] {
        auto it2 = inbound_.find(id);
        if (it2 != inbound_.end() && it2->second.resuming)
          ctx_.send(ctx_.shard_of(id), msg::Lookup{id, 0, ctx_.me, false, true});
      });
      return;
    }
    in.resuming = false;
    in.sender = r.sender;
    source_of_[r.id] = static_cast<int>(r.sender);
    watch(r.id);
    return;
  }
  if (ctx_.store->find(r.id)) {
    // A local put or an earlier fetch got here first; the shard already
    // counts us as a holder once that copy is published.
    return;
  }
  switch (r.result) {
    case msg::LookupResult::kNotFound:
      fulfill_waiters(r.id,
                      not_found("object " + r.id.short_hex() + " is not in the directory (shard on rank " +
                                std::to_string(ctx_.shard_of(r.id)) + ")"));
      return;
    case msg::LookupResult::kRefused:
      fulfill_waiters(r.id, Status(StatusCode::kCapacity,
                                   "get of " + r.id.short_hex() + ": the directory shard on rank " +
                                       std::to_string(ctx_.shard_of(r.id)) + " refused it at its limit of " +
                                       std::to_string(r.size) + " waiting requests"));
      return;
    case msg::LookupResult::kInline: {
      auto e = ctx_.store->create_object(r.id, r.size);
      if (!e.is_ok()) return fulfill_waiters(r.id, e.status());
      if (r.size) std::memcpy(e.value()->data, r.inline_data.data(), r.size);
      e.value()->seal();
      // Listed as a holder (without the bytes, the shard has them) so that a
      // global remove reaches this copy too.
      msg::Publish p;
      p.id = r.id;
      p.size = r.size;
      p.rank = me;
      p.state = msg::LocationState::kComplete;
      // The caller first: its wake-up need not wait for our send.
      fulfill_waiters(r.id, view_of(e.value()));
      return ctx_.send(ctx_.shard_of(r.id), p);
    }
    case msg::LookupResult::kComposite: return composites_->start(r);
    case msg::LookupResult::kSender: {
      auto e = ctx_.store->create_object(r.id, r.size);
      if (!e.is_ok()) {
        ctx_.send(ctx_.shard_of(r.id), msg::Unpublish{r.id, me});
        return fulfill_waiters(
            r.id, Status(e.status().code(), "get of " + r.id.short_hex() + ": " + e.status().message()));
      }
      if (r.sender == me || r.sender >= ctx_.world) {
        ctx_.send(ctx_.shard_of(r.id), msg::Unpublish{r.id, me});
        ctx_.store->erase(r.id);
        return fulfill_waiters(
            r.id, protocol_error("directory named an impossible sender " + std::to_string(r.sender)));
      }
      Inbound in;
      in.entry = e.value();
      in.dest = in.entry->data;
      in.size = r.size;
      in.sender = r.sender;
      in.gen = next_gen_++;
      inbound_[r.id] = std::move(in);
      source_of_[r.id] = static_cast<int>(r.sender);
      if (r.size == 0) return finish(r.id);
      watch(r.id);
      return;
    }
  }
}

void Fetcher::watch(const ObjectID& id) {
  Inbound& in = inbound_.at(id);
  if (in.stream) stream_to_inbound_.erase(in.stream);
  in.stream = ctx_.streams.next(stream_owner_);
  stream_to_inbound_[in.stream] = id;
  ctx_.send(in.sender, msg::Watch{id, ctx_.me, in.stream});
}

// Tells the sender we are done reading (it unpins) and forgets the route.
void Fetcher::end_stream(Inbound& in) {
  auto it = stream_to_inbound_.find(in.stream);
  if (it != stream_to_inbound_.end()) {
    ctx_.send(in.sender, msg::Unwatch{it->second, ctx_.me, in.stream});
    stream_to_inbound_.erase(it);
  }
  in.stream = 0;
}

void Fetcher::on_progress(const msg::Progress& p, Rank from) {
  auto sit = stream_to_inbound_.find(p.stream);
  if (sit == stream_to_inbound_.end() || sit->second != p.id) return;
  auto it = inbound_.find(p.id);
  if (it == inbound_.end()) return;
  Inbound& in = it->second;
  if (from != in.sender) {
    return ctx_.refuse(from, "Progress",
                       p.id.short_hex() + " is read from rank " + std::to_string(in.sender) + ", not rank " +
                           std::to_string(from));
  }
  if (!in.composite.is_nil() && !p.present && p.size != msg::kWithdrawn && ++in.watch_retries <= 250) {
    // A part's holder may not have started producing it yet, or our ring
    // predecessor has not started reading it: ask again, and after a while
    // go to the producer itself.
    if (in.watch_retries == 25 && in.sender != in.producer) {
      in.sender = in.producer;
      watch(p.id);
      return;
    }
    ctx_.after(watch_retry_delay(in.watch_retries), [this, id = p.id, gen = in.gen] {
      auto it2 = inbound_.find(id);
      if (it2 != inbound_.end() && it2->second.gen == gen) {
        ctx_.send(it2->second.sender, msg::Watch{id, ctx_.me, it2->second.stream});
      }
    });
    return;
  }
  if (!p.present || p.size != in.size) {
    return abort(p.id,
                 peer_failure("rank " + std::to_string(in.sender) + " no longer holds " + p.id.short_hex()),
                 true);
  }
  in.remote_offset = p.offset;
  in.sender_ready = std::max(in.sender_ready, p.ready);
  pump(p.id);
}

void Fetcher::pump(const ObjectID& id) {
  Inbound& in = inbound_.at(id);
  auto* ep = ctx_.transport->endpoint(in.sender);
  if (!ep) return abort(id, peer_failure("no data path to rank " + std::to_string(in.sender)), false);
  while (in.in_flight < ctx_.opts.pipeline_depth && in.next < in.sender_ready) {
    std::uint64_t off = in.next;
    std::uint64_t len = std::min<std::uint64_t>(ctx_.opts.chunk_size, in.sender_ready - off);
    in.next += len;
    in.in_flight++;
    ep->get(
        id, in.dest + off, len, in.remote_offset + off,
        [this, id, gen = in.gen, off, len, pin = in.entry](Status st) { on_chunk(id, gen, off, len, st); });
  }
}

void Fetcher::on_chunk(const ObjectID& id, std::uint64_t gen, std::uint64_t offset, std::uint64_t len,
                       Status st) {
  if (ctx_.stopping) return;
  auto it = inbound_.find(id);
  if (it == inbound_.end() || it->second.gen != gen) return;
  Inbound& in = it->second;
  in.in_flight--;
  if (!st.is_ok()) {
    Status why(st.code(),
               "get of " + id.short_hex() + " from rank " + std::to_string(in.sender) + ": " + st.message());
    // A lost sender is not the end of the transfer: resume from another
    // copy, a bounded number of times.
    if ((st.code() == StatusCode::kPeerFailure || st.code() == StatusCode::kCancelled) &&
        ++in.resumes <= static_cast<int>(2 * ctx_.world)) {
      return resume(id, why);
    }
    return abort(id, why, false);
  }
  ctx_.bytes_received += len;
  in.done[offset] = len;
  const std::uint64_t before = in.contiguous;
  while (!in.done.empty() && in.done.begin()->first == in.contiguous) {
    in.contiguous += in.done.begin()->second;
    in.done.erase(in.done.begin());
  }
  if (in.contiguous != before) report_landed(in, id, before, in.contiguous);
  if (in.composite.is_nil() || in.serves) {
    in.entry->advance(in.contiguous);
    server_.notify(id);  // a partial copy serves what it has: chains stream
  }
  if (in.contiguous == in.size) return finish(id);
  pump(id);
}

void Fetcher::report_landed(const Inbound& in, const ObjectID& id, std::uint64_t from, std::uint64_t to) {
  const ObjectID& whole = in.composite.is_nil() ? id : in.composite;
  auto it = waiters_.find(whole);
  if (it == waiters_.end()) return;
  const std::byte* base = in.dest - in.part_offset;
  for (auto& w : it->second) {
    if (w->report_landed) w->land(in.entry, base, in.part_offset + from, to - from);
  }
}

void Fetcher::finish(const ObjectID& id) {
  auto node = inbound_.extract(id);
  Inbound& in = node.mapped();
  end_stream(in);
  if (!in.composite.is_nil()) {
    if (in.serves) {
      in.entry->seal();
      server_.notify(id);
    }
    return composites_->part_done(in.composite, id);
  }
  in.entry->seal();
  // The caller first: its wake-up need not wait for our sends.
  fulfill_waiters(id, view_of(in.entry));
  server_.notify(id);
  ctx_.send(ctx_.shard_of(id), dir_.publish_msg(*in.entry, msg::LocationState::kComplete));
}

void Fetcher::abort(const ObjectID& id, const Status& why, bool retry) {
  auto it = inbound_.find(id);
  if (it == inbound_.end()) return;
  end_stream(it->second);
  if (!it->second.composite.is_nil()) return composites_->fail(it->second.composite, why);
  inbound_.erase(it);
  ctx_.store->erase(id);
  source_of_.erase(id);
  ctx_.send(ctx_.shard_of(id), msg::Unpublish{id, ctx_.me});
  server_.drop(id);
  LOG_INFO("transfer of " << id.short_hex() << " aborted: " << why.to_string());
  if (retry && waiters_.count(id)) {
    start_lookup(id, must_exist_ids_.count(id) > 0);
  } else {
    fulfill_waiters(id, why);
  }
}

void Fetcher::resume(const ObjectID& id, const Status& why) {
  auto it = inbound_.find(id);
  if (it == inbound_.end()) return;
  Inbound& in = it->second;
  if (!in.composite.is_nil()) return abort(id, why, false);
  // Keep every byte that arrived in order; reads beyond it are redone.
  in.gen = next_gen_++;
  in.resuming = true;
  stream_to_inbound_.erase(in.stream);  // the dead sender's stream
  in.stream = 0;
  in.in_flight = 0;
  in.done.clear();
  in.next = in.contiguous;
  in.sender_ready = 0;
  LOG_INFO("transfer of " << id.short_hex() << " resumes at byte " << in.contiguous << ": "
                          << why.to_string());
  lookups_pending_.insert(id);
  ctx_.send(ctx_.shard_of(id), msg::Lookup{id, 0, ctx_.me, false, true});
}

void Fetcher::add_part(const PartTransfer& p) {
  Inbound in;
  in.entry = p.entry;
  in.dest = p.dest;
  in.part_offset = p.offset;
  in.size = p.size;
  in.producer = p.producer;
  in.sender = p.sender;
  in.gen = next_gen_++;
  in.composite = p.composite;
  in.serves = p.serves;
  inbound_[p.id] = std::move(in);
}

void Fetcher::start_part(const ObjectID& part) {
  auto it = inbound_.find(part);
  if (it == inbound_.end()) return;
  if (it->second.size == 0) return finish(part);
  watch(part);
}

void Fetcher::end_part(const ObjectID& part, const ObjectID& composite) {
  auto it = inbound_.find(part);
  if (it == inbound_.end() || it->second.composite != composite) return;
  end_stream(it->second);
  inbound_.erase(it);
}

void Fetcher::on_local_sealed(const std::shared_ptr<store::ObjectEntry>& e) {
  lookups_pending_.erase(e->id);
  server_.replay_parked(e->id);
  server_.notify(e->id);
  fulfill_waiters(e->id, view_of(e));
}

void Fetcher::fulfill_waiters(const ObjectID& id, const Result<ObjectView>& r) {
  must_exist_ids_.erase(id);
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return;
  auto list = std::move(it->second);
  waiters_.erase(it);
  for (auto& w : list) w->fulfill(r);
}

void Fetcher::delete_local(const ObjectID& id) {
  bool receiving = inbound_.count(id) > 0;
  if (receiving) {
    auto node = inbound_.extract(id);
    end_stream(node.mapped());
  }
  ctx_.store->erase(id);
  source_of_.erase(id);
  server_.drop(id);
  composites_->forget(id);
  // Local gets still waiting wait for a new put.
  if (receiving && waiters_.count(id)) start_lookup(id, must_exist_ids_.count(id) > 0);
}

// Transfers from the dead sender that were waiting for progress (no read in
// flight, so no failed read to tell them).
void Fetcher::on_peer_lost(Rank f) {
  std::vector<ObjectID> stalled;
  for (auto& [id, in] : inbound_) {
    if (in.sender == f && !in.resuming) stalled.push_back(id);
  }
  for (const auto& id : stalled) resume(id, peer_failure("sender rank " + std::to_string(f) + " failed"));
}

// Re-reports local copies whose shard moved (soft state is rebuilt from the
// holders, so no object that still has a copy is lost) and re-sends the
// lookups that were waiting there.
void Fetcher::on_shards_moved(const std::vector<bool>& old_alive) {
  ctx_.store->for_each([&](const std::shared_ptr<store::ObjectEntry>& e) {
    if (ctx_.shard_in(e->id, old_alive) == ctx_.shard_of(e->id)) return;
    if (composites_->assembling(e->id)) return;  // not a copy until assembled
    // A receiver is a partial location; its lookup is re-sent below.
    if (inbound_.count(e->id)) return;
    ctx_.send(ctx_.shard_of(e->id), dir_.publish_msg(*e, e->sealed() ? msg::LocationState::kComplete
                                                                     : msg::LocationState::kPartial));
  });
  for (const auto& id : lookups_pending_) {
    if (ctx_.shard_in(id, old_alive) == ctx_.shard_of(id)) continue;
    auto in = inbound_.find(id);
    bool resuming = in != inbound_.end() && in->second.resuming;
    ctx_.send(ctx_.shard_of(id), msg::Lookup{id, 0, ctx_.me, false, resuming});
  }
}

void Fetcher::on_stop() {
  for (auto& [id, list] : waiters_) {
    for (auto& w : list) w->fulfill(Status(StatusCode::kCancelled, "node shut down"));
  }
  waiters_.clear();
}

}  // namespace hoplite::node
