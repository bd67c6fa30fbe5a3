#include "transport/tcp/tcp_transport.h"

#include <array>
#include <cstring>
#include <utility>

#include "common/log.h"
#include "common/wire.h"
#include "transport/local_endpoint.h"

namespace hoplite::transport::tcp {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// Data-plane frame types; docs/wire-protocol.md documents the layouts.
enum DataType : std::uint8_t {
  kDataHello = 0x40,
  kDataHelloAck = 0x41,
  kGetRequest = 0x42,
  kDataError = 0x43,
  kGetResponse = 0x44,
};
constexpr std::uint32_t kProtocol = 1;
constexpr std::uint32_t kRegionId = 1;
constexpr std::size_t kGetRequestSize = 24;    // request u64, offset u64, length u64
constexpr std::size_t kGetResponseFixed = 18;  // request u64, status u16, length u64
constexpr std::uint32_t kMaxHello = 4096;

std::vector<std::uint8_t> frame(std::uint8_t type, const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> out(wire::kHeaderSize + payload.size());
  wire::encode_header(type, static_cast<std::uint32_t>(payload.size()), out.data());
  std::memcpy(out.data() + wire::kHeaderSize, payload.data(), payload.size());
  return out;
}

std::vector<std::uint8_t> error_frame(StatusCode code, const std::string& msg) {
  wire::WireWriter w;
  w.u16(static_cast<std::uint16_t>(code));
  w.str(msg);
  return frame(kDataError, w.buffer());
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

 private:
  void read_header() {
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(hdr_), [this, self](error_code ec, std::size_t) {
      if (ec) return close();
      std::uint32_t cap = authed_ ? static_cast<std::uint32_t>(kGetRequestSize) : kMaxHello;
      auto h = wire::decode_header(hdr_.data(), cap);
      if (!h.is_ok()) return reject(h.status());
      type_ = h->type;
      body_.resize(h->length);
      asio::async_read(sock_, asio::buffer(body_), [this, self](error_code ec2, std::size_t) {
        if (ec2) return close();
        on_frame();
      });
    });
  }

  void on_frame() {
    wire::WireReader r(body_);
    if (!authed_) {
      std::uint32_t proto = 0, rank = 0;
      std::string token;
      if (type_ != kDataHello) return reject(protocol_error("first frame is not a hello"));
      Status st = r.u32(proto);
      if (st.is_ok()) st = r.u32(rank);
      if (st.is_ok()) st = r.str(token, kMaxHello);
      if (st.is_ok()) st = r.finish();
      if (!st.is_ok()) return reject(st);
      if (proto != kProtocol) return reject(protocol_error("data-plane protocol " + std::to_string(proto)));
      if (token != t_.opts_.token) {
        t_.stats_.rejected_connections++;
        return reject(Status(StatusCode::kPeerFailure, "wrong cluster token"));
      }
      authed_ = true;
      peer_rank_ = rank;
      wire::WireWriter w;
      w.u32(t_.opts_.rank);
      send(frame(kDataHelloAck, w.buffer()), nullptr, 0);
      return read_header();
    }
    if (type_ != kGetRequest)
      return reject(protocol_error("unexpected data frame type " + std::to_string(type_)));
    std::uint64_t req = 0, off = 0, len = 0;
    Status st = r.u64(req);
    if (st.is_ok()) st = r.u64(off);
    if (st.is_ok()) st = r.u64(len);
    if (st.is_ok()) st = r.finish();
    if (!st.is_ok()) return reject(st);
    wire::WireWriter w;
    w.u64(req);
    // A bad range is the reader's bug, not a reason to drop the connection:
    // answer with an error status and keep serving.
    bool ok = len <= t_.opts_.max_get && off <= t_.region_length_ && len <= t_.region_length_ - off;
    w.u16(static_cast<std::uint16_t>(ok ? StatusCode::kOk : StatusCode::kInvalidArgument));
    w.u64(ok ? len : 0);
    auto head = w.buffer();
    std::vector<std::uint8_t> f(wire::kHeaderSize + head.size());
    wire::encode_header(kGetResponse, static_cast<std::uint32_t>(head.size() + (ok ? len : 0)), f.data());
    std::memcpy(f.data() + wire::kHeaderSize, head.data(), head.size());
    if (!ok) {
      LOG_WARN("data plane: " << name_ << " asked for [" << off << ", +" << len << ") outside the region");
    }
    send(std::move(f), ok ? t_.region_base_ + off : nullptr, ok ? len : 0);
    t_.stats_.bytes_served += ok ? len : 0;
    read_header();
  }

