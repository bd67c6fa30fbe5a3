// Membership: heartbeats, the failure detector, and what a failure or a
// rejoin changes.
//
// Every node heartbeats every other node every failure_timeout/4 and declares
// a peer failed when it has heard nothing from it (any message counts) for
// failure_timeout, or at once when the peer's control connection breaks.
// Each node decides for itself; the views converge because every survivor
// sees the same silence or the same reset.
//
// A failure changes three things. The data plane drops the peer, so its
// in-flight chunk reads fail and each affected transfer resumes from its
// last contiguous byte from another copy. The directory forgets the peer
// (it holds nothing, waits for nothing), and the peer's own shard moves to
// the next live rank: every survivor re-publishes what it holds there and
// re-sends the lookups and locates it had waiting there. Reduces that used
// the peer recompute only the path above what it held (see reduce.cc).
#include "node/node_impl.h"

namespace hoplite {

void Node::Impl::start_heartbeats() {
  alive.assign(world, true);
  last_seen.assign(world, std::chrono::steady_clock::now());
  heartbeat_timer = std::make_shared<asio::steady_timer>(io);
  heartbeat_tick();
}

void Node::Impl::heartbeat_tick() {
  if (stopping) return;
  const auto now = std::chrono::steady_clock::now();
  for (Rank r = 0; r < world; ++r) {
    if (r == me || !alive[r]) continue;
    if (now - last_seen[r] > opts.failure_timeout) {
      declare_failed(r, "no heartbeat for " + std::to_string(opts.failure_timeout.count()) + " ms", true);
      continue;
    }
    send_to(r, msg::Heartbeat{me, membership_epoch});
  }
  heartbeat_timer->expires_after(opts.failure_timeout / 4);
  heartbeat_timer->async_wait([this](error_code ec) {
    if (!ec) heartbeat_tick();
  });
}

void Node::Impl::declare_failed(Rank f, const std::string& why, bool silent) {
  if (stopping || f == me || f >= world || !alive[f]) return;
  auto old_alive = alive;
  alive[f] = false;
  membership_epoch++;
  // A peer that closed its connections cleanly most likely finished its
  // job; a silent or reset one did not.
  if (!silent && why.find("End of file") != std::string::npos) {
    LOG_INFO("rank " << f << " left (" << why << "), membership epoch " << membership_epoch);
  } else {
    LOG_WARN("rank " << f << " declared failed (" << why << "), membership epoch " << membership_epoch);
  }

  // Sockets first: in-flight reads from the peer fail now (a stopped
  // process would otherwise hold them forever) and resume elsewhere.
  if (out[f]) out[f]->close(peer_failure("rank " + std::to_string(f) + " failed"));
  out[f].reset();
  // A silent peer's inbound connections are cut (it may be stopped, not
  // dead); a peer that closed a connection is gone, and what it sent on its
  // other connections before leaving is still worth reading.
  if (silent) {
    for (auto& w : inbound) {
      if (auto c = w.lock(); c && c->peer == f)
        c->close(peer_failure("rank " + std::to_string(f) + " failed"));
    }
  }
  transport->fail_peer(f, peer_failure("rank " + std::to_string(f) + " failed: " + why));

  shard.forget_rank(f);
  for (auto it = watchers.begin(); it != watchers.end();) {
    std::erase_if(it->second, [f](const auto& kv) { return kv.first.first == f; });
    it = it->second.empty() ? watchers.erase(it) : std::next(it);
  }
  for (auto& [id, ranks] : parked_watches) {
    std::erase_if(ranks, [f](const auto& rs) { return rs.first == f; });
  }

  // Transfers from the dead sender that were waiting for progress (no read
  // in flight, so no failed read to tell them).
  std::vector<ObjectID> stalled;
  for (auto& [id, in] : inbound_transfers) {
    if (in.sender == f && !in.resuming) stalled.push_back(id);
  }
  for (const auto& id : stalled)
    resume_inbound(id, peer_failure("sender rank " + std::to_string(f) + " failed"));

  // Reduce tasks reading from the dead node keep what they folded and wait
  // for their coordinator's retarget or cancel. Tasks the dead node
  // coordinated: nobody will use their output.
  std::vector<std::uint64_t> orphans;
  std::vector<std::pair<std::uint64_t, std::size_t>> stuck;
  for (const auto& [task, ex] : reduce_execs) {
    if (ex.task.coordinator == f) {
      orphans.push_back(task);
      continue;
    }
    for (std::size_t ui = 0; ui < ex.ups.size(); ++ui) {
      if (ex.ups[ui].holder == f && !ex.ups[ui].finished) stuck.emplace_back(task, ui);
    }
  }
  for (auto task : orphans) drop_reduce_exec(task, true);
  for (auto [task, ui] : stuck) orphan_upstream(task, ui, f);

  membership_changed(old_alive);

  // Reduces whose plan used the dead node: a tree-chain recomputes the
  // path above the lost positions, a striped allreduce starts over
  // (reduce.cc).
  std::vector<std::uint64_t> repair, restart;
  for (auto& [rid, c] : reduces) {
    bool hit = std::find(c.pos_holder.begin(), c.pos_holder.end(), f) != c.pos_holder.end();
    bool pending_hit = c.reserved && c.reserved->holder == f;
    for (const auto& r : c.pending) pending_hit = pending_hit || r.holder == f;
    if (pending_hit || c.striped_holders.count(f)) {
      restart.push_back(rid);
    } else if (hit) {
      repair.push_back(rid);
    }
  }
  const std::string lost = "rank " + std::to_string(f) + " failed";
  for (auto rid : restart) restart_reduce(rid, lost);
  for (auto rid : repair) repair_reduce(rid, lost);

  // Barriers wait for live ranks only: the dead one may have been the last.
  // Its arrival goes: if it rejoins, the new process must arrive itself.
  if (me == 0) {
    std::vector<std::uint64_t> ready;
    for (auto& [epoch, arrived] : barrier_arrivals) {
      arrived.erase(f);
      if (barrier_complete(arrived)) ready.push_back(epoch);
    }
    for (auto epoch : ready) release_barrier(epoch);
  }
  notify_membership();
  {
    std::lock_guard lock(membership_mu);
    if (membership_callback) {
      MembershipEvent ev{static_cast<int>(f), false, membership_epoch, why};
      callbacks->post([cb = membership_callback, ev] { cb(ev); });
    }
  }
}

// Re-routes directory state whose shard owner changed with membership.
void Node::Impl::membership_changed(const std::vector<bool>& old_alive) {
  // Re-report local copies whose shard moved: soft state is rebuilt from the
  // holders, so no object that still has a copy is lost.
  store->for_each([&](const std::shared_ptr<store::ObjectEntry>& e) {
    if (shard_in(e->id, old_alive) == shard_of(e->id)) return;
    if (composite_gets.count(e->id)) return;  // not a copy until assembled
    auto in = inbound_transfers.find(e->id);
    if (in != inbound_transfers.end()) {
      // A receiver is a partial location; its lookup is re-sent below.
      return;
    }
    send_to(shard_of(e->id),
            publish_msg(*e, e->sealed() ? msg::LocationState::kComplete : msg::LocationState::kPartial));
  });
  for (const auto& id : lookups_pending) {
    if (shard_in(id, old_alive) == shard_of(id)) continue;
    auto in = inbound_transfers.find(id);
    bool resume = in != inbound_transfers.end() && in->second.resuming;
    send_to(shard_of(id), msg::Lookup{id, 0, me, false, resume});
  }
  for (const auto& [req, id] : locate_ids) {
    if (shard_in(id, old_alive) == shard_of(id)) continue;
    send_to(shard_of(id), msg::Locate{id, req, me});
  }
  // Puts and removes still waiting for an ack from a shard that moved.
  for (auto& [req, u] : unacked) {
    Rank now = shard_of(u.id);
    if (now == u.sent_to) continue;
    u.sent_to = now;
    send_to(now, u.message);
  }
}

void Node::Impl::resume_inbound(const ObjectID& id, const Status& why) {
  auto it = inbound_transfers.find(id);
  if (it == inbound_transfers.end()) return;
  Inbound& in = it->second;
  if (!in.composite.is_nil()) return abort_inbound(id, why, false);
  // Keep every byte that arrived in order; reads beyond it are redone.
  in.gen = next_gen++;
  in.resuming = true;
  stream_to_inbound.erase(in.stream);  // the dead sender's stream
  in.stream = 0;
  in.in_flight = 0;
  in.done.clear();
  in.next = in.contiguous;
  in.sender_ready = 0;
  LOG_INFO("transfer of " << id.short_hex() << " resumes at byte " << in.contiguous << ": "
                          << why.to_string());
  lookups_pending.insert(id);
  send_to(shard_of(id), msg::Lookup{id, 0, me, false, true});
}

void Node::Impl::notify_membership() {
  std::lock_guard lock(membership_mu);
  failed_copy.clear();
  for (Rank r = 0; r < world; ++r) {
    if (!alive[r]) failed_copy.push_back(static_cast<int>(r));
  }
  epoch_copy = membership_epoch;
}

// Rank 0: a restarted process wants its rank back.
void Node::Impl::on_rejoin(const std::shared_ptr<Connection>& c, const msg::Rejoin& r) {
  if (me != 0 || r.rank == 0 || r.rank >= world) {
    if (c) c->reject(invalid_argument("cannot rejoin as rank " + std::to_string(r.rank)));
    return;
  }
  // A process that comes back under a live rank replaces it: the old one
  // is gone (the new one could not have bound its identity otherwise).
  if (alive[r.rank]) declare_failed(r.rank, "replaced by a rejoining process", true);
  msg::Table t;
  t.peers = peers;
  t.peers[r.rank] = r.info;
  // The rejoiner learns who else is dead through PeerUpdates after the table.
  if (c) {
    c->peer = r.rank;
    c->send(t);
    c->send(msg::BarrierDone{last_barrier_released});
    for (Rank x = 0; x < world; ++x) {
      if (!alive[x] && x != r.rank) c->send(msg::PeerUpdate{x, false, peers[x]});
    }
  }
  for (Rank x = 1; x < world; ++x) {
    if (alive[x] && x != r.rank) send_to(x, msg::PeerUpdate{r.rank, true, r.info});
  }
  on_peer_update(msg::PeerUpdate{r.rank, true, r.info});
}

void Node::Impl::on_peer_update(const msg::PeerUpdate& u) {
  if (u.rank >= world || u.rank == me) return;
  if (!u.alive) {
    // Only the rejoiner gets these, right after its table.
    if (alive[u.rank]) {
      auto old_alive = alive;
      alive[u.rank] = false;
      membership_epoch++;
      membership_changed(old_alive);
      notify_membership();
    }
    return;
  }
  auto old_alive = alive;
  peers[u.rank] = u.info;
  if (out[u.rank]) out[u.rank]->close(Status(StatusCode::kCancelled, "peer rejoined"));
  out[u.rank].reset();
  Status st = transport->add_peer(u.rank, u.info.transport_address, u.info.remote_key);
  if (!st.is_ok()) {
    LOG_ERROR("rejoin of rank " << u.rank << ": " << st.to_string());
    return;
  }
  alive[u.rank] = true;
  last_seen[u.rank] = std::chrono::steady_clock::now();
  membership_epoch++;
  LOG_WARN("rank " << u.rank << " rejoined, membership epoch " << membership_epoch);
  membership_changed(old_alive);
  notify_membership();
  std::lock_guard lock(membership_mu);
  if (membership_callback) {
    MembershipEvent ev{static_cast<int>(u.rank), true, membership_epoch, "rejoined"};
    callbacks->post([cb = membership_callback, ev] { cb(ev); });
  }
}

}  // namespace hoplite
