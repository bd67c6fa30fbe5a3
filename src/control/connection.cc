#include "control/connection.h"

#include <cstring>

#include "common/log.h"

namespace hoplite::control {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

bool handshake_type(std::uint8_t t) {
  switch (static_cast<MsgType>(t)) {
    case MsgType::kHello:
    case MsgType::kChallenge:
    case MsgType::kProof:
    case MsgType::kHelloAck:
    case MsgType::kError: return true;
    default: return false;
  }
}

}  // namespace

Connection::Connection(asio::ip::tcp::socket sock, MessageHandler on_message, CloseHandler on_close)
    : sock_(std::move(sock)), on_message_(std::move(on_message)), on_close_(std::move(on_close)) {
  error_code ec;
  sock_.set_option(asio::ip::tcp::no_delay(true), ec);
  auto ep = sock_.remote_endpoint(ec);
  name_ = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
  if (!ec) remote_ = ep.address();
}

void Connection::start() {
  // An outbound socket made elsewhere (the bootstrap's) dials first.
  accepted_ = !dialer;
  read_header();
}

void Connection::read_more() {
  if (!open_ || rejected_) return;
  if (accepted_ && !gated_ && queued_bytes_ > kPauseReadingBytes) {
    paused_ = true;  // write_next reads on once the queue drained
    return;
  }
  read_header();
}

void Connection::connect(const asio::ip::tcp::endpoint& to) {
  name_ = to.address().to_string() + ":" + std::to_string(to.port());
  writing_ = true;  // hold queued frames until the socket is connected
  auto self = shared_from_this();
  sock_.async_connect(to, [this, self](error_code ec) {
    if (!open_) return;
    if (ec) return close(peer_failure("cannot connect to " + name_ + ": " + ec.message()));
    error_code ignored;
    sock_.set_option(asio::ip::tcp::no_delay(true), ignored);
    write_next();
    read_header();
  });
}

// Reads whatever the socket has (often several frames: one recvfrom instead
// of two per frame) and dispatches every complete frame in it.
void Connection::read_header() {
  // Room for at least a header, and for the whole frame being assembled.
  if (rbuf_.size() - rend_ < kReadChunk) {
    if (rbegin_ > 0) {
      std::memmove(rbuf_.data(), rbuf_.data() + rbegin_, rend_ - rbegin_);
      rend_ -= rbegin_;
      rbegin_ = 0;
    }
    if (rbuf_.size() - rend_ < kReadChunk) rbuf_.resize(rend_ + kReadChunk);
  }
  auto self = shared_from_this();
  sock_.async_read_some(
      asio::buffer(rbuf_.data() + rend_, rbuf_.size() - rend_), [this, self](error_code ec, std::size_t n) {
        if (!open_) return;
        if (ec) {
          return close(peer_failure("control connection to " + name_ + " closed: " + ec.message()));
        }
        rend_ += n;
        parse_frames();
        read_more();
      });
}

void Connection::parse_frames() {
  auto self = shared_from_this();
  while (open_ && !rejected_ && rend_ - rbegin_ >= wire::kHeaderSize) {
    // Before the hello, allow only a hello-sized frame: an unauthenticated
    // peer must not make us allocate a large buffer.
    auto h = wire::decode_header(rbuf_.data() + rbegin_,
                                 authenticated ? wire::kMaxControlPayload : kMaxString + 64);
    if (!h.is_ok()) return reject(h.status());
    // Before the handshake only its own frames are decoded at all.
    if (!authenticated && !handshake_type(h->type)) {
      return reject(protocol_error("frame type " + std::to_string(h->type) + " before the handshake"));
    }
    const std::size_t frame = wire::kHeaderSize + h->length;
    if (rend_ - rbegin_ < frame) {
      // Incomplete: make room for the rest of it in one piece.
      if (rbuf_.size() - rbegin_ < frame) {
        std::memmove(rbuf_.data(), rbuf_.data() + rbegin_, rend_ - rbegin_);
        rend_ -= rbegin_;
        rbegin_ = 0;
        if (rbuf_.size() < frame) rbuf_.resize(frame);
      }
      return;
    }
    auto m =
        decode(h->type, std::span<const std::uint8_t>(rbuf_.data() + rbegin_ + wire::kHeaderSize, h->length));
    rbegin_ += frame;
    if (!m.is_ok()) return reject(m.status());
    on_message_(self, std::move(m).value());
  }
  if (rbegin_ == rend_) rbegin_ = rend_ = 0;
}

