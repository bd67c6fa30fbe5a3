#include "node/composites.h"

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
  // other readers read from the producers.
  std::optional<std::size_t> my_index;
  for (std::size_t j = 0; j < r.parts.size(); ++j) {
    if (r.parts[j].holder == ctx_.me) my_index = j;
  }
  const std::size_t m = r.parts.size();
  Assembly& a = gets_[r.id];
  a.entry = e.value();
  a.remaining = m;
  for (const auto& part : r.parts) {
    a.parts.push_back(part.id);
    PartTransfer t;
    t.id = part.id;
    t.composite = r.id;
    t.dest = a.entry->data + part.offset;
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
        if (my_index) t.sender = r.parts[(*my_index + m - 1) % m].holder;
      } else {
        t.entry = a.entry;  // the id is taken locally: read, don't serve
      }
    }
    fetcher_.add_part(t);
  }
  // Watches go out after every part is registered: a zero-size part
  // completes at once and may complete the whole object.
  for (const auto& part : r.parts) fetcher_.start_part(part.id);
}

void Composites::part_done(const ObjectID& composite, const ObjectID&) {
  auto it = gets_.find(composite);
  if (it == gets_.end()) return;
  if (--it->second.remaining > 0) return;
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
    ctx_.after(ctx_.opts.failure_timeout, [this, composite] {
      if (fetcher_.has_waiters(composite) && !fetcher_.lookup_pending(composite))
        fetcher_.start_lookup(composite, false);
    });
    return;
  }
  retries_.erase(composite);
  fetcher_.fulfill_waiters(composite, why);
}

// Stops an assembly: its part transfers end, and its views are withdrawn
// (our ring successors look elsewhere).
void Composites::dismantle(std::unordered_map<ObjectID, Assembly>::iterator it) {
  const ObjectID id = it->first;
  const Assembly a = std::move(it->second);
  gets_.erase(it);
  for (const auto& part : a.parts) fetcher_.end_part(part, id);
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
