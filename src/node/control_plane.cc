#include "node/control_plane.h"

#include "control/sender_rules.h"

namespace hoplite::node {

using asio::ip::tcp;
using control::Connection;

ControlPlane::ControlPlane(NodeContext& ctx)
    : ctx_(ctx), acceptor_(ctx.io), accept_retry_(ctx.io), key_(ctx.opts.token) {
  out_.resize(ctx_.world);
  ctx_.messenger = this;
  // After the handshake these are refused by the sender rules.
  ctx_.dispatch.on<msg::HelloAck>([](const ConnPtr&, const msg::HelloAck&) {});
}

Status ControlPlane::listen(const std::string& host, std::uint16_t port) {
  host_ = host;
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return invalid_argument("listen host '" + host + "' is not an IP address");
  tcp::endpoint ep(addr, port);
  if (acceptor_.is_open()) acceptor_.close(ec);  // a failed earlier attempt
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return peer_failure("control plane: cannot listen on " + host + ":" + std::to_string(ep.port()) + ": " +
                        ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  return {};
}

msg::PeerInfo ControlPlane::self_info() const {
  return {host_, port_, ctx_.transport->address(), ctx_.region->remote_key()};
}

void ControlPlane::set_table(std::vector<msg::PeerInfo> peers) {
  peers_ = std::move(peers);
  auto queued = std::move(before_table_);
  before_table_.clear();
  for (auto& [to, m] : queued) send_to(to, m);
}

ConnPtr ControlPlane::make_connection(tcp::socket s) {
  return std::make_shared<Connection>(
      std::move(s), [this](const auto& conn, msg::Message m) { on_message(conn, std::move(m)); },
      [this](const auto& conn, const Status& why) { on_closed(conn, why); });
}

void ControlPlane::start_accepting() {
  accept();
}

void ControlPlane::accept() {
  acceptor_.async_accept([this](error_code ec, tcp::socket s) {
    if (ctx_.stopping) return;
    if (ec) {
      // EMFILE/ENFILE leave the pending connection in the backlog, so
      // accepting again at once would spin; wait for descriptors to free up.
      ctx_.rejected++;
      LOG_WARN("control plane: accept failed: " << ec.message() << "; retrying in 50 ms");
      accept_retry_.expires_after(std::chrono::milliseconds(50));
      accept_retry_.async_wait([this](error_code e) {
        if (!e && !ctx_.stopping) accept();
      });
      return;
    }
    admit(std::move(s));
    accept();
  });
}

void ControlPlane::admit(tcp::socket s) {
  std::erase_if(inbound_, [](const auto& w) { return w.expired(); });
  error_code ec;
  auto from = s.remote_endpoint(ec).address();
  std::size_t pending = 0, same_address = 0;
  for (auto& w : inbound_) {
    auto c = w.lock();
    if (!c || c->authenticated) continue;
    pending++;
    if (!ec && c->remote_address() == from) same_address++;
  }
  // Members finish their handshake in one round trip; a crowd of half-open
  // connections is a flood. New ones are refused, established ones keep
  // being served.
  if (inbound_.size() >= kMaxInbound || pending >= kMaxPendingHandshakes ||
      same_address >= kMaxPendingPerAddress) {
    ctx_.rejected++;
    LOG_WARN("control plane: refusing a connection from "
             << (ec ? std::string("?") : from.to_string()) << " (" << inbound_.size() << " open, " << pending
             << " in handshake, " << same_address << " from that address)");
    s.close(ec);
    return;
  }
  auto c = make_connection(std::move(s));
  inbound_.push_back(c);
  c->start();
  // A peer that never completes the handshake gives its descriptor back.
  ctx_.after(kHelloTimeout, [this, w = std::weak_ptr<control::Connection>(c)] {
    if (auto c = w.lock(); c && c->open() && !c->authenticated) {
      ctx_.rejected++;
      c->reject(
          timeout_error("no completed handshake within " + std::to_string(kHelloTimeout.count()) + " ms"));
    }
  });
}

void ControlPlane::dial(const ConnPtr& c, Rank r) {
  c->peer = r;
  c->dialer =
      std::make_unique<auth::Dialer>(key_, static_cast<std::uint8_t>(msg::Channel::kControl), ctx_.me, r);
  c->send_handshake(msg::Hello{msg::kControlProtocol, ctx_.me, msg::Channel::kControl, c->dialer->nonce()});
}

ConnPtr ControlPlane::adopt_outbound(Rank r, tcp::socket s) {
  auto c = make_connection(std::move(s));
  if (r < out_.size()) out_[r] = c;
  dial(c, r);  // before start(): the connection knows it is ours
  c->start();
  return c;
}

void ControlPlane::send_to(Rank r, const msg::Message& m) {
  if (ctx_.stopping) return;
  if (r == ctx_.me) {
    // Same path as a remote message, minus the socket: keeps one code path
    // for the shard and the transfer state machine.
    asio::post(ctx_.io, [this, m]() mutable {
      if (!ctx_.stopping) on_message(nullptr, std::move(m));
    });
    return;
  }
  if (r < ctx_.world && !has_table()) {
    // Peers that got the table before us may already talk to us; answers
    // to them wait for our copy of the table.
    before_table_.emplace_back(r, m);
    return;
  }
  if (r >= ctx_.world) {
    LOG_ERROR("send to unknown rank " << r << " dropped (" << msg::type_name(m) << ")");
    return;
  }
  auto& c = out_[r];
  if (!c || !c->open()) {
    error_code ec;
    auto addr = asio::ip::make_address(peers_[r].host, ec);
    if (ec) {
      LOG_ERROR("rank " << r << " has a bad address " << peers_[r].host);
      return;
    }
    c = make_connection(tcp::socket(ctx_.io));
    c->connect(tcp::endpoint(addr, peers_[r].control_port));
    dial(c, r);
  }
  c->send(m);
}

void ControlPlane::on_message(const ConnPtr& c, msg::Message m) {
  if (ctx_.stopping) return;
  if (c && !c->authenticated) return handshake(c, m);
  if (c) {
    if (auto st = control::check_sender(m, c->peer, {events_ ? events_->bootstrap_rank() : 0, ctx_.leader()});
        !st.is_ok()) {
      ctx_.refused++;
      LOG_WARN("refused " << msg::type_name(m) << " from " << c->name() << ": " << st.message());
      return;
    }
    if (c->peer < ctx_.world && events_) events_->heard_from(c->peer);
  }
  if (!ctx_.dispatch.dispatch(c, m)) {
    ctx_.protocol_errors++;
    LOG_WARN("no handler for " << msg::type_name(m) << " from " << (c ? c->name() : "self"));
  }
}

// The three steps of auth/handshake.h, on either side of the connection.
void ControlPlane::handshake(const ConnPtr& c, const msg::Message& m) {
  if (const auto* e = std::get_if<msg::Error>(&m)) {
    ctx_.rejected++;
    return c->close(peer_failure("rank " + std::to_string(c->peer) + " refused us: " + e->message));
  }
  if (c->dialer) {
    const auto* ch = std::get_if<msg::Challenge>(&m);
    if (!ch) {
      ctx_.protocol_errors++;
      return c->reject(protocol_error("expected a challenge, got " + std::string(msg::type_name(m))));
    }
    if (c->peer == msg::kNoRank && (ch->rank >= ctx_.world || ch->rank == ctx_.me)) {
      ctx_.rejected++;
      return c->reject(
          invalid_argument("rank " + std::to_string(ch->rank) + " answered, which is not a peer"));
    }
    auto proof = c->dialer->answer(ch->rank, ch->nonce, ch->mac);
    if (!proof.is_ok()) {
      ctx_.rejected++;
      return c->reject(proof.status());
    }
    c->send_handshake(msg::Proof{proof.value()});
    if (c->peer == msg::kNoRank) {
      // A member we knew only by address: now it has proved its rank.
      c->peer = ch->rank;
      if (c->peer < out_.size() && !out_[c->peer]) out_[c->peer] = c;
    }
    c->dialer.reset();
    c->authenticated = true;
    c->open_gate();
    return;
  }
  if (!c->acceptor) {
    const auto* h = std::get_if<msg::Hello>(&m);
    if (!h) {
      ctx_.protocol_errors++;
      return c->reject(protocol_error("expected a hello, got " + std::string(msg::type_name(m))));
    }
    if (h->protocol != msg::kControlProtocol) {
      ctx_.protocol_errors++;
      return c->reject(protocol_error("protocol version " + std::to_string(h->protocol) +
                                      " not supported (this node speaks " +
                                      std::to_string(msg::kControlProtocol) + ")"));
    }
    if (h->channel != msg::Channel::kControl) {
      ctx_.protocol_errors++;
      return c->reject(protocol_error("a data-plane hello on the control port"));
    }
    if (h->rank != msg::kNoRank && (h->rank >= ctx_.world || h->rank == ctx_.me)) {
      ctx_.rejected++;
      return c->reject(invalid_argument("rank " + std::to_string(h->rank) + " is not a peer of rank " +
                                        std::to_string(ctx_.me)));
    }
    c->acceptor =
        std::make_unique<auth::Acceptor>(key_, static_cast<std::uint8_t>(msg::Channel::kControl), ctx_.me);
    auto ch = c->acceptor->challenge(h->rank, h->nonce);
    c->send_handshake(msg::Challenge{ch.rank, ch.nonce, ch.mac});
    return;
  }
  const auto* p = std::get_if<msg::Proof>(&m);
  if (!p) {
    ctx_.protocol_errors++;
    return c->reject(protocol_error("expected a proof, got " + std::string(msg::type_name(m))));
  }
  if (auto st = c->acceptor->verify(p->mac); !st.is_ok()) {
    ctx_.rejected++;
    return c->reject(st);
  }
  c->peer = c->acceptor->peer();
  c->acceptor.reset();
  c->authenticated = true;
  c->open_gate();
  c->send(msg::HelloAck{ctx_.me});
}

void ControlPlane::on_closed(const ConnPtr& c, const Status& why) {
  if (ctx_.stopping) return;
  if (why.code() == StatusCode::kProtocol) ctx_.protocol_errors++;
  // A reset or EOF from a member short-cuts the heartbeat timeout. Our own
  // closes (failure handling, rejoin) carry kCancelled or come after the
  // rank is already marked failed.
  // Only our own connection to a member counts (a refused connect to its
  // address, or a reset): whoever holds the token can open and reset an
  // inbound connection in any member's name, and must not evict it so.
  const bool ours = c->peer < out_.size() && out_[c->peer] == c;
  if (events_ && ours && c->peer != ctx_.me && why.code() == StatusCode::kPeerFailure) {
    events_->connection_lost(c->peer, why);
  }
  if (c->peer != msg::kNoRank && c->peer < out_.size() && out_[c->peer] == c) {
    LOG_INFO("connection to rank " << c->peer << " closed: " << why.to_string());
    out_[c->peer].reset();
  }
}

void ControlPlane::drop_peer(Rank f, bool silent) {
  if (out_[f]) out_[f]->close(peer_failure("rank " + std::to_string(f) + " failed"));
  out_[f].reset();
  if (silent) {
    for (auto& w : inbound_) {
      if (auto c = w.lock(); c && c->peer == f)
        c->close(peer_failure("rank " + std::to_string(f) + " failed"));
    }
  }
}

void ControlPlane::reset_peer(Rank r) {
  if (out_[r]) out_[r]->close(Status(StatusCode::kCancelled, "peer rejoined"));
  out_[r].reset();
}

std::vector<ConnPtr> ControlPlane::close_all_when_flushed() {
  error_code ec;
  acceptor_.close(ec);
  std::vector<ConnPtr> conns;
  for (auto& c : out_) {
    if (c) conns.push_back(c);
  }
  for (auto& w : inbound_) {
    if (auto c = w.lock()) conns.push_back(c);
  }
  for (auto& c : conns) c->close_when_flushed();
  return conns;
}

}  // namespace hoplite::node
