#include "node/object_server.h"

namespace hoplite::node {

ObjectServer::ObjectServer(NodeContext& ctx, std::function<bool(const ObjectID&)> copy_coming)
    : ctx_(ctx), copy_coming_(std::move(copy_coming)) {
  ctx_.dispatch.on<msg::Watch>([this](const ConnPtr&, const msg::Watch& w) { on_watch(w); });
  ctx_.dispatch.on<msg::Unwatch>([this](const ConnPtr&, const msg::Unwatch& u) {
    auto it = watchers_.find(u.id);
    if (it == watchers_.end()) return;
    if (it->second.erase({u.requester, u.stream})) watches_of_[u.requester]--;
    if (it->second.empty()) watchers_.erase(it);
    count_watches();
  });
}

void ObjectServer::on_watch(const msg::Watch& w) {
  if (w.requester >= ctx_.world) return;
  auto e = ctx_.store->find(w.id);
  const bool coming = !e && copy_coming_(w.id);
  if (coming) {
    // The directory made us this reader's sender before our own lookup
    // reply arrived: the copy exists in a moment, so hold the watch.
    if (parked_count_ < kMaxParked && parked_of_[w.requester] < kMaxParkedPerRank) {
      parked_[w.id].emplace_back(w.requester, w.stream);
      parked_count_++;
      parked_of_[w.requester]++;
      return;
    }
    refuse(w, "it has " + std::to_string(parked_of_[w.requester]) + " watches waiting here (limit " +
                  std::to_string(kMaxParkedPerRank) + "), all ranks " + std::to_string(parked_count_) +
                  " (limit " + std::to_string(kMaxParked) + ")");
  }
  msg::Progress p;
  p.id = w.id;
  p.stream = w.stream;
  if (!e && !coming) {
    // The directory thinks we hold it: correct that, or it keeps sending
    // readers here.
    ctx_.send(ctx_.shard_of(w.id), msg::Unpublish{w.id, ctx_.me});
  }
  auto& mine = watches_of_[w.requester];
  // A repeated Watch of the same stream replaces its pin and costs nothing.
  auto& streams = watchers_[w.id];
  if (e && mine >= kMaxWatchesPerRank && !streams.count({w.requester, w.stream})) {
    refuse(w, "it watches " + std::to_string(mine) + " streams here (limit " +
                  std::to_string(kMaxWatchesPerRank) + ")");
    e.reset();
  }
  if (!e && streams.empty()) watchers_.erase(w.id);
  if (e) {
    auto [slot, fresh] = streams.try_emplace({w.requester, w.stream});
    if (fresh) mine++;
    auto& wt = slot->second;
    wt.pin = e;
    wt.sent = e->ready();
    p.present = true;
    p.offset = e->offset;
    p.size = e->size;
    p.ready = wt.sent;
  }
  count_watches();
  ctx_.send(w.requester, p);
}

void ObjectServer::refuse(const msg::Watch& w, const std::string& why) {
  ctx_.refused++;
  const auto n = ++refusals_of_[w.requester];
  if ((n & (n - 1)) == 0) {
    LOG_WARN("refused Watch of " << w.id.short_hex() << " from rank " << w.requester << ": " << why
                                 << "; answered as not here (refusal " << n << ")");
  }
}

void ObjectServer::count_watches() {
  std::size_t n = 0;
  for (const auto& [r, k] : watches_of_) n += k;
  ctx_.watches = n;
}

void ObjectServer::replay_parked(const ObjectID& id) {
  auto it = parked_.find(id);
  if (it == parked_.end()) return;
  auto ranks = std::move(it->second);
  parked_.erase(it);
  parked_count_ -= ranks.size();
  for (auto [r, stream] : ranks) {
    if (--parked_of_[r] == 0) parked_of_.erase(r);
  }
  for (auto [r, stream] : ranks) on_watch(msg::Watch{id, r, stream});
}

void ObjectServer::notify(const ObjectID& id) {
  if (local_listener_) local_listener_(id, false);
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  for (auto& [key, w] : it->second) {
    std::uint64_t ready = w.pin->ready();
    if (ready <= w.sent) continue;
    w.sent = ready;
    ctx_.send(key.first, msg::Progress{id, true, w.pin->offset, w.pin->size, ready, key.second});
  }
}

void ObjectServer::drop(const ObjectID& id, bool withdrawn) {
  if (local_listener_) local_listener_(id, true);
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  auto list = std::move(it->second);
  watchers_.erase(it);
  for (auto& [key, w] : list) watches_of_[key.first]--;
  count_watches();
  // They re-plan through the directory and find another copy.
  const std::uint64_t size = withdrawn ? msg::kWithdrawn : 0;
  for (auto& [key, w] : list) ctx_.send(key.first, msg::Progress{id, false, 0, size, 0, key.second});
}

Status ObjectServer::granted(Rank peer, const ObjectID& id, std::uint64_t offset,
                             std::uint64_t length) const {
  auto it = watchers_.find(id);
  if (it != watchers_.end()) {
    for (auto w = it->second.lower_bound({peer, 0}); w != it->second.end() && w->first.first == peer; ++w) {
      const auto& pin = *w->second.pin;
      const std::uint64_t ready = pin.ready();
      if (offset >= pin.offset && length <= ready && offset - pin.offset <= ready - length) return {};
    }
    return invalid_argument("rank " + std::to_string(peer) + " asked for bytes of " + id.short_hex() +
                            " it was not granted");
  }
  return not_found("rank " + std::to_string(peer) + " does not watch " + id.short_hex() + " here");
}

void ObjectServer::on_peer_lost(Rank f) {
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    std::erase_if(it->second, [f](const auto& kv) { return kv.first.first == f; });
    it = it->second.empty() ? watchers_.erase(it) : std::next(it);
  }
  watches_of_.erase(f);
  count_watches();
  for (auto& [id, ranks] : parked_)
    parked_count_ -= std::erase_if(ranks, [f](const auto& rs) { return rs.first == f; });
  parked_of_.erase(f);
}

}  // namespace hoplite::node
