// ControlPlane: the node's control-plane connections and the address book
// they are dialled from.
//
// Listens on the control port; dials a peer on the first message to it
// (one outbound connection per peer); runs the challenge-response handshake
// (auth/handshake.h) on every connection before any of its messages are
// dispatched or any of ours are sent; refuses messages the sender rules
// (control/sender_rules.h) do not allow from the connection's rank; hands
// every other message to the component that registered its type. Bounds
// what strangers can hold: a handshake must finish within kHelloTimeout, and
// half-open and total inbound connections are capped. A message to ourselves takes the same path through
// a post, minus the socket. Messages for peers not yet in our copy of the
// bootstrap table wait for it. A member's connection that breaks is
// reported to membership (a reset short-cuts the heartbeat timeout).
//
// Owns: the acceptor, outbound and inbound connections, the address book
// (peers' control and data addresses), the messages held for the table, the
// cluster key; Hello, Challenge, Proof and HelloAck.
// Thread-binding: the progress thread (address() and peer() are read by
// user threads after start, when they no longer change but for rejoins).
#pragma once

#include <vector>

#include "node/context.h"

namespace hoplite::node {

// What the control plane tells membership.
class ControlEvents {
 public:
  virtual ~ControlEvents() = default;
  // Any message from a member is a sign of life.
  virtual void heard_from(Rank r) = 0;
  // An authenticated member's connection broke (not closed by us).
  virtual void connection_lost(Rank r, const Status& why) = 0;
  // Who may send the bootstrap's messages (Table, PeerUpdate): the member
  // we are joining through, then the leader.
  virtual Rank bootstrap_rank() const = 0;
};

class ControlPlane final : public Messenger {
 public:
  static constexpr std::chrono::milliseconds kHelloTimeout{5000};
  static constexpr std::size_t kMaxInbound = 4096;
  static constexpr std::size_t kMaxPendingHandshakes = 256;
  static constexpr std::size_t kMaxPendingPerAddress = 64;

  explicit ControlPlane(NodeContext& ctx);
  // Membership, which is built after the control plane it dials through.
  void set_events(ControlEvents* e) { events_ = e; }

  [[nodiscard]] Status listen(const std::string& host, std::uint16_t port);
  void start_accepting();
  const std::string& host() const { return host_; }
  std::uint16_t port() const { return port_; }

  void send_to(Rank r, const msg::Message& m) override;

  // The address book (the bootstrap table).
  bool has_table() const { return peers_.size() == ctx_.world; }
  void set_table(std::vector<msg::PeerInfo> peers);
  void set_peer(Rank r, const msg::PeerInfo& info) { peers_[r] = info; }
  const msg::PeerInfo& peer(Rank r) const { return peers_.at(r); }
  const std::vector<msg::PeerInfo>& peers() const { return peers_; }
  // This node's own entry.
  msg::PeerInfo self_info() const;

  // A connected socket to `r` (the bootstrap dial): becomes its outbound
  // connection, and our hello goes first. With r = kNoRank (a rejoiner
  // asking a member it knows only by address) any member may answer, and
  // the connection becomes that member's once it has proved who it is.
  ConnPtr adopt_outbound(Rank r, boost::asio::ip::tcp::socket s);
  // `r` failed: its outbound connection closes; `silent` also cuts its
  // inbound ones (it may be stopped, not dead).
  void drop_peer(Rank r, bool silent);
  // `r` came back under a new process: the next message dials it anew.
  void reset_peer(Rank r);
  // Stop: every connection closes once its queued frames are written.
  std::vector<ConnPtr> close_all_when_flushed();

 private:
  ConnPtr make_connection(boost::asio::ip::tcp::socket s);
  void on_message(const ConnPtr& c, msg::Message m);
  void on_closed(const ConnPtr& c, const Status& why);
  void accept();
  void admit(boost::asio::ip::tcp::socket s);
  void dial(const ConnPtr& c, Rank r);
  void handshake(const ConnPtr& c, const msg::Message& m);

  NodeContext& ctx_;
  ControlEvents* events_ = nullptr;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;
  const auth::Key key_;
  std::string host_;
  std::uint16_t port_ = 0;
  std::vector<msg::PeerInfo> peers_;
  std::vector<ConnPtr> out_;  // index = rank
  std::vector<std::weak_ptr<control::Connection>> inbound_;
  std::vector<std::pair<Rank, msg::Message>> before_table_;
};

}  // namespace hoplite::node
