#include "hoplite/node.h"

#include <cstring>

#include "node/node_impl.h"

namespace hoplite {

namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

Result<std::pair<std::string, std::uint16_t>> split_host_port(const std::string& a) {
  auto colon = a.rfind(':');
  if (colon == std::string::npos) return invalid_argument("'" + a + "' is not host:port");
  unsigned long port = std::strtoul(a.c_str() + colon + 1, nullptr, 10);
  if (port > 65535) return invalid_argument("bad port in '" + a + "'");
  return std::make_pair(a.substr(0, colon), static_cast<std::uint16_t>(port));
}

// The local address that routes to `host`: connecting a UDP socket sends
// nothing, it only makes the kernel pick a source address.
std::string route_to(const std::string& host) {
  error_code ec;
  asio::io_context io;
  asio::ip::udp::resolver res(io);
  auto eps = res.resolve(host, "9", ec);
  if (ec || eps.empty()) return "127.0.0.1";
  asio::ip::udp::socket s(io);
  s.connect(*eps.begin(), ec);
  if (ec) return "127.0.0.1";
  return s.local_endpoint(ec).address().to_string();
}

}  // namespace

// ---------------------------------------------------------------- start/stop

Status Node::Impl::start() {
  HOPLITE_RETURN_IF_ERROR(opts.validate());
  me = static_cast<Rank>(opts.rank);
  world = static_cast<std::uint32_t>(opts.world_size);
  log::set_rank(opts.rank);

  auto s = store::ObjectStore::create(opts.store_capacity);
  if (!s.is_ok()) return s.status();
  store = std::move(s).value();

  auto boot = split_host_port(opts.bootstrap_address);
  if (!boot.is_ok()) return boot.status();
  host = opts.listen_host.empty() ? route_to(boot->first) : opts.listen_host;

  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return invalid_argument("listen host '" + host + "' is not an IP address");
  // Rank 0's control port is the bootstrap port everyone dials.
  tcp::endpoint ep(addr, me == 0 ? boot->second : 0);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return peer_failure("control plane: cannot listen on " + host + ":" + std::to_string(ep.port()) + ": " +
                        ec.message());
  }
  control_port = acceptor.local_endpoint().port();

  transport::tcp::TcpOptions to;
  to.rank = me;
  to.token = opts.token;
  to.listen_host = host;
  to.max_get = opts.chunk_size;
  auto t = transport::tcp::TcpTransport::create(io, to);
  if (!t.is_ok()) return t.status();
  transport = std::move(t).value();
  auto r = transport->register_memory(store->base(), store->capacity());
  if (!r.is_ok()) return r.status();
  region = std::move(r).value();
  LOG_INFO("rank " << me << "/" << world << " control " << host << ":" << control_port << " data "
                   << transport->address() << " store " << store->capacity() << " B (" << store->placement()
                   << ")");

  out.resize(world);
  auto deadline = std::chrono::steady_clock::now() + opts.bootstrap_timeout;
  work.emplace(io.get_executor());
  progress = std::thread([this] { io.run(); });
  auto joined_future = joined.get_future();
  asio::post(io, [this, deadline] {
    accept();
    if (me == 0) {
      if (world == 1) {
        msg::Table t;
        t.peers.push_back({host, control_port, transport->address(), region->remote_key()});
        install_table(t);
      }
    } else {
      bootstrap_connect(deadline);
    }
  });
  if (joined_future.wait_until(deadline) != std::future_status::ready) {
    return timeout_error("bootstrap: the cluster did not form within " +
                         std::to_string(opts.bootstrap_timeout.count()) + " ms (rank 0 at " +
                         opts.bootstrap_address + ")");
  }
  Status joined_status = joined_future.get();
  if (!joined_status.is_ok()) return joined_status;
  callbacks = std::make_unique<CallbackThread>();
  run_sync([this] {
    // The rejoin path already set up membership when its table arrived.
    if (alive.empty()) start_heartbeats();
    notify_membership();
  });
  return Status::ok();
}

void Node::Impl::stop() {
  if (!progress.joinable()) return;
  asio::post(io, [this] {
    stopping = true;
    for (auto& [id, list] : waiters) {
      for (auto& w : list) w->fulfill(Status(StatusCode::kCancelled, "node shut down"));
    }
    waiters.clear();
    for (auto& [epoch, p] : barrier_waits) p->set_value(Status(StatusCode::kCancelled, "node shut down"));
    barrier_waits.clear();
    for (auto& [req, ack] : acks) ack(Status(StatusCode::kCancelled, "node shut down"));
    acks.clear();
    for (auto& [rid, c] : reduces) {
      if (!c.finished) c.done->set_value(Status(StatusCode::kCancelled, "node shut down"));
    }
    reduces.clear();
    if (heartbeat_timer) heartbeat_timer->cancel();
    error_code ec;
    acceptor.close(ec);
    // Let queued frames (a barrier release, a last publish) reach the
    // peers before the sockets close; give up after a bound.
    std::vector<std::shared_ptr<Connection>> conns;
    for (auto& c : out) {
      if (c) conns.push_back(c);
    }
    for (auto& w : inbound) {
      if (auto c = w.lock()) conns.push_back(c);
    }
    for (auto& c : conns) c->close_when_flushed();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    auto timer = std::make_shared<asio::steady_timer>(io);
    auto finish = std::make_shared<std::function<void()>>();
    *finish = [this, conns, deadline, timer, finish] {
      bool flushed = std::none_of(conns.begin(), conns.end(), [](const auto& c) { return c->open(); });
      if (!flushed && std::chrono::steady_clock::now() < deadline) {
        timer->expires_after(std::chrono::milliseconds(2));
        timer->async_wait([finish](error_code) { (*finish)(); });
        return;
      }
      for (auto& c : conns) c->close(Status(StatusCode::kCancelled, "shutdown"));
      transport->shutdown();
      inbound_transfers.clear();
      watchers.clear();
      work.reset();
      io.stop();
      *finish = nullptr;  // break the self-reference
    };
    (*finish)();
  });
  progress.join();
  callbacks.reset();
}

// ------------------------------------------------------------ connections

