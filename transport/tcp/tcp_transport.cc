#include "transport/tcp/tcp_transport.h"

#include <array>
#include <utility>

#include "auth/handshake.h"
#include "common/log.h"
#include "common/wire.h"
#include "transport/local_endpoint.h"
#include "transport/tcp/data_frames.h"

namespace hoplite::transport::tcp {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
// The frames' layouts and codecs live in data_frames.h (pure, and fuzzed):
// their names read here as they did when they were local.
using namespace frames;  // NOLINT(google-build-using-namespace)

namespace {

std::vector<std::uint8_t> error_frame(StatusCode code, const std::string& msg) {
  return encode_error(static_cast<std::uint16_t>(code), msg);
}

void tune(tcp::socket& s) {
  error_code ec;
  s.set_option(tcp::no_delay(true), ec);
}

std::string peer_name(const tcp::socket& s) {
  error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

// The serving side of one connection: validates the hello, then answers get
// requests from the registered region in order.
class TcpTransport::ServerConn : public std::enable_shared_from_this<ServerConn> {
 public:
  ServerConn(TcpTransport& t, tcp::socket s) : t_(t), sock_(std::move(s)), name_(peer_name(sock_)) {}

  void start() { read_header(); }
  void close() {
    error_code ec;
    sock_.close(ec);
  }
  bool authed() const { return authed_; }
  void timed_out() { reject(timeout_error("no completed handshake in time")); }

 private:
  void read_header() {
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(hdr_), [this, self](error_code ec, std::size_t) {
      if (ec) return close();
      if (rejecting_) return;
      std::uint32_t cap = authed_ ? static_cast<std::uint32_t>(kGetRequestSize) : kMaxHello;
      auto h = wire::decode_header(hdr_.data(), cap);
      if (!h.is_ok()) return reject(h.status());
      type_ = h->type;
      body_.resize(h->length);
      asio::async_read(sock_, asio::buffer(body_), [this, self](error_code ec2, std::size_t) {
        if (ec2) return close();
        if (rejecting_) return;
        on_frame();
      });
    });
  }

  // The acceptor's half of auth/handshake.h: hello, then proof.
  void on_handshake() {
    if (!acceptor_) {
      if (type_ != kDataHello) return reject(protocol_error("first frame is not a hello"));
      auto hello = decode_hello(body_);
      if (!hello.is_ok()) return reject(hello.status());
      if (hello->protocol != kProtocol)
        return reject(protocol_error("data-plane protocol " + std::to_string(hello->protocol)));
      acceptor_ = std::make_unique<auth::Acceptor>(t_.key_, kDataChannel, t_.opts_.rank);
      auto ch = acceptor_->challenge(hello->rank, hello->nonce);
      send(encode_challenge({ch.rank, ch.nonce, ch.mac}), nullptr, 0);
      return read_header();
    }
    if (type_ != kDataProof) return reject(protocol_error("expected a proof"));
    auto proof = decode_proof(body_);
    if (!proof.is_ok()) return reject(proof.status());
    if (auto v = acceptor_->verify(proof->mac); !v.is_ok()) {
      t_.stats_.rejected_connections++;
      return reject(v);
    }
    authed_ = true;
    peer_rank_ = acceptor_->peer();
    acceptor_.reset();
    send(encode_hello_ack(t_.opts_.rank), nullptr, 0);
    read_header();
  }

  void on_frame() {
    if (!authed_) return on_handshake();
    if (type_ != kGetRequest)
      return reject(protocol_error("unexpected data frame type " + std::to_string(type_)));
    auto get = decode_get_request(body_);
    if (!get.is_ok()) return reject(get.status());
    const std::uint64_t req = get->request, off = get->offset, len = get->length;
    const ObjectID& id = get->object;
    // A bad range is the reader's bug, not a reason to drop the connection:
    // answer with an error status and keep serving. Within the region, the
    // node says whether this peer was granted those bytes of that object.
    Status access = len <= t_.opts_.max_get && off <= t_.region_length_ && len <= t_.region_length_ - off
                        ? Status()
                        : invalid_argument("outside the region");
    if (access.is_ok() && t_.access_) access = t_.access_(peer_rank_, id, off, len);
    const bool ok = access.is_ok();
    auto f = encode_get_response_head({req, static_cast<std::uint16_t>(access.code()), ok ? len : 0});
    if (!ok) {
      t_.stats_.refused_gets++;
      LOG_WARN("data plane: refused rank " << peer_rank_ << " at " << name_ << " [" << off << ", +" << len
                                           << ") of " << id.short_hex() << ": " << access.message());
    }
    send(std::move(f), ok ? t_.region_base_ + off : nullptr, ok ? len : 0);
    t_.stats_.bytes_served += ok ? len : 0;
    // Backpressure: a reader that asks faster than it reads stops being
    // read from until its answers drain, instead of queueing without end.
    if (out_.size() >= kMaxQueuedAnswers) {
      paused_ = true;
      return;
    }
    read_header();
  }

  // The error frame goes behind the write in flight, if any (one
  // outstanding write per socket); what was queued after it is dropped.
  void reject(const Status& st) {
    if (rejecting_) return;
    rejecting_ = true;
    LOG_WARN("data plane: refusing " << name_ << ": " << st.to_string());
    const bool busy = !out_.empty();
    if (busy) out_.erase(out_.begin() + 1, out_.end());
    out_.push_back({error_frame(st.code(), st.message()), nullptr, 0});
    if (!busy) write_next();
  }

  struct Out {
    std::vector<std::uint8_t> head;
    const std::byte* data;
    std::uint64_t len;
  };
  void send(std::vector<std::uint8_t> head, const std::byte* data, std::uint64_t len) {
    out_.push_back({std::move(head), data, len});
    if (out_.size() == 1) write_next();
  }
  void write_next() {
    auto self = shared_from_this();
    const Out& o = out_.front();
    std::array<asio::const_buffer, 2> bufs{asio::buffer(o.head), asio::buffer(o.data, o.len)};
    asio::async_write(sock_, bufs, [this, self](error_code ec, std::size_t) {
      if (ec) return close();
      out_.pop_front();
      if (paused_ && out_.size() < kMaxQueuedAnswers / 2) {
        paused_ = false;
        read_header();
      }
      if (!out_.empty()) return write_next();
      if (rejecting_) close();
    });
  }

  TcpTransport& t_;
  tcp::socket sock_;
  std::string name_;
  static constexpr std::size_t kMaxQueuedAnswers = 256;
  bool authed_ = false;
  bool rejecting_ = false;
  bool paused_ = false;  // reading stopped until answers drain
  std::unique_ptr<auth::Acceptor> acceptor_;

 public:
  Rank peer_rank_ = 0xffffffffu;

 private:
  std::array<std::uint8_t, wire::kHeaderSize> hdr_{};
  std::uint8_t type_ = 0;
  std::vector<std::uint8_t> body_;
  std::deque<Out> out_;
};

// The reading side towards one peer: connects lazily, pipelines gets,
// completes them in FIFO order as responses arrive.
//
// Lifetime: its Asio handlers hold `this`, so it must outlive every handler
// it started. The transport owns it from add_peer until the transport is
// destroyed, also after a rejoined peer's new address replaced it
// (TcpTransport::retired_): closing its socket aborts its handlers, which
// then find the generation bumped by fail_all() and return. Its gets are
// failed before it is retired or the transport shuts down, so the
// destructor never runs a completion (it runs after the node's components,
// which those completions call, may be gone).
class TcpTransport::ClientEndpoint final : public Endpoint {
 public:
  ClientEndpoint(TcpTransport& t, Rank peer, tcp::endpoint addr)
      : t_(t), peer_(peer), addr_(addr), sock_(t.io_) {}
  ~ClientEndpoint() override { close(); }