  void reject(const Status& st) {
    LOG_WARN("data plane: refusing " << name_ << ": " << st.to_string());
    auto self = shared_from_this();
    auto f = std::make_shared<std::vector<std::uint8_t>>(error_frame(st.code(), st.message()));
    asio::async_write(sock_, asio::buffer(*f), [self, f](error_code, std::size_t) { self->close(); });
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
      if (!out_.empty()) write_next();
    });
  }

  TcpTransport& t_;
  tcp::socket sock_;
  std::string name_;
  bool authed_ = false;

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

  void get(std::byte* local, std::uint64_t length, std::uint64_t remote_offset, Completion done) override {
    if (length > t_.opts_.max_get) {
      done(invalid_argument("get of " + std::to_string(length) + " bytes exceeds the chunk limit"));
      return;
    }
    Pending p{next_req_++, local, length, std::move(done)};
    wire::WireWriter w;
    w.u64(p.req);
    w.u64(remote_offset);
    w.u64(length);
    pending_.push_back(std::move(p));
    t_.stats_.gets++;
    queue_write(frame(kGetRequest, w.buffer()));
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
    auto pending = std::move(pending_);
    pending_.clear();
    if (!pending.empty()) LOG_INFO(st.to_string());
    for (auto& p : pending) p.done(st);
  }

 private:
  enum class State { kIdle, kConnecting, kReady };
  struct Pending {
    std::uint64_t req;
    std::byte* local;
    std::uint64_t length;
    Completion done;
  };

  void connect() {
    state_ = State::kConnecting;
    sock_ = tcp::socket(t_.io_);
    sock_.async_connect(addr_, [this](error_code ec) {
      if (ec)
        return fail_all(peer_failure("data plane: cannot connect to rank " + std::to_string(peer_) + " at " +
                                     addr_.address().to_string() + ":" + std::to_string(addr_.port()) + ": " +
                                     ec.message()));
      tune(sock_);
      wire::WireWriter w;
      w.u32(kProtocol);
      w.u32(t_.opts_.rank);
      w.str(t_.opts_.token);
      // The hello must go first; requests queued meanwhile wait behind it.
      outq_.push_front(frame(kDataHello, w.buffer()));
      state_ = State::kReady;
      writing_ = false;
      write_next();
      read_header();
    });
  }

  void queue_write(std::vector<std::uint8_t> f) {
    outq_.push_back(std::move(f));
    if (state_ == State::kReady && !writing_) write_next();
  }
  void write_next() {
    if (outq_.empty()) {
      writing_ = false;
      return;
    }
    writing_ = true;
    asio::async_write(sock_, asio::buffer(outq_.front()), [this, gen = gen_](error_code ec, std::size_t) {
      if (gen != gen_) return;
      if (ec)
        return fail_all(
            peer_failure("data plane: write to rank " + std::to_string(peer_) + ": " + ec.message()));
      outq_.pop_front();
      write_next();
    });
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
      if (h->type != kDataHelloAck && h->type != kDataError) {
        return fail_all(protocol_error("unexpected data frame type " + std::to_string(h->type)));
      }
      small_.resize(h->length);
      asio::async_read(sock_, asio::buffer(small_), [this, type = h->type, gen](error_code ec2, std::size_t) {
        if (gen != gen_) return;
        if (ec2)
          return fail_all(peer_failure("data plane: rank " + std::to_string(peer_) + ": " + ec2.message()));
        if (type == kDataError) {
          wire::WireReader r(small_);
          std::uint16_t code = 0;
          std::string msg;
          (void)r.u16(code);
          (void)r.str(msg, kMaxHello);
          return fail_all(peer_failure("data plane: rank " + std::to_string(peer_) + " refused us: " + msg));
        }
        read_header();
      });
    });
  }

  void read_response() {
    asio::async_read(sock_, asio::buffer(fixed_), [this, gen = gen_](error_code ec, std::size_t) {
      if (gen != gen_) return;
      if (ec)
        return fail_all(peer_failure("data plane: rank " + std::to_string(peer_) + ": " + ec.message()));
      wire::WireReader r(fixed_);
      std::uint64_t req = 0, len = 0;
      std::uint16_t status = 0;
      (void)r.u64(req);
      (void)r.u16(status);
      (void)r.u64(len);
      if (pending_.empty() || pending_.front().req != req) {
        return fail_all(protocol_error("get response for an unknown request " + std::to_string(req)));
      }
      if (body_len_ - kGetResponseFixed != len)
        return fail_all(protocol_error("get response length mismatch"));
      if (status != 0) {
        Pending p = std::move(pending_.front());
        pending_.pop_front();
        p.done(Status(static_cast<StatusCode>(status), "rank " + std::to_string(peer_) + " rejected a get"));
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
  std::deque<std::vector<std::uint8_t>> outq_;
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
  std::vector<std::uint8_t> remote_key() const override {
    wire::WireWriter w;
    w.u32(kRegionId);
    w.u64(len_);
    return w.buffer();
  }

 private:
  std::byte* base_;
  std::uint64_t len_;
};

}  // namespace

TcpTransport::TcpTransport(asio::io_context& io, TcpOptions opts)
    : io_(io), opts_(std::move(opts)), acceptor_(io) {}

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
    if (!ec) {
      tune(s);
      auto conn = std::make_shared<ServerConn>(*this, std::move(s));
      servers_.push_back(conn);
      conn->start();
      std::erase_if(servers_, [](const auto& w) { return w.expired(); });
    }
    accept();
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
  wire::WireReader r(remote_key);
  std::uint32_t region = 0;
  std::uint64_t len = 0;
  HOPLITE_RETURN_IF_ERROR(r.u32(region));
  HOPLITE_RETURN_IF_ERROR(r.u64(len));
  if (region != kRegionId) return protocol_error("tcp remote key for an unknown region");
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