void Node::Impl::accept() {
  acceptor.async_accept([this](error_code ec, tcp::socket s) {
    if (stopping) return;
    if (!ec) {
      auto c = std::make_shared<Connection>(
          std::move(s), [this](const auto& conn, msg::Message m) { on_message(conn, std::move(m)); },
          [this](const auto& conn, const Status& why) { on_closed(conn, why); });
      inbound.push_back(c);
      std::erase_if(inbound, [](const auto& w) { return w.expired(); });
      c->start();
    }
    accept();
  });
}

void Node::Impl::send_to(Rank r, const msg::Message& m) {
  if (stopping) return;
  if (r == me) {
    // Same path as a remote message, minus the socket: keeps one code path
    // for the shard and the transfer state machine.
    asio::post(io, [this, m] {
      if (!stopping) on_message(nullptr, m);
    });
    return;
  }
  if (r < world && peers.size() != world) {
    // Peers that got the table before us may already talk to us; answers
    // to them wait for our copy of the table.
    before_table.emplace_back(r, m);
    return;
  }
  if (r >= world) {
    LOG_ERROR("send to unknown rank " << r << " dropped (" << msg::type_name(m) << ")");
    return;
  }
  auto& c = out[r];
  if (!c || !c->open()) {
    error_code ec;
    auto addr = asio::ip::make_address(peers[r].host, ec);
    if (ec) {
      LOG_ERROR("rank " << r << " has a bad address " << peers[r].host);
      return;
    }
    c = std::make_shared<Connection>(
        tcp::socket(io), [this](const auto& conn, msg::Message mm) { on_message(conn, std::move(mm)); },
        [this](const auto& conn, const Status& why) { on_closed(conn, why); });
    c->peer = r;
    c->authenticated = true;  // we dialed; the peer checks our hello
    c->connect(tcp::endpoint(addr, peers[r].control_port));
    c->send(msg::Hello{1, me, msg::Channel::kControl, opts.token});
  }
  c->send(m);
}

void Node::Impl::on_closed(const std::shared_ptr<Connection>& c, const Status& why) {
  if (stopping) return;
  if (why.code() == StatusCode::kProtocol) protocol_errors++;
  // A reset or EOF from a member short-cuts the heartbeat timeout. Our own
  // closes (failure handling, rejoin) carry kCancelled or come after the
  // rank is already marked failed.
  if (c->peer < world && c->peer != me && !alive.empty() && alive[c->peer] && c->authenticated &&
      why.code() == StatusCode::kPeerFailure) {
    declare_failed(c->peer, "control connection lost: " + why.message());
  }
  if (c->peer != msg::kNoRank && c->peer < out.size() && out[c->peer] == c) {
    LOG_INFO("connection to rank " << c->peer << " closed: " << why.to_string());
    out[c->peer].reset();
  }
  if (!joined_set && me != 0 && c->peer == 0) {
    LOG_DEBUG("bootstrap connection to rank 0 closed: " << why.to_string());
  }
}

void Node::Impl::bootstrap_connect(std::chrono::steady_clock::time_point deadline) {
  auto boot = split_host_port(opts.bootstrap_address).value();
  auto sock = std::make_shared<tcp::socket>(io);
  error_code ec;
  auto addr = asio::ip::make_address(boot.first, ec);
  if (ec) {
    asio::ip::tcp::resolver res(io);
    auto eps = res.resolve(boot.first, std::to_string(boot.second), ec);
    if (ec || eps.empty()) {
      joined_set = true;
      joined.set_value(invalid_argument("bootstrap host '" + boot.first + "' does not resolve"));
      return;
    }
    addr = eps.begin()->endpoint().address();
  }
  tcp::endpoint ep(addr, boot.second);
  sock->async_connect(ep, [this, sock, deadline](error_code ec2) {
    if (stopping || joined_set) return;
    if (ec2) {
      // Rank 0 may simply not be up yet: retry until the deadline.
      if (std::chrono::steady_clock::now() > deadline) return;
      auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(50));
      timer->async_wait([this, timer, deadline](error_code) { bootstrap_connect(deadline); });
      return;
    }
    auto c = std::make_shared<Connection>(
        std::move(*sock), [this](const auto& conn, msg::Message m) { on_message(conn, std::move(m)); },
        [this](const auto& conn, const Status& why) { on_closed(conn, why); });
    c->peer = 0;
    c->authenticated = true;
    out[0] = c;
    c->start();
    c->send(msg::Hello{1, me, msg::Channel::kControl, opts.token});
    msg::PeerInfo info{host, control_port, transport->address(), region->remote_key()};
    if (opts.rejoin) {
      c->send(msg::Rejoin{me, info});
    } else {
      c->send(msg::Register{me, info});
    }
  });
}

void Node::Impl::install_table(const msg::Table& t) {
  if (joined_set) return;
  if (t.peers.size() != world) {
    joined_set = true;
    joined.set_value(protocol_error("bootstrap table lists " + std::to_string(t.peers.size()) +
                                    " ranks, this node was started for " + std::to_string(world)));
    return;
  }
  peers = t.peers;
  for (Rank r = 0; r < world; ++r) {
    if (r == me) continue;
    Status st = transport->add_peer(r, peers[r].transport_address, peers[r].remote_key);
    if (!st.is_ok()) {
      joined_set = true;
      joined.set_value(Status(st.code(), "rank " + std::to_string(r) + ": " + st.message()));
      return;
    }
  }
  if (opts.rejoin) start_heartbeats();
  joined_set = true;
  joined.set_value(Status::ok());
  auto queued = std::move(before_table);
  before_table.clear();
  for (auto& [to, m] : queued) send_to(to, m);
}

// ---------------------------------------------------------------- dispatch

// A put, create, seal or remove waiting for its shard's answer completes.
void Node::Impl::complete_ack(std::uint64_t request) {
  unacked.erase(request);
  auto it = acks.find(request);
  if (it == acks.end()) return;
  auto done = std::move(it->second);
  acks.erase(it);
  done(Status::ok());
}