  void get(const ObjectID& id, std::byte* local, std::uint64_t length, std::uint64_t remote_offset,
           Completion done) override {
    if (length > t_.opts_.max_get) {
      done(invalid_argument("get of " + std::to_string(length) + " bytes exceeds the chunk limit"));
      return;
    }
    Pending p{next_req_++, local, length, std::move(done)};
    auto f = encode_get_request({p.req, id, remote_offset, length});
    pending_.push_back(std::move(p));
    t_.stats_.gets++;
    queue_write(std::move(f));
    if (state_ == State::kIdle) connect();
  }
  std::size_t in_flight() const override { return pending_.size(); }

  void close() {
    error_code ec;
    sock_.close(ec);
  }
  // A broken connection fails every get on it; the next get reconnects.
  void fail_all(const Status& st) {
    ++gen_;
    close();
    state_ = State::kIdle;
    writing_ = false;
    outq_.clear();
    hsq_.clear();
    dialer_.reset();
    auto pending = std::move(pending_);
    pending_.clear();
    if (!pending.empty()) LOG_INFO(st.to_string());
    for (auto& p : pending) p.done(st);
  }

 private:
  // kHandshake: connected, our hello sent, gets held until the peer proves
  // it holds the token.
  enum class State { kIdle, kConnecting, kHandshake, kReady };
  struct Pending {
    std::uint64_t req;
    std::byte* local;
    std::uint64_t length;
    Completion done;
  };

