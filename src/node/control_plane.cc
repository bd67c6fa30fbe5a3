#include "node/control_plane.h"

namespace hoplite::node {

using asio::ip::tcp;
using control::Connection;

ControlPlane::ControlPlane(NodeContext& ctx) : ctx_(ctx), acceptor_(ctx.io) {
  out_.resize(ctx_.world);
  ctx_.messenger = this;
  ctx_.dispatch.on<msg::Hello>([](const ConnPtr& c, const msg::Hello&) {
    if (c) c->reject(protocol_error("second hello on a connection"));
  });
  ctx_.dispatch.on<msg::HelloAck>([](const ConnPtr&, const msg::HelloAck&) {});
}

Status ControlPlane::listen(const std::string& host, std::uint16_t port) {
  host_ = host;
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return invalid_argument("listen host '" + host + "' is not an IP address");
  tcp::endpoint ep(addr, port);
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
    if (!ec) {
      auto c = make_connection(std::move(s));
      inbound_.push_back(c);
      std::erase_if(inbound_, [](const auto& w) { return w.expired(); });
      c->start();
    }
    accept();
  });
}

ConnPtr ControlPlane::adopt_outbound(Rank r, tcp::socket s) {
  auto c = make_connection(std::move(s));
  c->peer = r;
  c->authenticated = true;  // we dialed; the peer checks our hello
  out_[r] = c;
  c->start();
  c->send(msg::Hello{msg::kControlProtocol, ctx_.me, msg::Channel::kControl, ctx_.opts.token});
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
    c->peer = r;
    c->authenticated = true;  // we dialed; the peer checks our hello
    c->connect(tcp::endpoint(addr, peers_[r].control_port));
    c->send(msg::Hello{msg::kControlProtocol, ctx_.me, msg::Channel::kControl, ctx_.opts.token});
  }
  c->send(m);
}

void ControlPlane::on_message(const ConnPtr& c, msg::Message m) {
  if (ctx_.stopping) return;
  if (c && !c->authenticated) {
    const auto* h = std::get_if<msg::Hello>(&m);
    if (!h) {
      ctx_.protocol_errors++;
      return c->reject(protocol_error("expected a hello, got " + std::string(msg::type_name(m))));
    }
    if (h->protocol != msg::kControlProtocol) {
      ctx_.protocol_errors++;
      return c->reject(protocol_error("protocol version " + std::to_string(h->protocol) + " not supported"));
    }
    if (h->token != ctx_.opts.token) {
      ctx_.rejected++;
      return c->reject(peer_failure("wrong cluster token"));
    }
    if (h->rank != msg::kNoRank && h->rank >= ctx_.world) {
      return c->reject(invalid_argument("rank " + std::to_string(h->rank) + " is not a member"));
    }
    c->authenticated = true;
    c->peer = h->rank;
    c->send(msg::HelloAck{ctx_.me});
    return;
  }
  if (c && c->peer < ctx_.world && events_) events_->heard_from(c->peer);
  if (!ctx_.dispatch.dispatch(c, m)) {
    ctx_.protocol_errors++;
    LOG_WARN("no handler for " << msg::type_name(m) << " from " << (c ? c->name() : "self"));
  }
}

void ControlPlane::on_closed(const ConnPtr& c, const Status& why) {
  if (ctx_.stopping) return;
  if (why.code() == StatusCode::kProtocol) ctx_.protocol_errors++;
  // A reset or EOF from a member short-cuts the heartbeat timeout. Our own
  // closes (failure handling, rejoin) carry kCancelled or come after the
  // rank is already marked failed.
  if (events_ && c->peer < ctx_.world && c->peer != ctx_.me && c->authenticated &&
      why.code() == StatusCode::kPeerFailure) {
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