void Node::Impl::on_message(const std::shared_ptr<Connection>& c, msg::Message m) {
  if (stopping) return;
  if (c && !c->authenticated) {
    const auto* h = std::get_if<msg::Hello>(&m);
    if (!h) {
      protocol_errors++;
      return c->reject(protocol_error("expected a hello, got " + std::string(msg::type_name(m))));
    }
    if (h->protocol != 1) {
      protocol_errors++;
      return c->reject(protocol_error("protocol version " + std::to_string(h->protocol) + " not supported"));
    }
    if (h->token != opts.token) {
      rejected++;
      return c->reject(peer_failure("wrong cluster token"));
    }
    if (h->rank != msg::kNoRank && h->rank >= world) {
      return c->reject(invalid_argument("rank " + std::to_string(h->rank) + " is not a member"));
    }
    c->authenticated = true;
    c->peer = h->rank;
    c->send(msg::HelloAck{me});
    return;
  }
  // Any message is a sign of life.
  if (c && c->peer < world && !last_seen.empty()) last_seen[c->peer] = std::chrono::steady_clock::now();
  std::visit(Overloaded{
                 [&](const msg::Hello&) {
                   if (c) c->reject(protocol_error("second hello on a connection"));
                 },
                 [&](const msg::HelloAck&) {},
                 [&](const msg::Error& e) {
                   LOG_WARN("peer " << (c ? c->name() : "self") << " reported: " << e.message);
                   if (!joined_set && c && c->peer == 0) {
                     joined_set = true;
                     joined.set_value(Status(e.code <= static_cast<std::uint16_t>(StatusCode::kInternal)
                                                 ? static_cast<StatusCode>(e.code)
                                                 : StatusCode::kPeerFailure,
                                             "rank 0 refused to let us join: " + e.message));
                   }
                   if (c) c->close(peer_failure(e.message));
                 },
                 [&](const msg::Register& r) {
                   if (me != 0 || !c || r.rank == 0 || r.rank >= world || registrations.count(r.rank)) {
                     if (c)
                       c->reject(invalid_argument("bad registration for rank " + std::to_string(r.rank)));
                     return;
                   }
                   registrations[r.rank] = {r.info, c};
                   if (registrations.size() + 1 == world) {
                     msg::Table t;
                     t.peers.push_back({host, control_port, transport->address(), region->remote_key()});
                     for (auto& [rank, reg] : registrations) t.peers.push_back(reg.first);
                     for (auto& [rank, reg] : registrations) reg.second->send(t);
                     install_table(t);
                   }
                 },
                 [&](const msg::Table& t) { install_table(t); },
                 [&](const msg::Barrier& b) {
                   if (me != 0 || b.rank >= world) return;
                   if (b.epoch <= last_barrier_released) return;  // late: that barrier is over
                   LOG_DEBUG("barrier " << b.epoch << " reached by rank " << b.rank);
                   auto& arrived = barrier_arrivals[b.epoch];
                   arrived.insert(b.rank);
                   if (barrier_complete(arrived)) release_barrier(b.epoch);
                 },
                 [&](const msg::BarrierDone& d) {
                   LOG_DEBUG("barrier " << d.epoch << " released");
                   // A rejoiner is told the last released barrier so that its
                   // next one carries the survivors' number.
                   std::uint64_t cur = barrier_epoch.load();
                   while (barrier_waits.empty() && cur < d.epoch &&
                          !barrier_epoch.compare_exchange_weak(cur, d.epoch)) {
                   }
                   auto it = barrier_waits.find(d.epoch);
                   if (it != barrier_waits.end()) {
                     it->second->set_value(Status::ok());
                     barrier_waits.erase(it);
                   }
                 },
                 [&](const msg::Publish& p) {
                   for (auto& r : shard.publish(p)) send_to(r.to, r.reply);
                   for (auto& a : shard.take_located()) send_to(a.to, a.reply);
                   if (p.request) send_to(p.rank, msg::PublishAck{p.id, p.request});
                 },
                 [&](const msg::PublishAck& a) { complete_ack(a.request); },
                 [&](const msg::Unpublish& u) { shard.unpublish(u.id, u.rank); },
                 [&](const msg::Lookup& l) {
                   if (auto r = shard.lookup(l)) send_to(r->to, r->reply);
                 },
                 [&](const msg::LookupReply& r) { on_lookup_reply(r); },
                 [&](const msg::Remove& r) {
                   // A composite's parts go with it.
                   for (const auto& part : shard.parts(r.id))
                     send_to(shard_of(part.id), msg::Remove{part.id, 0, me});
                   for (Rank holder : shard.remove(r.id)) send_to(holder, msg::Delete{r.id});
                   send_to(r.requester, msg::RemoveAck{r.id, r.request});
                 },
                 [&](const msg::RemoveAck& a) { complete_ack(a.request); },
                 [&](const msg::Delete& d) { delete_local(d.id); },
                 [&](const msg::Watch& w) { on_watch(w); },
                 [&](const msg::Progress& p) { on_progress(p); },
                 [&](const msg::Unwatch& u) {
                   auto it = watchers.find(u.id);
                   if (it == watchers.end()) return;
                   it->second.erase({u.requester, u.stream});
                   if (it->second.empty()) watchers.erase(it);
                 },
                 [&](const msg::Locate& l) {
                   if (auto a = shard.locate(l)) send_to(a->to, a->reply);
                 },
                 [&](const msg::LocateReply& r) { on_locate_reply(r); },
                 [&](const msg::ReduceTask& t) { on_reduce_task(t); },
                 [&](const msg::ReduceDone& d) { on_reduce_done(d); },
                 [&](const msg::ReduceCancel& m) { on_reduce_cancel(m); },
                 [&](const msg::ReduceRetarget& m) { on_reduce_retarget(m); },
                 [&](const msg::ReduceLost& m) {
                   if (m.failed != me && alive_rank(m.failed))
                     declare_failed(m.failed, "a reduce task lost it (task " + std::to_string(m.task) + ")");
                 },
                 [&](const msg::Heartbeat&) {},
                 [&](const msg::Rejoin& r) { on_rejoin(c, r); },
                 [&](const msg::PeerUpdate& u) {
                   if (alive.empty()) {
                     // A rejoiner's table is installed first; updates follow it.
                     return;
                   }
                   on_peer_update(u);
                 },
                 [&](const msg::PublishComposite& p) {
                   for (auto& r : shard.publish_composite(p)) send_to(r.to, r.reply);
                 },
             },
             m);
}