  void connect() {
    state_ = State::kConnecting;
    sock_ = tcp::socket(t_.io_);
    // A connect overtaken by fail_all (its gen bumped) must not fail the
    // gets of the connection that replaced it.
    sock_.async_connect(addr_, [this, gen = gen_](error_code ec) {
      if (gen != gen_) return;
      if (ec)
        return fail_all(peer_failure("data plane: cannot connect to rank " + std::to_string(peer_) + " at " +
                                     addr_.address().to_string() + ":" + std::to_string(addr_.port()) + ": " +
                                     ec.message()));
      tune(sock_);
      dialer_ = std::make_unique<auth::Dialer>(t_.key_, kDataChannel, t_.opts_.rank, peer_);
      hsq_.push_back(encode_hello({kProtocol, t_.opts_.rank, dialer_->nonce()}));
      state_ = State::kHandshake;
      writing_ = false;
      write_next();
      read_header();
    });
  }

  void queue_write(std::vector<std::uint8_t> f) {
    outq_.push_back(std::move(f));
    if (state_ == State::kReady && !writing_) write_next();
  }
  // Handshake frames first; gets only once the peer is authenticated.
  void write_next() {
    auto& q = !hsq_.empty() ? hsq_ : outq_;
    if (q.empty() || (&q == &outq_ && state_ != State::kReady)) {
      writing_ = false;
      return;
    }
    writing_ = true;
    asio::async_write(sock_, asio::buffer(q.front()), [this, &q, gen = gen_](error_code ec, std::size_t) {
      if (gen != gen_) return;
      if (ec)
        return fail_all(
            peer_failure("data plane: write to rank " + std::to_string(peer_) + ": " + ec.message()));
      q.pop_front();
      write_next();
    });
  }

  // The dialer's half of auth/handshake.h.
  void on_challenge() {
    auto ch = decode_challenge(small_);
    if (!ch.is_ok()) return fail_all(ch.status());
    if (state_ != State::kHandshake || !dialer_)
      return fail_all(protocol_error("unexpected data-plane challenge"));
    auto proof = dialer_->answer(ch->rank, ch->nonce, ch->mac);
    if (!proof.is_ok()) {
      return fail_all(
          peer_failure("data plane: rank " + std::to_string(peer_) + ": " + proof.status().message()));
    }
    dialer_.reset();
    hsq_.push_back(encode_proof({proof.value()}));
    state_ = State::kReady;
    if (!writing_) write_next();
    read_header();
  }

  void read_header() {
    asio::async_read(sock_, asio::buffer(hdr_), [this, gen = gen_](error_code ec, std::size_t) {
      if (gen != gen_) return;
      if (ec)
        return fail_all(
            peer_failure("data plane: rank " + std::to_string(peer_) + " closed: " + ec.message()));
      auto h = wire::decode_header(hdr_.data(), static_cast<std::uint32_t>(t_.opts_.max_get + 64));
      if (!h.is_ok()) return fail_all(h.status());
      if (h->type == kGetResponse) {
        if (h->length < kGetResponseFixed) return fail_all(protocol_error("short get response"));
        body_len_ = h->length;
        return read_response();
      }
      if (h->type != kDataHelloAck && h->type != kDataError && h->type != kDataChallenge) {
        return fail_all(protocol_error("unexpected data frame type " + std::to_string(h->type)));
      }
      // The small frames are small: a holder must not make us allocate a
      // chunk's worth for an ack (found by the fuzz campaign's review).
      if (h->length > kMaxHello) return fail_all(protocol_error("oversized data-plane control frame"));
      small_.resize(h->length);
      asio::async_read(sock_, asio::buffer(small_), [this, type = h->type, gen](error_code ec2, std::size_t) {
        if (gen != gen_) return;
        if (ec2)
          return fail_all(peer_failure("data plane: rank " + std::to_string(peer_) + ": " + ec2.message()));
        if (type == kDataError) {
          // The connection fails either way; a malformed error frame only
          // loses its message.
          auto e = decode_error(small_);
          const std::string msg = e.is_ok() ? e->message : std::string();
          return fail_all(peer_failure("data plane: rank " + std::to_string(peer_) + " refused us: " + msg));
        }
        if (type == kDataChallenge) return on_challenge();
        read_header();
      });
    });
  }

