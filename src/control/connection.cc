#include "control/connection.h"

#include "common/log.h"

namespace hoplite::control {

namespace asio = boost::asio;
using boost::system::error_code;

Connection::Connection(asio::ip::tcp::socket sock, MessageHandler on_message, CloseHandler on_close)
    : sock_(std::move(sock)), on_message_(std::move(on_message)), on_close_(std::move(on_close)) {
  error_code ec;
  sock_.set_option(asio::ip::tcp::no_delay(true), ec);
  auto ep = sock_.remote_endpoint(ec);
  name_ = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
}

void Connection::start() {
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

void Connection::read_header() {
  auto self = shared_from_this();
  asio::async_read(sock_, asio::buffer(hdr_), [this, self](error_code ec, std::size_t) {
    if (!open_) return;
    if (ec) return close(peer_failure("control connection to " + name_ + " closed: " + ec.message()));
    // Before the hello, allow only a hello-sized frame: an unauthenticated
    // peer must not make us allocate a large buffer.
    auto h = wire::decode_header(hdr_.data(), authenticated ? wire::kMaxControlPayload : kMaxString + 64);
    if (!h.is_ok()) return reject(h.status());
    std::uint8_t type = h->type;
    body_.resize(h->length);
    asio::async_read(sock_, asio::buffer(body_), [this, self, type](error_code ec2, std::size_t) {
      if (!open_) return;
      if (ec2) return close(peer_failure("control connection to " + name_ + " closed: " + ec2.message()));
      auto m = decode(type, body_);
      if (!m.is_ok()) return reject(m.status());
      on_message_(self, std::move(m).value());
      if (open_) read_header();
    });
  });
}

void Connection::send(std::vector<std::uint8_t> frame) {
  if (!open_) return;
  outq_.push_back(std::move(frame));
  if (!writing_) write_next();
}

void Connection::write_next() {
  if (outq_.empty()) {
    writing_ = false;
    if (closing_) close(Status(StatusCode::kCancelled, "closed after flush"));
    return;
  }
  writing_ = true;
  auto self = shared_from_this();
  asio::async_write(sock_, asio::buffer(outq_.front()), [this, self](error_code ec, std::size_t) {
    if (!open_) return;
    if (ec) return close(peer_failure("write to " + name_ + " failed: " + ec.message()));
    outq_.pop_front();
    write_next();
  });
}

void Connection::reject(const Status& why) {
  LOG_WARN("control: dropping connection from " << name_ << " (rank "
                                                << (peer == kNoRank ? std::string("?") : std::to_string(peer))
                                                << "): " << why.to_string());
  auto self = shared_from_this();
  auto f = std::make_shared<std::vector<std::uint8_t>>(
      encode(Error{static_cast<std::uint16_t>(why.code()), why.message()}));
  // Write the error directly (not behind queued frames) and close after it.
  asio::async_write(sock_, asio::buffer(*f), [self, f, why](error_code, std::size_t) { self->close(why); });
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