// --------------------------------------------------------------- get path

void Node::Impl::start_get(const std::shared_ptr<detail::GetState>& st, GetOptions o) {
  if (stopping) return st->fulfill(Status(StatusCode::kCancelled, "node shut down"));
  auto e = store->find(st->id);
  if (e && e->sealed()) return st->fulfill(view_of(e));
  waiters[st->id].push_back(st);
  if (o.must_exist) must_exist_ids.insert(st->id);
  if (e || lookups_pending.count(st->id)) return;  // already on its way here
  start_lookup(st->id, o.must_exist);
}

void Node::Impl::start_lookup(const ObjectID& id, bool must_exist) {
  lookups_pending.insert(id);
  send_to(shard_of(id), msg::Lookup{id, 0, me, must_exist, false});
}

void Node::Impl::on_lookup_reply(const msg::LookupReply& r) {
  lookups_pending.erase(r.id);
  handle_lookup_reply(r);
  // Watches that arrived while we waited: served now if we have the object,
  // told "not here" otherwise.
  replay_parked(r.id);
}

void Node::Impl::handle_lookup_reply(const msg::LookupReply& r) {
  if (auto it = inbound_transfers.find(r.id); it != inbound_transfers.end() && it->second.resuming) {
    Inbound& in = it->second;
    if (r.result != msg::LookupResult::kSender || r.sender == me || !alive_rank(r.sender) ||
        r.size != in.size) {
      // A shard that has not yet noticed the failure can still name the
      // dead sender (or its chain around it): ask again shortly, once it
      // has forgotten the rank. A shard that keeps naming it sees the rank
      // alive where we do not; start over from a fresh lookup instead.
      if (++in.resumes > static_cast<int>(2 * world)) {
        return abort_inbound(r.id, peer_failure("the directory keeps naming a dead sender"), true);
      }
      lookups_pending.insert(r.id);
      auto timer = std::make_shared<asio::steady_timer>(io, opts.failure_timeout / 8);
      timer->async_wait([this, timer, id = r.id](error_code) {
        auto it2 = inbound_transfers.find(id);
        if (!stopping && it2 != inbound_transfers.end() && it2->second.resuming)
          send_to(shard_of(id), msg::Lookup{id, 0, me, false, true});
      });
      return;
    }
    in.resuming = false;
    in.sender = r.sender;
    source_of[r.id] = static_cast<int>(r.sender);
    watch_inbound(r.id);
    return;
  }
  if (store->find(r.id)) {
    // A local put or an earlier fetch got here first; the shard already
    // counts us as a holder once that copy is published.
    return;
  }
  switch (r.result) {
    case msg::LookupResult::kNotFound:
      fulfill_waiters(r.id,
                      not_found("object " + r.id.short_hex() + " is not in the directory (shard on rank " +
                                std::to_string(shard_of(r.id)) + ")"));
      return;
    case msg::LookupResult::kInline: {
      auto e = store->create_object(r.id, r.size);
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
      send_to(shard_of(r.id), p);
      return fulfill_waiters(r.id, view_of(e.value()));
    }
    case msg::LookupResult::kComposite: return start_composite(r);
    case msg::LookupResult::kSender: {
      auto e = store->create_object(r.id, r.size);
      if (!e.is_ok()) {
        send_to(shard_of(r.id), msg::Unpublish{r.id, me});
        return fulfill_waiters(
            r.id, Status(e.status().code(), "get of " + r.id.short_hex() + ": " + e.status().message()));
      }
      if (r.sender == me || r.sender >= world) {
        send_to(shard_of(r.id), msg::Unpublish{r.id, me});
        store->erase(r.id);
        return fulfill_waiters(
            r.id, protocol_error("directory named an impossible sender " + std::to_string(r.sender)));
      }
      Inbound in;
      in.entry = e.value();
      in.dest = in.entry->data;
      in.size = r.size;
      in.sender = r.sender;
      in.gen = next_gen++;
      inbound_transfers[r.id] = std::move(in);
      source_of[r.id] = static_cast<int>(r.sender);
      if (r.size == 0) return finish_inbound(r.id);
      watch_inbound(r.id);
      return;
    }
  }
}

void Node::Impl::on_watch(const msg::Watch& w) {
  if (w.requester >= world) return;
  auto e = store->find(w.id);
  if (!e && lookups_pending.count(w.id)) {
    // The directory made us this reader's sender before our own lookup
    // reply arrived: the copy exists in a moment, so hold the watch.
    parked_watches[w.id].emplace_back(w.requester, w.stream);
    return;
  }
  msg::Progress p;
  p.id = w.id;
  p.stream = w.stream;
  if (!e) {
    // The directory thinks we hold it: correct that, or it keeps sending
    // readers here.
    send_to(shard_of(w.id), msg::Unpublish{w.id, me});
  }
  if (e) {
    auto& wt = watchers[w.id][{w.requester, w.stream}];
    wt.pin = e;
    wt.sent = e->ready();
    p.present = true;
    p.offset = e->offset;
    p.size = e->size;
    p.ready = wt.sent;
  }
  send_to(w.requester, p);
}

void Node::Impl::replay_parked(const ObjectID& id) {
  auto it = parked_watches.find(id);
  if (it == parked_watches.end()) return;
  auto ranks = std::move(it->second);
  parked_watches.erase(it);
  for (auto [r, stream] : ranks) on_watch(msg::Watch{id, r, stream});
}

void Node::Impl::watch_inbound(const ObjectID& id) {
  Inbound& in = inbound_transfers.at(id);
  if (in.stream) stream_to_inbound.erase(in.stream);
  in.stream = next_stream++;
  stream_to_inbound[in.stream] = id;
  send_to(in.sender, msg::Watch{id, me, in.stream});
}

// Tells the sender we are done reading (it unpins) and forgets the route.
void Node::Impl::end_stream(Inbound& in) {
  auto it = stream_to_inbound.find(in.stream);
  if (it != stream_to_inbound.end()) {
    send_to(in.sender, msg::Unwatch{it->second, me, in.stream});
    stream_to_inbound.erase(it);
  }
  in.stream = 0;
}