void Connection::send(std::vector<std::uint8_t> frame) {
  if (!open_ || rejected_) return;
  queued_bytes_ += frame.size();
  if (queued_bytes_ > kMaxQueuedBytes) {
    // A peer that stopped reading: holding ever more for it would cost
    // our memory, and it is as good as gone.
    return close(peer_failure("control connection to " + name_ + ": " + std::to_string(queued_bytes_) +
                              " bytes queued, the peer is not reading"));
  }
  outq_.push_back(std::move(frame));
  if (!writing_) write_next();
}

void Connection::send_handshake(const Message& m) {
  if (!open_ || rejected_) return;
  hsq_.push_back(encode(m));
  if (!writing_) write_next();
}

void Connection::open_gate() {
  gated_ = false;
  if (!writing_) write_next();
}

// Everything that may go out goes in one gathered write: handshake frames
// first, the rest once the gate is open.
void Connection::write_next() {
  if (hsq_.empty() && (gated_ || outq_.empty())) {
    writing_ = false;
    if (closing_) close(close_reason_);
    return;
  }
  writing_ = true;
  inflight_.clear();
  while (!hsq_.empty() && inflight_.size() < kMaxBatch) {
    inflight_.push_back(std::move(hsq_.front()));
    hsq_.pop_front();
  }
  while (!gated_ && !outq_.empty() && inflight_.size() < kMaxBatch) {
    queued_bytes_ -= outq_.front().size();
    inflight_.push_back(std::move(outq_.front()));
    outq_.pop_front();
  }
  std::vector<asio::const_buffer> bufs;
  bufs.reserve(inflight_.size());
  for (const auto& f : inflight_) bufs.emplace_back(asio::buffer(f));
  auto self = shared_from_this();
  asio::async_write(sock_, bufs, [this, self](error_code ec, std::size_t) {
    if (!open_) return;
    if (ec) return close(peer_failure("write to " + name_ + " failed: " + ec.message()));
    inflight_.clear();
    if (paused_ && queued_bytes_ <= kPauseReadingBytes / 2) {
      paused_ = false;
      read_header();
    }
    write_next();
  });
}

void Connection::reject(const Status& why) {
  if (rejected_ || !open_) return;
  // Nothing the peer sent after this is read, and nothing else is sent.
  rejected_ = true;
  LOG_WARN("control: dropping connection from " << name_ << " (rank "
                                                << (peer == kNoRank ? std::string("?") : std::to_string(peer))
                                                << "): " << why.to_string());
  outq_.clear();
  queued_bytes_ = 0;
  hsq_.clear();
  // The error goes through the write queue: a write may be in flight, and
  // Asio allows one outstanding write per socket.
  hsq_.push_back(encode(Error{static_cast<std::uint16_t>(why.code()), why.message()}));
  closing_ = true;
  close_reason_ = why;
  if (!writing_) write_next();
}

void Connection::close_when_flushed() {
  if (!open_) return;
  closing_ = true;
  if (!writing_) close(Status(StatusCode::kCancelled, "closed"));
}

void Connection::close(const Status& why) {
  if (!open_) return;
  open_ = false;
  error_code ec;
  sock_.close(ec);
  outq_.clear();
  if (on_close_) on_close_(shared_from_this(), why);
}

}  // namespace hoplite::control