  void read_response() {
    asio::async_read(sock_, asio::buffer(fixed_), [this, gen = gen_](error_code ec, std::size_t) {
      if (gen != gen_) return;
      if (ec)
        return fail_all(peer_failure("data plane: rank " + std::to_string(peer_) + ": " + ec.message()));
      // fixed_ holds exactly kGetResponseFixed bytes: decoding cannot fail.
      auto head = decode_get_response_head(fixed_);
      if (!head.is_ok()) return fail_all(head.status());
      const std::uint64_t req = head->request, len = head->length;
      const std::uint16_t status = head->status;
      if (pending_.empty() || pending_.front().req != req) {
        return fail_all(protocol_error("get response for an unknown request " + std::to_string(req)));
      }
      if (!response_length_matches(*head, body_len_))
        return fail_all(protocol_error("get response length mismatch"));
      if (status != 0) {
        Pending p = std::move(pending_.front());
        pending_.pop_front();
        p.done(Status(wire::status_code(status), "rank " + std::to_string(peer_) + " rejected a get"));
        return read_header();
      }
      if (len != pending_.front().length) return fail_all(protocol_error("get response of the wrong size"));
      asio::async_read(sock_, asio::buffer(pending_.front().local, len),
                       [this, gen](error_code ec2, std::size_t n) {
                         if (gen != gen_) return;
                         if (ec2)
                           return fail_all(peer_failure("data plane: rank " + std::to_string(peer_) +
                                                        " died mid-chunk: " + ec2.message()));
                         Pending p = std::move(pending_.front());
                         pending_.pop_front();
                         t_.stats_.bytes_read += n;
                         p.done(Status::ok());
                         read_header();
                       });
    });
  }

  TcpTransport& t_;
  Rank peer_;
  tcp::endpoint addr_;
  tcp::socket sock_;
  State state_ = State::kIdle;
  bool writing_ = false;
  std::uint64_t gen_ = 0;  // bumps on failure so stale handlers return
  std::uint64_t next_req_ = 1;
  std::deque<Pending> pending_;
  std::deque<std::vector<std::uint8_t>> hsq_;  // handshake frames
  std::deque<std::vector<std::uint8_t>> outq_;
  std::unique_ptr<auth::Dialer> dialer_;
  std::array<std::uint8_t, wire::kHeaderSize> hdr_{};
  std::array<std::uint8_t, kGetResponseFixed> fixed_{};
  std::uint64_t body_len_ = 0;
  std::vector<std::uint8_t> small_;
};

namespace {

class TcpRegion final : public MemoryRegion {
 public:
  TcpRegion(std::byte* base, std::uint64_t len) : base_(base), len_(len) {}
  std::byte* base() const override { return base_; }
  std::uint64_t length() const override { return len_; }
  std::vector<std::uint8_t> remote_key() const override { return encode_region_key({kRegionId, len_}); }