void Node::Impl::release_barrier(std::uint64_t epoch) {
  barrier_arrivals.erase(epoch);
  last_barrier_released = std::max(last_barrier_released, epoch);
  for (Rank r = 0; r < world; ++r) {
    if (alive_rank(r)) send_to(r, msg::BarrierDone{epoch});
  }
}

void Node::Impl::drop_watchers(const ObjectID& id, bool withdrawn) {
  auto it = watchers.find(id);
  if (it == watchers.end()) return;
  auto list = std::move(it->second);
  watchers.erase(it);
  // They re-plan through the directory and find another copy.
  const std::uint64_t size = withdrawn ? msg::kWithdrawn : 0;
  for (auto& [key, w] : list) send_to(key.first, msg::Progress{id, false, 0, size, 0, key.second});
}

void Node::Impl::notify_watchers(const ObjectID& id) {
  auto it = watchers.find(id);
  if (it == watchers.end()) return;
  for (auto& [key, w] : it->second) {
    std::uint64_t ready = w.pin->ready();
    if (ready <= w.sent) continue;
    w.sent = ready;
    send_to(key.first, msg::Progress{id, true, w.pin->offset, w.pin->size, ready, key.second});
  }
}

void Node::Impl::on_progress(const msg::Progress& p) {
  auto sit = stream_to_inbound.find(p.stream);
  if (sit == stream_to_inbound.end() || sit->second != p.id) return on_reduce_progress(p);
  auto it = inbound_transfers.find(p.id);
  if (it == inbound_transfers.end()) return;
  Inbound& in = it->second;
  if (!in.composite.is_nil() && !p.present && p.size != msg::kWithdrawn && ++in.watch_retries <= 250) {
    // A part's holder may not have started producing it yet, or our ring
    // predecessor has not started reading it: ask again, and after a while
    // go to the producer itself.
    if (in.watch_retries == 25 && in.sender != in.producer) {
      in.sender = in.producer;
      watch_inbound(p.id);
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(20));
    timer->async_wait([this, timer, id = p.id, gen = in.gen](error_code) {
      auto it2 = inbound_transfers.find(id);
      if (!stopping && it2 != inbound_transfers.end() && it2->second.gen == gen) {
        send_to(it2->second.sender, msg::Watch{id, me, it2->second.stream});
      }
    });
    return;
  }
  if (!p.present || p.size != in.size) {
    return abort_inbound(
        p.id, peer_failure("rank " + std::to_string(in.sender) + " no longer holds " + p.id.short_hex()),
        true);
  }
  in.remote_offset = p.offset;
  in.sender_ready = std::max(in.sender_ready, p.ready);
  pump(p.id);
}

void Node::Impl::pump(const ObjectID& id) {
  Inbound& in = inbound_transfers.at(id);
  auto* ep = transport->endpoint(in.sender);
  if (!ep) return abort_inbound(id, peer_failure("no data path to rank " + std::to_string(in.sender)), false);
  while (in.in_flight < opts.pipeline_depth && in.next < in.sender_ready) {
    std::uint64_t off = in.next;
    std::uint64_t len = std::min<std::uint64_t>(opts.chunk_size, in.sender_ready - off);
    in.next += len;
    in.in_flight++;
    ep->get(
        in.dest + off, len, in.remote_offset + off,
        [this, id, gen = in.gen, off, len, pin = in.entry](Status st) { on_chunk(id, gen, off, len, st); });
  }
}

void Node::Impl::on_chunk(const ObjectID& id, std::uint64_t gen, std::uint64_t offset, std::uint64_t len,
                          Status st) {
  if (stopping) return;
  auto it = inbound_transfers.find(id);
  if (it == inbound_transfers.end() || it->second.gen != gen) return;
  Inbound& in = it->second;
  in.in_flight--;
  if (!st.is_ok()) {
    Status why(st.code(),
               "get of " + id.short_hex() + " from rank " + std::to_string(in.sender) + ": " + st.message());
    // A lost sender is not the end of the transfer: resume from another
    // copy, a bounded number of times.
    if ((st.code() == StatusCode::kPeerFailure || st.code() == StatusCode::kCancelled) &&
        ++in.resumes <= static_cast<int>(2 * world) && !stopping) {
      return resume_inbound(id, why);
    }
    return abort_inbound(id, why, false);
  }
  bytes_received += len;
  in.done[offset] = len;
  while (!in.done.empty() && in.done.begin()->first == in.contiguous) {
    in.contiguous += in.done.begin()->second;
    in.done.erase(in.done.begin());
  }
  if (in.composite.is_nil() || in.serves) {
    in.entry->advance(in.contiguous);
    notify_watchers(id);  // a partial copy serves what it has: chains stream
  }
  if (in.contiguous == in.size) return finish_inbound(id);
  pump(id);
}

void Node::Impl::finish_inbound(const ObjectID& id) {
  auto node = inbound_transfers.extract(id);
  Inbound& in = node.mapped();
  end_stream(in);
  if (!in.composite.is_nil()) {
    if (in.serves) {
      in.entry->seal();
      notify_watchers(id);
    }
    return part_done(in.composite, id);
  }
  in.entry->seal();
  send_to(shard_of(id), publish_msg(*in.entry, msg::LocationState::kComplete));
  notify_watchers(id);
  fulfill_waiters(id, view_of(in.entry));
}

void Node::Impl::abort_inbound(const ObjectID& id, const Status& why, bool retry) {
  auto it = inbound_transfers.find(id);
  if (it == inbound_transfers.end()) return;
  end_stream(it->second);
  if (!it->second.composite.is_nil()) return fail_composite(it->second.composite, why);
  inbound_transfers.erase(it);
  store->erase(id);
  source_of.erase(id);
  send_to(shard_of(id), msg::Unpublish{id, me});
  drop_watchers(id);
  LOG_INFO("transfer of " << id.short_hex() << " aborted: " << why.to_string());
  if (retry && waiters.count(id)) {
    start_lookup(id, must_exist_ids.count(id) > 0);
  } else {
    fulfill_waiters(id, why);
  }
}

