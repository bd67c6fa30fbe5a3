#include "node/membership.h"

#include <algorithm>

#include "common/host_port.h"
#include "node/barriers.h"

namespace hoplite::node {

using asio::ip::tcp;

// --------------------------------------------------------------- bootstrap

Membership::Membership(NodeContext& ctx, ControlPlane& ctrl, Barriers& barriers)
    : ctx_(ctx),
      ctrl_(ctrl),
      barriers_(barriers),
      detector_(ctx.me, ctx.world, ctx.opts.failure_timeout),
      callbacks_(std::make_unique<CallbackThread>()) {
  ctrl_.set_events(this);
  auto& d = ctx_.dispatch;
  d.on<msg::Register>([this](const ConnPtr& c, const msg::Register& r) { on_register(c, r); });
  d.on<msg::Table>([this](const ConnPtr&, const msg::Table& t) { install_table(t); });
  d.on<msg::Heartbeat>([](const ConnPtr&, const msg::Heartbeat&) {});
  d.on<msg::Rejoin>([this](const ConnPtr& c, const msg::Rejoin& r) { on_rejoin(c, r); });
  d.on<msg::RejoinAt>([this](const ConnPtr& c, const msg::RejoinAt& a) { on_rejoin_at(c, a); });
  d.on<msg::PeerUpdate>([this](const ConnPtr&, const msg::PeerUpdate& u) {
    // A rejoiner's table is installed first; updates follow it. Before
    // that, the view and the address book it would index are empty.
    if (ctx_.alive.empty() || !ctrl_.has_table()) return;
    on_peer_update(u);
  });
  d.on<msg::Error>([this](const ConnPtr& c, const msg::Error& e) { on_error(c, e); });
  // Tools (and members) may ask how this node sees the cluster; the answer
  // goes back on the asking connection, never to a rank it names.
  d.on<msg::DiagRequest>([this](const ConnPtr& c, const msg::DiagRequest& q) {
    if (!c) return;
    msg::DiagReply a;
    a.request = q.request;
    a.rank = ctx_.me;
    a.world = ctx_.world;
    a.epoch = epoch();
    for (int r : failed_ranks()) a.failed.push_back(static_cast<Rank>(r));
    a.objects = ctx_.store->count();
    a.store_used = ctx_.store->used();
    a.store_capacity = ctx_.store->capacity();
    c->send(a);
  });
  d.on<msg::DiagReply>([this](const ConnPtr& c, const msg::DiagReply&) {
    ctx_.refuse(ctx_.sender(c), "DiagReply", "this node asks nobody for diagnostics");
  });
}

void Membership::fail_join(Status st) {
  if (joined_set_) return;
  joined_set_ = true;
  joined_.set_value(std::move(st));
}

void Membership::start_bootstrap(std::chrono::steady_clock::time_point deadline) {
  deadline_ = deadline;
  // Rank 0's own address is the bootstrap address: a restarted rank 0 asks
  // the others.
  if (ctx_.me != 0) contacts_.push_back(ctx_.opts.bootstrap_address);
  if (ctx_.opts.rejoin) {
    for (const auto& c : ctx_.opts.rejoin_contacts) {
      if (std::find(contacts_.begin(), contacts_.end(), c) == contacts_.end()) contacts_.push_back(c);
    }
  }
  if (!contacts_.empty()) return bootstrap_connect(deadline);
  if (ctx_.world == 1) {
    msg::Table t;
    t.peers.push_back(ctrl_.self_info());
    install_table(t);
  }
}

void Membership::retry_join(std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds delay) {
  if (std::chrono::steady_clock::now() > deadline) return;
  ctx_.after(delay, [this, deadline] {
    if (!joined_set_) bootstrap_connect(deadline);
  });
}

void Membership::bootstrap_connect(std::chrono::steady_clock::time_point deadline) {
  const std::string& contact = contacts_[next_contact_ % contacts_.size()];
  auto parsed = split_host_port(contact);
  if (!parsed.is_ok()) return fail_join(parsed.status());
  auto boot = parsed.value();
  auto sock = std::make_shared<tcp::socket>(ctx_.io);
  error_code ec;
  auto addr = asio::ip::make_address(boot.first, ec);
  if (ec) {
    tcp::resolver res(ctx_.io);
    auto eps = res.resolve(boot.first, std::to_string(boot.second), ec);
    if (ec || eps.empty())
      return fail_join(invalid_argument("bootstrap host '" + boot.first + "' does not resolve"));
    addr = eps.begin()->endpoint().address();
  }
  tcp::endpoint ep(addr, boot.second);
  sock->async_connect(ep, [this, sock, deadline](error_code ec2) {
    if (ctx_.stopping || joined_set_) return;
    if (ec2) {
      // Rank 0 may simply not be up yet, or this contact is dead: retry
      // (the next contact, for a rejoiner) until the deadline.
      next_contact_++;
      return retry_join(deadline, std::chrono::milliseconds(50));
    }
    if (!ctx_.opts.rejoin) {
      join_ = ctrl_.adopt_outbound(0, std::move(*sock));
      join_->send(msg::Register{ctx_.me, ctrl_.self_info()});
      return;
    }
    // A contact is known by address only; whoever answers proves its rank.
    join_ = ctrl_.adopt_outbound(msg::kNoRank, std::move(*sock));
    join_->send(msg::Rejoin{ctx_.me, ctrl_.self_info()});
    watch_join(deadline, join_);
  });
}

// A contact that dies, refuses the handshake or closes before our table
// came leaves nothing to wait for: the next contact is asked.
void Membership::watch_join(std::chrono::steady_clock::time_point deadline, const ConnPtr& c) {
  ctx_.after(std::chrono::milliseconds(100), [this, deadline, c] {
    if (joined_set_ || join_ != c) return;
    if (c->open()) return watch_join(deadline, c);
    join_.reset();
    next_contact_++;
    retry_join(deadline, std::chrono::milliseconds(50));
  });
}

// The member we asked does not lead: ask the leader it names.
void Membership::on_rejoin_at(const ConnPtr& c, const msg::RejoinAt& a) {
  if (joined_set_ || !c || c != join_) {
    return ctx_.refuse(ctx_.sender(c), "RejoinAt", "this node is not rejoining through that connection");
  }
  const std::string addr = a.info.host + ":" + std::to_string(a.info.control_port);
  LOG_INFO("rank " << c->peer << " does not lead; rejoining through rank " << a.leader << " at " << addr);
  auto it = std::find(contacts_.begin(), contacts_.end(), addr);
  if (it == contacts_.end()) {
    // Bounded: a member that keeps naming new addresses runs out of them.
    if (contacts_.size() >= 2 * ctx_.world + 8) {
      return fail_join(protocol_error("rejoin: sent on to too many addresses"));
    }
    it = contacts_.insert(contacts_.end(), addr);
  }
  next_contact_ = static_cast<std::size_t>(it - contacts_.begin());
  join_.reset();
  c->close(Status(StatusCode::kCancelled, "sent on to the leader"));
  bootstrap_connect(deadline_);
}

Rank Membership::bootstrap_rank() const {
  if (joined_set_) return ctx_.leader();
  return join_ && join_->peer != msg::kNoRank ? join_->peer : 0;
}

void Membership::on_register(const ConnPtr& c, const msg::Register& r) {
  if (ctx_.me != 0 || !c || r.rank == 0 || r.rank >= ctx_.world || registrations_.count(r.rank)) {
    if (c) c->reject(invalid_argument("bad registration for rank " + std::to_string(r.rank)));
    return;
  }
  registrations_[r.rank] = {r.info, c};
  if (registrations_.size() + 1 == ctx_.world) {
    msg::Table t;
    t.peers.push_back(ctrl_.self_info());
    for (auto& [rank, reg] : registrations_) t.peers.push_back(reg.first);
    for (auto& [rank, reg] : registrations_) reg.second->send(t);
    install_table(t);
  }
}

void Membership::install_table(const msg::Table& t) {
  if (joined_set_) return;
  if (t.peers.size() != ctx_.world) {
    return fail_join(protocol_error("bootstrap table lists " + std::to_string(t.peers.size()) +
                                    " ranks, this node was started for " + std::to_string(ctx_.world)));
  }
  std::vector<bool> dead(ctx_.world, false);
  for (Rank f : t.failed) {
    if (f < ctx_.world) dead[f] = true;
  }
  for (Rank r = 0; r < ctx_.world; ++r) {
    // A dead rank's old address may not even be reachable (UCX refuses the
    // endpoint); it is added when it rejoins.
    if (r == ctx_.me || dead[r]) continue;
    Status st = ctx_.transport->add_peer(r, t.peers[r].transport_address, t.peers[r].remote_key);
    if (!st.is_ok()) return fail_join(Status(st.code(), "rank " + std::to_string(r) + ": " + st.message()));
  }
  if (ctx_.opts.rejoin) {
    // Our contact's view: who is dead, and where the barriers are.
    start_heartbeats();
    for (Rank r = 0; r < ctx_.world; ++r) {
      if (dead[r] && r != ctx_.me) ctx_.alive[r] = false;
    }
    barriers_.catch_up(t.barrier);
    join_.reset();
  }
  joined_set_ = true;
  joined_.set_value(Status::ok());
  // Messages held for the table go out now.
  ctrl_.set_table(t.peers);
}

void Membership::on_error(const ConnPtr& c, const msg::Error& e) {
  LOG_WARN("peer " << (c ? c->name() : "self") << " reported: " << e.message);
  if (!joined_set_ && c && c == join_ && ctx_.opts.rejoin) {
    // A contact that cannot take us (a restarted rank 0 that has not joined
    // itself yet) is as good as a dead one: watch_join asks the next.
    c->close(peer_failure(e.message));
    return;
  }
  if (!joined_set_ && c && c == join_) {
    fail_join(Status(e.code <= static_cast<std::uint16_t>(StatusCode::kInternal)
                         ? static_cast<StatusCode>(e.code)
                         : StatusCode::kPeerFailure,
                     "rank " + std::to_string(c->peer) + " refused to let us join: " + e.message));
  }
  if (c) c->close(peer_failure(e.message));
}

void Membership::after_join() {
  // The rejoin path already set up membership when its table arrived.
  if (ctx_.alive.empty()) start_heartbeats();
  publish_view(nullptr);
}

// -------------------------------------------------------- failure detection

void Membership::start_heartbeats() {
  ctx_.alive.assign(ctx_.world, true);
  detector_.start(std::chrono::steady_clock::now());
  heartbeat_timer_ = std::make_shared<asio::steady_timer>(ctx_.io);
  heartbeat_tick();
}

void Membership::heartbeat_tick() {
  if (ctx_.stopping) return;
  auto tick = detector_.tick(std::chrono::steady_clock::now(), ctx_.alive);
  for (Rank r : tick.suspects) {
    declare_failed(r, "no heartbeat for " + std::to_string(detector_.timeout().count()) + " ms", true);
  }
  for (Rank r : tick.heartbeat) {
    if (ctx_.alive_rank(r)) ctx_.send(r, msg::Heartbeat{ctx_.me, epoch_});
  }
  heartbeat_timer_->expires_after(detector_.interval());
  heartbeat_timer_->async_wait([this](error_code ec) {
    if (!ec) heartbeat_tick();
  });
}

void Membership::heard_from(Rank r) {
  if (detector_.started()) detector_.heard(r, std::chrono::steady_clock::now());
}

void Membership::connection_lost(Rank r, const Status& why) {
  if (ctx_.alive.empty() || r >= ctx_.alive.size() || !ctx_.alive[r]) return;
  declare_failed(r, "control connection lost: " + why.message());
}

void Membership::data_plane_lost(Rank r, const Status& why) {
  if (ctx_.alive.empty() || r >= ctx_.alive.size() || !ctx_.alive[r]) return;
  declare_failed(r, "data-plane endpoint failed: " + why.message());
}

void Membership::declare_failed(Rank f, const std::string& why, bool silent) {
  if (ctx_.stopping || f == ctx_.me || f >= ctx_.world || ctx_.alive.empty() || !ctx_.alive[f]) return;
  auto old_alive = ctx_.alive;
  ctx_.alive[f] = false;
  epoch_++;
  // A peer that closed its connections cleanly most likely finished its
  // job; a silent or reset one did not.
  if (!silent && why.find("End of file") != std::string::npos) {
    LOG_INFO("rank " << f << " left (" << why << "), membership epoch " << epoch_);
  } else {
    LOG_WARN("rank " << f << " declared failed (" << why << "), membership epoch " << epoch_);
  }
  // Sockets first: in-flight reads from the peer fail now (a stopped
  // process would otherwise hold them forever) and resume elsewhere. A
  // peer that closed a connection is gone, and what it sent on its other
  // connections before leaving is still worth reading.
  ctrl_.drop_peer(f, silent);
  ctx_.transport->fail_peer(f, peer_failure("rank " + std::to_string(f) + " failed: " + why));

  for (auto* c : ctx_.components) c->on_peer_lost(f);
  reroute(old_alive);
  for (auto* c : ctx_.components) c->on_peer_failed(f);

  MembershipEvent ev{static_cast<int>(f), false, epoch_, why};
  publish_view(&ev);
}

void Membership::reroute(const std::vector<bool>& old_alive) {
  for (auto* c : ctx_.components) c->on_shards_moved(old_alive);
}

// ------------------------------------------------------------------ rejoin

// The leader: a restarted process wants its rank back. Any other member
// sends it on to the leader, so that one rank orders the rejoins.
void Membership::on_rejoin(const ConnPtr& c, const msg::Rejoin& r) {
  if (!c) return;
  if (r.rank >= ctx_.world)
    return c->reject(invalid_argument("cannot rejoin as rank " + std::to_string(r.rank)));
  // Before this node has joined, its view and address book are empty (the
  // cluster is still forming): nothing to rejoin yet.
  if (ctx_.alive.empty() || !ctrl_.has_table()) {
    return c->reject(Status(StatusCode::kPeerFailure, "cannot rejoin as rank " + std::to_string(r.rank) +
                                                          ": the cluster has not formed yet"));
  }
  const Rank leader = ctx_.leader();
  if (leader != ctx_.me) return c->send(msg::RejoinAt{leader, ctrl_.peer(leader)});
  // A process that comes back under a live rank replaces it: the old one
  // is gone (the new one could not have bound its identity otherwise).
  if (ctx_.alive[r.rank]) {
    // The old process's connections are cut, but this one, which carries
    // the same rank in its hello, is the new process's: it must stay open
    // for the table.
    c->peer = msg::kNoRank;
    declare_failed(r.rank, "replaced by a rejoining process", true);
  }
  msg::Table t;
  t.peers = ctrl_.peers();
  t.peers[r.rank] = r.info;
  for (Rank x = 0; x < ctx_.world; ++x) {
    if (!ctx_.alive[x] && x != r.rank) t.failed.push_back(x);
  }
  t.barrier = barriers_.last_released();
  c->peer = r.rank;
  c->send(t);
  for (Rank x = 0; x < ctx_.world; ++x) {
    if (ctx_.alive[x] && x != r.rank && x != ctx_.me) ctx_.send(x, msg::PeerUpdate{r.rank, true, r.info});
  }
  on_peer_update(msg::PeerUpdate{r.rank, true, r.info});
}

void Membership::on_peer_update(const msg::PeerUpdate& u) {
  // Failures are not announced (the sender rules refuse them): each member
  // detects them itself.
  if (u.rank >= ctx_.world || u.rank == ctx_.me || !u.alive) return;
  // Rank 0 let a new process replace one we still count alive (it hung,
  // or we have not noticed its death yet): the old process fails first,
  // so what is tied to it (its copies, chains, tasks, reads from it) goes
  // through the failure phases before the new one is added.
  if (ctx_.alive[u.rank]) declare_failed(u.rank, "replaced by a rejoining process", true);
  auto old_alive = ctx_.alive;
  ctrl_.set_peer(u.rank, u.info);
  ctrl_.reset_peer(u.rank);
  Status st = ctx_.transport->add_peer(u.rank, u.info.transport_address, u.info.remote_key);
  if (!st.is_ok()) {
    LOG_ERROR("rejoin of rank " << u.rank << ": " << st.to_string());
    return;
  }
  ctx_.alive[u.rank] = true;
  detector_.heard(u.rank, std::chrono::steady_clock::now());
  epoch_++;
  LOG_WARN("rank " << u.rank << " rejoined, membership epoch " << epoch_);
  reroute(old_alive);
  MembershipEvent ev{static_cast<int>(u.rank), true, epoch_, "rejoined"};
  publish_view(&ev);
}

// ------------------------------------------------------------- user view

void Membership::publish_view(const MembershipEvent* ev) {
  std::lock_guard lock(mu_);
  failed_copy_.clear();
  for (Rank r = 0; r < ctx_.world; ++r) {
    if (!ctx_.alive_rank(r)) failed_copy_.push_back(static_cast<int>(r));
  }
  epoch_copy_ = epoch_;
  if (ev && !callbacks_list_.empty()) {
    callbacks_->post([cbs = callbacks_list_, e = *ev] {
      for (const auto& cb : cbs) cb(e);
    });
  }
}

std::vector<int> Membership::failed_ranks() const {
  std::lock_guard lock(mu_);
  return failed_copy_;
}

std::uint64_t Membership::epoch() const {
  std::lock_guard lock(mu_);
  return epoch_copy_;
}

void Membership::add_callback(std::function<void(const MembershipEvent&)> cb) {
  std::lock_guard lock(mu_);
  callbacks_list_.push_back(std::move(cb));
}

void Membership::stop() {
  if (heartbeat_timer_) heartbeat_timer_->cancel();
}

}  // namespace hoplite::node
