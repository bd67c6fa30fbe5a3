// Connection: one control-plane TCP connection, framed.
//
// Reads frames (validating the header and the payload against its type) and
// hands decoded messages to its owner's handler; queues outgoing frames and
// writes them in order. The first bad frame is answered with an Error frame
// and the connection is closed: the peer is out of sync with us and nothing
// it sends afterwards can be trusted. Other connections are unaffected.
//
// A peer that does not read what it asks for meets backpressure
// (docs/security.md). On a connection we accepted, everything we write
// answers what the peer sent on it (HelloAck, a tool's DiagReply): past
// kPauseReadingBytes queued we stop reading it until the queue is half
// drained, so what it costs us stays bounded and an honest reader loses
// nothing. Our own connections to members carry our messages only (a
// member's arrive on its own connection to us), so reading less from them
// would slow nobody down, and pausing a member's connection for our queue
// to it could deadlock two busy members sending to each other; past
// kMaxQueuedBytes the peer counts as not reading and the connection is
// closed.
//
// Until the handshake completes (auth/handshake.h) only handshake frames
// are written: whatever the owner queued waits behind the gate, so nothing
// reaches a peer that has not proved it holds the token.
//
// Ownership: shared by the handlers in flight; the node keeps the ones it
// routes messages through. Thread-safety: thread-bound to the progress thread.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include "common/asio.h"

#include "auth/handshake.h"
#include "control/messages.h"

namespace hoplite::control {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using MessageHandler = std::function<void(const std::shared_ptr<Connection>&, Message)>;
  using CloseHandler = std::function<void(const std::shared_ptr<Connection>&, const Status&)>;

  Connection(boost::asio::ip::tcp::socket sock, MessageHandler on_message, CloseHandler on_close);

  // Accepted connections (and outbound sockets already connected, whose
  // dialer is set first): starts reading.
  void start();
  // Outbound connections: sends queue until connected; then the queue is
  // written and reading starts. A failed connect closes the connection.
  void connect(const boost::asio::ip::tcp::endpoint& to);
  void send(std::vector<std::uint8_t> frame);
  void send(const Message& m) { send(encode(m)); }
  // A handshake frame: written ahead of the gate.
  void send_handshake(const Message& m);
  // The peer is authenticated: queued frames flow.
  void open_gate();
  // Sends an Error frame after any write in flight (never two writes at
  // once on the socket), drops everything queued, then closes.
  void reject(const Status& why);
  void close(const Status& why);
  // Closes once every queued frame is written (a node leaving must not drop
  // its last messages, e.g. the barrier release).
  void close_when_flushed();
  bool open() const { return open_; }
  const std::string& name() const { return name_; }
  boost::asio::ip::address remote_address() const { return remote_; }

  // Set by the node after the handshake: which rank this is, if a member.
  Rank peer = kNoRank;
  bool authenticated = false;
  // The handshake in progress, driven by the node: one side of it, dropped
  // once the peer is authenticated.
  std::unique_ptr<auth::Dialer> dialer;
  std::unique_ptr<auth::Acceptor> acceptor;

 private:
  void read_header();
  // Reads on, unless the peer is not reading what we answer (backpressure).
  void read_more();
  void parse_frames();
  void write_next();

  static constexpr std::size_t kReadChunk = 64u << 10;
  static constexpr std::size_t kMaxBatch = 64;  // frames per gathered write
  // Queued and not yet written; past it the peer counts as not reading.
  // Sized for a member busy for a while behind bursts of inline lookup
  // answers and task messages, which an honest cluster can queue.
  static constexpr std::size_t kMaxQueuedBytes = 256u << 20;

 public:
  // Answers queued on an accepted connection past which it is not read:
  // a few thousand diagnostics answers, far above what a tool that reads
  // its answers ever has queued.
  static constexpr std::size_t kPauseReadingBytes = 1u << 20;

 private:
  boost::asio::ip::tcp::socket sock_;
  MessageHandler on_message_;
  CloseHandler on_close_;
  std::string name_;
  boost::asio::ip::address remote_;
  bool open_ = true;
  bool writing_ = false;
  bool closing_ = false;
  bool rejected_ = false;
  bool gated_ = true;
  bool accepted_ = false;  // start(): our writes answer the peer's frames
  bool paused_ = false;    // not reading until our answers drain
  Status close_reason_{StatusCode::kCancelled, "closed after flush"};
  // Received bytes [rbegin_, rend_) not yet dispatched.
  std::vector<std::uint8_t> rbuf_;
  std::size_t rbegin_ = 0, rend_ = 0;
  std::deque<std::vector<std::uint8_t>> hsq_;  // handshake frames: pass the gate
  std::deque<std::vector<std::uint8_t>> outq_;
  std::size_t queued_bytes_ = 0;                     // in outq_
  std::vector<std::vector<std::uint8_t>> inflight_;  // being written
};

}  // namespace hoplite::control