// A composite object (a striped allreduce's result) is fetched by reading
// every part into its place in one extent; each node receives each part
// once, which is what gives the striped allreduce its ring-like 2(N-1)/N
// cost (who reads from whom: below).
void Node::Impl::start_composite(const msg::LookupReply& r) {
  auto e = store->create_object(r.id, r.size);
  if (!e.is_ok())
    return fulfill_waiters(
        r.id, Status(e.status().code(), "get of " + r.id.short_hex() + ": " + e.status().message()));
  for (const auto& part : r.parts) {
    if (inbound_transfers.count(part.id) || part.holder >= world) {
      store->erase(r.id);
      return fulfill_waiters(
          r.id, protocol_error("composite " + r.id.short_hex() + " has a bad part " + part.id.short_hex()));
    }
  }
  // Holders read every part from their predecessor in the ring of holders
  // (part j flows h_j -> h_j+1 -> ...), so each node receives from one peer
  // and sends to one, as in a ring allgather: no incast on anyone's link.
  // Other readers read from the producers.
  std::optional<std::size_t> my_index;
  for (std::size_t j = 0; j < r.parts.size(); ++j) {
    if (r.parts[j].holder == me) my_index = j;
  }
  const std::size_t m = r.parts.size();
  CompositeGet& cg = composite_gets[r.id];
  cg.entry = e.value();
  cg.remaining = m;
  for (const auto& part : r.parts) {
    cg.parts.push_back(part.id);
    Inbound in;
    in.dest = cg.entry->data + part.offset;
    in.size = part.size;
    in.producer = part.holder;
    in.sender = part.holder;
    in.gen = next_gen++;
    in.composite = r.id;
    if (part.holder == me) {
      in.entry = cg.entry;  // our own stripe: a local copy, nothing to serve
    } else {
      auto view = store->create_view(part.id, cg.entry, part.offset, part.size);
      if (view.is_ok()) {
        in.entry = view.value();
        in.serves = true;
        cg.views.push_back(part.id);
        if (my_index) in.sender = r.parts[(*my_index + m - 1) % m].holder;
      } else {
        in.entry = cg.entry;  // the id is taken locally: read, don't serve
      }
    }
    inbound_transfers[part.id] = std::move(in);
  }
  // Watches go out after every part is registered: a zero-size part
  // completes at once and may complete the whole object.
  for (const auto& part : r.parts) {
    if (part.size == 0) {
      finish_inbound(part.id);
    } else {
      watch_inbound(part.id);
    }
  }
}

void Node::Impl::part_done(const ObjectID& composite, const ObjectID&) {
  auto it = composite_gets.find(composite);
  if (it == composite_gets.end()) return;
  if (--it->second.remaining > 0) return;
  auto entry = it->second.entry;
  if (!it->second.views.empty()) composite_views[composite] = std::move(it->second.views);
  composite_gets.erase(it);
  entry->seal();
  send_to(shard_of(composite), publish_msg(*entry, msg::LocationState::kComplete));
  notify_watchers(composite);
  fulfill_waiters(composite, view_of(entry));
}

void Node::Impl::fail_composite(const ObjectID& composite, const Status& why) {
  auto it = composite_gets.find(composite);
  if (it == composite_gets.end()) return;
  for (const auto& part : it->second.parts) {
    auto pit = inbound_transfers.find(part);
    if (pit != inbound_transfers.end() && pit->second.composite == composite) {
      end_stream(pit->second);
      inbound_transfers.erase(pit);
    }
  }
  for (const auto& v : it->second.views) {
    store->erase(v);
    drop_watchers(v, true);
  }
  // Only our own half-assembled copy: a restarted reduce may already have
  // put a new object under this id here.
  if (store->find(composite) == it->second.entry) store->erase(composite);
  composite_gets.erase(it);
  LOG_INFO("get of composite " << composite.short_hex() << " failed: " << why.to_string());
  // A producer died: the allreduce restarts and republishes the target, so
  // look it up again (a few times) instead of failing the readers.
  if (why.code() == StatusCode::kPeerFailure && ++composite_retries[composite] <= 3 &&
      waiters.count(composite)) {
    auto timer = std::make_shared<asio::steady_timer>(io, opts.failure_timeout);
    timer->async_wait([this, timer, composite](error_code) {
      if (!stopping && waiters.count(composite) && !lookups_pending.count(composite))
        start_lookup(composite, false);
    });
    return;
  }
  composite_retries.erase(composite);
  fulfill_waiters(composite, why);
}

void Node::Impl::on_local_sealed(const std::shared_ptr<store::ObjectEntry>& e) {
  lookups_pending.erase(e->id);
  replay_parked(e->id);
  notify_watchers(e->id);
  fulfill_waiters(e->id, view_of(e));
}

void Node::Impl::fulfill_waiters(const ObjectID& id, const Result<ObjectView>& r) {
  must_exist_ids.erase(id);
  auto it = waiters.find(id);
  if (it == waiters.end()) return;
  auto list = std::move(it->second);
  waiters.erase(it);
  for (auto& w : list) w->fulfill(r);
}

void Node::Impl::delete_local(const ObjectID& id) {
  bool receiving = inbound_transfers.count(id) > 0;
  if (receiving) {
    auto node = inbound_transfers.extract(id);
    end_stream(node.mapped());
  }
  store->erase(id);
  source_of.erase(id);
  drop_watchers(id);
  if (auto v = composite_views.find(id); v != composite_views.end()) {
    for (const auto& part : v->second) {
      store->erase(part);
      drop_watchers(part);
    }
    composite_views.erase(v);
  }
  // Local gets still waiting wait for a new put.
  if (receiving && waiters.count(id)) start_lookup(id, must_exist_ids.count(id) > 0);
}

// ------------------------------------------------------------- public API

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Node::~Node() = default;

