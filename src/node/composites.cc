#include "node/composites.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "node/directory_client.h"
#include "node/fetcher.h"
#include "node/object_server.h"

namespace hoplite::node {

Composites::Composites(NodeContext& ctx, Fetcher& fetcher, ObjectServer& server, DirectoryClient& dir)
    : ctx_(ctx), fetcher_(fetcher), server_(server), dir_(dir) {}

// Each node receives each part once, which is what gives the striped
// allreduce its ring-like 2(N-1)/N cost.
void Composites::start(const msg::LookupReply& r) {
  auto e = ctx_.store->create_object(r.id, r.size);
  if (!e.is_ok() && salvage_.erase(r.id) > 0) {
    // The failed assembly's extent may be what is in the way: give up its
    // parts (they are read again) rather than the get.
    e = ctx_.store->create_object(r.id, r.size);
  }
  if (!e.is_ok())
    return fetcher_.fulfill_waiters(
        r.id, Status(e.status().code(), "get of " + r.id.short_hex() + ": " + e.status().message()));
  for (const auto& part : r.parts) {
    if (fetcher_.receiving(part.id) || part.holder >= ctx_.world) {
      ctx_.store->erase(r.id);
      return fetcher_.fulfill_waiters(
          r.id, protocol_error("composite " + r.id.short_hex() + " has a bad part " + part.id.short_hex()));
    }
  }
  // Holders read every part from their predecessor in the ring of holders;
  // other readers read from the producers. The ring is over distinct
  // holders: a repaired allreduce may end two stripes at one.
  std::vector<Rank> ring;
  std::unordered_set<Rank> seen;
  for (const auto& part : r.parts) {
    if (seen.insert(part.holder).second) ring.push_back(part.holder);
  }
  std::optional<Rank> predecessor;
  if (auto at = std::find(ring.begin(), ring.end(), ctx_.me); at != ring.end()) {
    predecessor = ring[(static_cast<std::size_t>(at - ring.begin()) + ring.size() - 1) % ring.size()];
  }
  std::optional<Salvage> old;
  if (auto sv = salvage_.extract(r.id); sv && sv.mapped().entry->size == r.size) old = std::move(sv.mapped());
  Assembly& a = gets_[r.id];
  a.entry = e.value();
  a.remaining = r.parts.size();
  a.parts = r.parts;
  for (const auto& part : r.parts) {
    if (take_salvaged(old ? &*old : nullptr, part, a)) continue;
    PartTransfer t;
    t.id = part.id;
    t.composite = r.id;
    t.dest = a.entry->data + part.offset;
    t.offset = part.offset;
    t.size = part.size;
    t.producer = part.holder;
    t.sender = part.holder;
    if (part.holder == ctx_.me) {
      t.entry = a.entry;  // our own stripe: a local copy, nothing to serve
    } else {
      auto view = ctx_.store->create_view(part.id, a.entry, part.offset, part.size);
      if (view.is_ok()) {
        t.entry = view.value();
        t.serves = true;
        a.views.push_back(part.id);
        if (predecessor) t.sender = *predecessor;
      } else {
        t.entry = a.entry;  // the id is taken locally: read, don't serve
      }
    }
    fetcher_.add_part(t);
  }
  // Watches go out after every part is registered: a zero-size part
  // completes at once and may complete the whole object.
  if (a.remaining == 0) return finish(gets_.find(r.id));
  std::vector<ObjectID> to_start;
  for (const auto& part : r.parts) {
    if (!a.done.count(part.id)) to_start.push_back(part.id);
  }
  for (const auto& id : to_start) fetcher_.start_part(id);
}

// A part kept by the new declaration is copied from the failed assembly's
// extent (a local copy, not a transfer), and served on like a read one.
bool Composites::take_salvaged(const Salvage* old, const msg::Part& p, Assembly& a) {
  if (!old) return false;
  auto same = [&](const msg::Part& q) { return q.id == p.id && q.offset == p.offset && q.size == p.size; };
  if (std::none_of(old->parts.begin(), old->parts.end(), same)) return false;
  if (p.size) std::memcpy(a.entry->data + p.offset, old->entry->data + p.offset, p.size);
  a.done.insert(p.id);
  a.remaining--;
  if (p.holder != ctx_.me) {
    auto view = ctx_.store->create_view(p.id, a.entry, p.offset, p.size);
    if (view.is_ok()) {
      view.value()->seal();
      a.views.push_back(p.id);
      server_.notify(p.id);
    }
  }
  return true;
}

void Composites::part_done(const ObjectID& composite, const ObjectID& part) {
  auto it = gets_.find(composite);
  if (it == gets_.end()) return;
  it->second.done.insert(part);
  if (--it->second.remaining > 0) return;
  finish(it);
}

void Composites::finish(std::unordered_map<ObjectID, Assembly>::iterator it) {
  const ObjectID composite = it->first;
  auto entry = it->second.entry;
  if (!it->second.views.empty()) views_[composite] = std::move(it->second.views);
  gets_.erase(it);
  entry->seal();
  ctx_.send(ctx_.shard_of(composite), dir_.publish_msg(*entry, msg::LocationState::kComplete));
  server_.notify(composite);
  fetcher_.fulfill_waiters(composite, fetcher_.view_of(entry));
}

void Composites::fail(ObjectID composite, const Status& why) {
  auto it = gets_.find(composite);
  if (it == gets_.end()) return;
  const auto entry = it->second.entry;
  Salvage kept{entry, {}};
  for (const auto& p : it->second.parts) {
    if (it->second.done.count(p.id)) kept.parts.push_back(p);
  }
  dismantle(it);
  // Only our own half-assembled copy: a restarted reduce may already have
  // put a new object under this id here.
  if (ctx_.store->find(composite) == entry) ctx_.store->erase(composite);
  LOG_INFO("get of composite " << composite.short_hex() << " failed: " << why.to_string());
  // A producer died, or withdrew a part (its holder then refuses the
  // read): the allreduce restarts and republishes the target, so look it
  // up again (a few times) instead of failing the readers.
  const bool retryable = why.code() == StatusCode::kPeerFailure || why.code() == StatusCode::kNotFound;
  if (retryable && ++retries_[composite] <= 3 && fetcher_.has_waiters(composite)) {
    if (!kept.parts.empty()) salvage_[composite] = std::move(kept);
    ctx_.after(ctx_.opts.failure_timeout, [this, composite] {
      if (fetcher_.has_waiters(composite) && !fetcher_.lookup_pending(composite))
        fetcher_.start_lookup(composite, false);
    });
    // Not looked up again in time (or answered otherwise): let it go.
    ctx_.after(ctx_.opts.failure_timeout * 8, [this, composite, e = std::weak_ptr(entry)] {
      auto sv = salvage_.find(composite);
      if (sv != salvage_.end() && sv->second.entry == e.lock()) salvage_.erase(sv);
    });
    return;
  }
  retries_.erase(composite);
  salvage_.erase(composite);
  fetcher_.fulfill_waiters(composite, why);
}

// Stops an assembly: its part transfers end, and its views are withdrawn
// (our ring successors look elsewhere).
void Composites::dismantle(std::unordered_map<ObjectID, Assembly>::iterator it) {
  const ObjectID id = it->first;
  const Assembly a = std::move(it->second);
  gets_.erase(it);
  for (const auto& part : a.parts) {
    if (!a.done.count(part.id)) fetcher_.end_part(part.id, id);
  }
  for (const auto& v : a.views) {
    ctx_.store->erase(v);
    server_.drop(v, true);
  }
}

void Composites::forget(const ObjectID& id) {
  auto v = views_.find(id);
  if (v == views_.end()) return;
  for (const auto& part : v->second) {
    ctx_.store->erase(part);
    server_.drop(part);
  }
  views_.erase(v);
}

void Composites::abandon(const ObjectID& id, const std::shared_ptr<store::ObjectEntry>& entry) {
  auto it = gets_.find(id);
  if (it != gets_.end() && it->second.entry == entry) dismantle(it);
}

}  // namespace hoplite::node
