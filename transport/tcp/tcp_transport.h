// TcpTransport: the always-available data plane over plain TCP sockets.
//
// One listening socket per node and one persistent connection per ordered
// peer pair (opened by the reader on its first get). A get is a 32-byte
// request; the serving side answers with a header and the bytes straight
// from its registered region (one writev, no staging copy), and the reader
// receives them straight into the destination extent. Responses on one
// connection come back in request order, so completion is a FIFO. Every
// connection starts with the challenge-response of auth/handshake.h; a peer
// without the token is refused and logged, and the reader sends no get
// before the holder has proved itself. A get names its object, and the
// node's access check decides whether this peer was granted those bytes.
// Malformed frames close the offending connection only.
//
// Ownership: owns its acceptor and connections; runs on the io_context given
// at creation, which must outlive it.
// Thread-safety: thread-bound to that io_context's thread.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>
#include "common/asio.h"

#include "auth/handshake.h"
#include "transport/transport.h"

namespace hoplite::transport::tcp {

struct TcpOptions {
  Rank rank = 0;
  std::string token;
  std::string listen_host = "127.0.0.1";  // bind address; "0.0.0.0" binds all
  std::string advertise_host;             // what peers dial; defaults to listen_host
  std::uint64_t max_get = 64u << 20;      // largest single get, also a frame bound
};

class TcpTransport final : public Transport {
 public:
  [[nodiscard]] static Result<std::unique_ptr<TcpTransport>> create(boost::asio::io_context& io,
                                                                    TcpOptions opts);
  ~TcpTransport() override;

  const char* name() const override { return "tcp"; }
  std::string address() const override;
  Result<std::unique_ptr<MemoryRegion>> register_memory(std::byte* base, std::uint64_t length) override;
  Status add_peer(Rank peer, const std::string& address,
                  const std::vector<std::uint8_t>& remote_key) override;
  Endpoint* endpoint(Rank peer) override;
  TransportStats stats() const override { return stats_; }
  std::string describe(Rank) const override { return "tcp " + address(); }
  // A broken data connection fails its gets, which resume elsewhere; the
  // control connection to the same peer is what declares it failed.
  void set_peer_error_handler(PeerErrorHandler) override {}
  void set_access_check(AccessCheck check) override { access_ = std::move(check); }
  void fail_peer(Rank peer, const Status& why) override;
  void shutdown() override;

  std::uint16_t port() const { return port_; }

  class ServerConn;
  class ClientEndpoint;

 private:
  TcpTransport(boost::asio::io_context& io, TcpOptions opts);
  void accept();
  void admit(boost::asio::ip::tcp::socket s);

  static constexpr std::chrono::milliseconds kHelloTimeout{5000};
  static constexpr std::size_t kMaxConnections = 4096;
  static constexpr std::size_t kMaxPendingHandshakes = 256;

  boost::asio::io_context& io_;
  TcpOptions opts_;
  const auth::Key key_;
  AccessCheck access_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;
  std::uint16_t port_ = 0;
  std::byte* region_base_ = nullptr;
  std::uint64_t region_length_ = 0;
  std::map<Rank, std::unique_ptr<ClientEndpoint>> endpoints_;
  // Endpoints replaced by a rejoined peer's new address. Their handlers
  // hold `this`, so they are kept until the transport is destroyed: one
  // small object per rejoin.
  std::vector<std::unique_ptr<ClientEndpoint>> retired_;
  std::unique_ptr<Endpoint> local_;
  std::vector<std::weak_ptr<ServerConn>> servers_;
  TransportStats stats_;
  bool shut_down_ = false;

  friend class ServerConn;
  friend class ClientEndpoint;
};

}  // namespace hoplite::transport::tcp