Result<std::unique_ptr<Node>> Node::create(const NodeOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  Status st = impl->start();
  if (!st.is_ok()) {
    LOG_ERROR("node start failed: " << st.to_string());
    return st;
  }
  std::unique_ptr<Node> node(new Node(std::move(impl)));
  st = node->probe_links();
  if (!st.is_ok()) {
    // Not fatal: the planner falls back to a conservative model, 1 Gbit/s
    // and 50 us, and says so.
    LOG_WARN("link probe failed (" << st.to_string() << "); assuming 125 MB/s and 50 us");
    node->impl_->link_bandwidth =
        node->impl_->opts.link_bandwidth > 0 ? node->impl_->opts.link_bandwidth : 1.25e8;
    node->impl_->link_latency = node->impl_->opts.link_latency > 0 ? node->impl_->opts.link_latency : 50e-6;
  }
  return node;
}

Status Node::probe_links() {
  Impl& m = *impl_;
  m.link_bandwidth = m.opts.link_bandwidth;
  m.link_latency = m.opts.link_latency;
  // A rejoiner cannot run the probe: its barriers are not the survivors'.
  if (m.opts.rejoin) {
    if (m.link_bandwidth <= 0) m.link_bandwidth = 1.25e8;
    if (m.link_latency <= 0) m.link_latency = 50e-6;
    return {};
  }
  if (m.world == 1 || (m.link_bandwidth > 0 && m.link_latency > 0)) {
    if (m.link_bandwidth <= 0) m.link_bandwidth = 1e10;  // one node: memory speed, order of magnitude
    if (m.link_latency <= 0) m.link_latency = 1e-6;
    return {};
  }
  using Clock = std::chrono::steady_clock;
  const Rank next = (m.me + 1) % m.world;
  // Latency: must_exist lookups answered by the next rank's shard, best of 5.
  double rtt = 1.0;
  for (int i = 0; i < 5; ++i) {
    ObjectID id = ObjectID::random();
    // By hash, not shard_of(): if `next` already failed no id maps to it
    // any more, and the lookup then goes to whoever took its shard.
    while (id.hash() % m.world != next) id = ObjectID::random();
    auto t0 = Clock::now();
    auto r = get(id, GetOptions{true}).wait(m.opts.bootstrap_timeout);
    if (r.is_ok() || r.status().code() != StatusCode::kNotFound) {
      return internal_error("latency probe: unexpected answer " + r.status().to_string());
    }
    rtt = std::min(rtt, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  // Bandwidth: every rank pulls its neighbour's probe at once, so each link
  // carries one stream each way, like a chain does.
  if (!m.run_sync([&] { return m.alive.empty() || m.alive[next]; })) {
    return peer_failure("bandwidth probe: rank " + std::to_string(next) + " already failed");
  }
  constexpr std::uint64_t kProbe = 2u << 20;
  auto probe = [](Rank r) { return ObjectID::from_name("__hoplite/probe/" + std::to_string(r)); };
  std::vector<std::byte> bytes(kProbe, std::byte{0x5a});
  HOPLITE_RETURN_IF_ERROR(put(probe(m.me), bytes));
  HOPLITE_RETURN_IF_ERROR(barrier(m.opts.bootstrap_timeout));
  auto t0 = Clock::now();
  auto v = get(probe(next)).wait(m.opts.bootstrap_timeout);
  if (!v.is_ok()) return v.status();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  v = Status(StatusCode::kCancelled, "released");
  HOPLITE_RETURN_IF_ERROR(barrier(m.opts.bootstrap_timeout));
  HOPLITE_RETURN_IF_ERROR(remove(probe(m.me)));
  HOPLITE_RETURN_IF_ERROR(remove(probe(next), RemoveScope::kLocal));
  if (m.link_latency <= 0) m.link_latency = rtt / 2;
  if (m.link_bandwidth <= 0) m.link_bandwidth = static_cast<double>(kProbe) / std::max(secs - rtt, 1e-6);
  LOG_INFO("link model: latency " << m.link_latency * 1e6 << " us, bandwidth " << m.link_bandwidth / 1e6
                                  << " MB/s");
  return {};
}

int Node::rank() const {
  return static_cast<int>(impl_->me);
}
int Node::world_size() const {
  return static_cast<int>(impl_->world);
}
const NodeOptions& Node::options() const {
  return impl_->opts;
}

Status Node::put(const ObjectID& id, std::span<const std::byte> bytes) {
  auto e = impl_->store->create_object(id, bytes.size());
  if (!e.is_ok()) return e.status();
  auto entry = std::move(e).value();
  if (!bytes.empty()) std::memcpy(entry->data, bytes.data(), bytes.size());
  entry->seal();
  Status st =
      impl_->request(impl_->publish_msg(*entry, msg::LocationState::kComplete), "put of " + id.short_hex());
  asio::post(impl_->io, [impl = impl_.get(), entry] { impl->on_local_sealed(entry); });
  return st;
}

Result<ObjectWriter> Node::create(const ObjectID& id, std::uint64_t size) {
  auto e = impl_->store->create_object(id, size);
  if (!e.is_ok()) return e.status();
  auto state = std::make_shared<detail::WriterState>();
  state->node = impl_.get();
  state->entry = std::move(e).value();
  Status st = impl_->request(impl_->publish_msg(*state->entry, msg::LocationState::kPartial),
                             "create of " + id.short_hex());
  if (!st.is_ok()) {
    impl_->store->erase(id);
    return st;
  }
  return ObjectWriter(std::move(state));
}

ObjectFuture Node::get(const ObjectID& id, GetOptions opts) {
  auto st = std::make_shared<detail::GetState>();
  st->id = id;
  // Fast path: a complete local copy needs no hop through the progress thread.
  if (auto e = impl_->store->find(id); e && e->sealed()) {
    st->fulfill(ObjectView(id, e->data, e->size, e, -1));
    return ObjectFuture(st);
  }
  asio::post(impl_->io, [impl = impl_.get(), st, opts] { impl->start_get(st, opts); });
  return ObjectFuture(st);
}

Status Node::remove(const ObjectID& id, RemoveScope scope) {
  if (scope == RemoveScope::kLocal) {
    impl_->run_sync([&] {
      impl_->delete_local(id);
      impl_->send_to(impl_->shard_of(id), msg::Unpublish{id, impl_->me});
    });
    return {};
  }
  impl_->run_sync([&] { impl_->delete_local(id); });
  return impl_->request(msg::Remove{id, 0, impl_->me}, "remove of " + id.short_hex());
}

bool Node::contains(const ObjectID& id) const {
  auto e = impl_->store->find(id);
  return e && e->sealed();
}

std::uint64_t Node::local_progress(const ObjectID& id) const {
  auto e = impl_->store->find(id);
  return e ? e->ready() : 0;
}

std::future<Result<ReduceResult>> Node::reduce_async(const ReduceOptions& opts) {
  auto p = std::make_shared<std::promise<Result<ReduceResult>>>();
  auto f = p->get_future();
  if (opts.inputs.empty()) {
    p->set_value(invalid_argument("reduce needs at least one input"));
    return f;
  }
  if (opts.k > opts.inputs.size()) {
    p->set_value(invalid_argument("reduce of the first " + std::to_string(opts.k) + " of only " +
                                  std::to_string(opts.inputs.size()) + " inputs"));
    return f;
  }
  std::unordered_set<ObjectID> seen(opts.inputs.begin(), opts.inputs.end());
  if (seen.size() != opts.inputs.size() || seen.count(opts.target)) {
    p->set_value(invalid_argument("reduce inputs must be distinct and differ from the target"));
    return f;
  }
  asio::post(impl_->io, [impl = impl_.get(), opts, p] {
    if (impl->stopping) return p->set_value(Status(StatusCode::kCancelled, "node shut down"));
    impl->start_reduce(opts, p);
  });
  return f;
}

Result<ReduceResult> Node::reduce(const ReduceOptions& opts) {
  auto f = reduce_async(opts);
  if (f.wait_for(opts.timeout) != std::future_status::ready) {
    return timeout_error("reduce into " + opts.target.short_hex() + " not complete after " +
                         std::to_string(opts.timeout.count()) + " ms");
  }
  return f.get();
}

Status Node::barrier(std::chrono::milliseconds timeout) {
  std::lock_guard lock(impl_->barrier_mu);
  std::uint64_t epoch = ++impl_->barrier_epoch;
  auto p = std::make_shared<std::promise<Status>>();
  auto f = p->get_future();
  asio::post(impl_->io, [impl = impl_.get(), epoch, p] {
    if (impl->stopping) return p->set_value(Status(StatusCode::kCancelled, "node shut down"));
    impl->barrier_waits[epoch] = p;
    impl->send_to(0, msg::Barrier{epoch, impl->me});
  });
  if (f.wait_for(timeout) != std::future_status::ready) {
    return timeout_error("barrier " + std::to_string(epoch) + " not reached by every rank within " +
                         std::to_string(timeout.count()) + " ms");
  }
  return f.get();
}

std::vector<int> Node::failed_ranks() const {
  std::lock_guard lock(impl_->membership_mu);
  return impl_->failed_copy;
}

std::uint64_t Node::membership_epoch() const {
  std::lock_guard lock(impl_->membership_mu);
  return impl_->epoch_copy;
}

void Node::on_membership_change(std::function<void(const MembershipEvent&)> callback) {
  std::lock_guard lock(impl_->membership_mu);
  impl_->membership_callback = std::move(callback);
}

LinkModel Node::link_model() const {
  return {impl_->link_bandwidth, impl_->link_latency};
}

NodeStats Node::stats() const {
  NodeStats s;
  s.objects = impl_->store->count();
  s.store_used = impl_->store->used();
  s.store_capacity = impl_->store->capacity();
  s.bytes_received = impl_->bytes_received.load();
  auto ts = impl_->run_sync([&] { return impl_->transport->stats(); });
  s.bytes_served = ts.bytes_served;
  s.rejected_connections = impl_->rejected.load() + ts.rejected_connections;
  s.protocol_errors = impl_->protocol_errors.load();
  s.reduce_tasks = impl_->reduce_tasks_started.load();
  return s;
}

std::string Node::control_address(int rank) const {
  const auto& p = impl_->peers.at(static_cast<std::size_t>(rank));
  return p.host + ":" + std::to_string(p.control_port);
}

std::string Node::data_address(int rank) const {
  return impl_->peers.at(static_cast<std::size_t>(rank)).transport_address;
}

// ------------------------------------------------------------ ObjectWriter

ObjectWriter& ObjectWriter::operator=(ObjectWriter&& o) noexcept {
  if (this != &o) {
    abort();
    s_ = std::move(o.s_);
  }
  return *this;
}

ObjectWriter::~ObjectWriter() {
  abort();
}

const ObjectID& ObjectWriter::id() const {
  return s_->entry->id;
}

std::span<std::byte> ObjectWriter::data() const {
  if (!s_ || !s_->entry) return {};
  return {s_->entry->data, s_->entry->size};
}

Status ObjectWriter::publish(std::uint64_t bytes) {
  if (!s_ || s_->done) return invalid_argument("publish on an empty writer");
  if (bytes > s_->entry->size) {
    return invalid_argument("publish of " + std::to_string(bytes) + " bytes beyond the object size " +
                            std::to_string(s_->entry->size));
  }
  s_->entry->advance(bytes);
  asio::post(s_->node->io, [node = s_->node, id = s_->entry->id] { node->notify_watchers(id); });
  return {};
}

Status ObjectWriter::seal() {
  if (!s_ || s_->done) return invalid_argument("seal on an empty writer");
  auto entry = s_->entry;
  entry->seal();
  s_->done = true;
  Node::Impl* node = s_->node;
  s_.reset();
  Status st = node->request(node->publish_msg(*entry, msg::LocationState::kComplete),
                            "seal of " + entry->id.short_hex());
  asio::post(node->io, [node, entry] { node->on_local_sealed(entry); });
  return st;
}

void ObjectWriter::abort() {
  if (!s_ || s_->done) return;
  s_->done = true;
  Node::Impl* node = s_->node;
  ObjectID id = s_->entry->id;
  s_.reset();
  asio::post(node->io, [node, id] {
    node->delete_local(id);
    node->send_to(node->shard_of(id), msg::Unpublish{id, node->me});
    node->fulfill_waiters(id, Status(StatusCode::kCancelled, "writer of " + id.short_hex() + " aborted"));
  });
}

}  // namespace hoplite