 private:
  std::byte* base_;
  std::uint64_t len_;
};

}  // namespace

TcpTransport::TcpTransport(asio::io_context& io, TcpOptions opts)
    : io_(io), opts_(std::move(opts)), key_(opts_.token), acceptor_(io), accept_retry_(io) {}

Result<std::unique_ptr<TcpTransport>> TcpTransport::create(asio::io_context& io, TcpOptions opts) {
  std::unique_ptr<TcpTransport> t(new TcpTransport(io, std::move(opts)));
  error_code ec;
  auto addr = asio::ip::make_address(t->opts_.listen_host, ec);
  if (ec) return invalid_argument("data plane: bad listen address '" + t->opts_.listen_host + "'");
  tcp::endpoint ep(addr, 0);
  t->acceptor_.open(ep.protocol(), ec);
  if (!ec) t->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) t->acceptor_.bind(ep, ec);
  if (!ec) t->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return peer_failure("data plane: cannot listen on " + t->opts_.listen_host + ": " + ec.message());
  t->port_ = t->acceptor_.local_endpoint().port();
  if (t->opts_.advertise_host.empty()) t->opts_.advertise_host = t->opts_.listen_host;
  t->accept();
  return t;
}

TcpTransport::~TcpTransport() {
  shutdown();
}

void TcpTransport::accept() {
  acceptor_.async_accept([this](error_code ec, tcp::socket s) {
    if (shut_down_) return;
    if (ec) {
      // EMFILE leaves the connection in the backlog: accepting again at
      // once would spin until a descriptor frees up.
      stats_.rejected_connections++;
      LOG_WARN("data plane: accept failed: " << ec.message() << "; retrying in 50 ms");
      accept_retry_.expires_after(std::chrono::milliseconds(50));
      accept_retry_.async_wait([this](error_code e) {
        if (!e && !shut_down_) accept();
      });
      return;
    }
    admit(std::move(s));
    accept();
  });
}

void TcpTransport::admit(tcp::socket s) {
  std::erase_if(servers_, [](const auto& w) { return w.expired(); });
  std::size_t pending = 0;
  for (auto& w : servers_) {
    if (auto c = w.lock(); c && !c->authed()) pending++;
  }
  // Strangers are held to a few hundred handshakes at a time; members
  // already connected keep being served.
  if (servers_.size() >= kMaxConnections || pending >= kMaxPendingHandshakes) {
    stats_.rejected_connections++;
    LOG_WARN("data plane: refusing a connection from " << peer_name(s) << " (" << servers_.size() << " open, "
                                                       << pending << " in handshake)");
    error_code ignored;
    s.close(ignored);
    return;
  }
  tune(s);
  auto conn = std::make_shared<ServerConn>(*this, std::move(s));
  servers_.push_back(conn);
  conn->start();
  auto timer = std::make_shared<asio::steady_timer>(io_, kHelloTimeout);
  timer->async_wait([this, timer, w = std::weak_ptr<ServerConn>(conn)](error_code ec) {
    if (ec || shut_down_) return;
    if (auto c = w.lock(); c && !c->authed()) {
      stats_.rejected_connections++;
      c->timed_out();
    }
  });
}

std::string TcpTransport::address() const {
  return opts_.advertise_host + ":" + std::to_string(port_);
}

Result<std::unique_ptr<MemoryRegion>> TcpTransport::register_memory(std::byte* base, std::uint64_t length) {
  if (region_base_) return invalid_argument("tcp transport: one region per node");
  region_base_ = base;
  region_length_ = length;
  return std::unique_ptr<MemoryRegion>(new TcpRegion(base, length));
}

Status TcpTransport::add_peer(Rank peer, const std::string& address,
                              const std::vector<std::uint8_t>& remote_key) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return invalid_argument("tcp address without a port: " + address);
  error_code ec;
  auto ip = asio::ip::make_address(address.substr(0, colon), ec);
  if (ec) return invalid_argument("tcp address '" + address + "': " + ec.message());
  unsigned long port = std::strtoul(address.c_str() + colon + 1, nullptr, 10);
  if (port == 0 || port > 65535) return invalid_argument("tcp address with a bad port: " + address);
  auto key = decode_region_key(remote_key);
  if (!key.is_ok()) return key.status();
  auto fresh =
      std::make_unique<ClientEndpoint>(*this, peer, tcp::endpoint(ip, static_cast<std::uint16_t>(port)));
  // A rejoined peer's new address replaces the old endpoint, whose handlers
  // may still be queued (a read is always pending on a live connection):
  // it is retired, not destroyed. The new endpoint is in place before the
  // old one's gets fail, so a caller that retries from its completion
  // reaches the new process.
  std::unique_ptr<ClientEndpoint> old = std::exchange(endpoints_[peer], std::move(fresh));
  if (old) {
    old->fail_all(peer_failure("rank " + std::to_string(peer) + " was replaced (it rejoined)"));
    retired_.push_back(std::move(old));
  }
  return {};
}

Endpoint* TcpTransport::endpoint(Rank peer) {
  if (peer == opts_.rank) {
    if (!local_) local_ = std::make_unique<LocalEndpoint>(io_, region_base_, region_length_);
    return local_.get();
  }
  auto it = endpoints_.find(peer);
  return it == endpoints_.end() ? nullptr : it->second.get();
}

void TcpTransport::fail_peer(Rank peer, const Status& why) {
  if (auto it = endpoints_.find(peer); it != endpoints_.end()) it->second->fail_all(why);
  for (auto& w : servers_) {
    if (auto s = w.lock(); s && s->peer_rank_ == peer) s->close();
  }
}

void TcpTransport::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  error_code ec;
  acceptor_.close(ec);
  for (auto& w : servers_) {
    if (auto s = w.lock()) s->close();
  }
  // Gets fail while their callers still exist. The endpoints themselves
  // stay until the destructor (handlers aborted by the closes still refer
  // to them), but no new get reaches them.
  for (auto& [rank, ep] : endpoints_) {
    ep->fail_all(Status(StatusCode::kCancelled, "transport shut down"));
    retired_.push_back(std::move(ep));
  }
  endpoints_.clear();
  local_.reset();
}

}  // namespace hoplite::transport::tcp
