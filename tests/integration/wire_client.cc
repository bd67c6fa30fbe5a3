#include "wire_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "auth/handshake.h"

namespace hoplite::itest {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

Bytes& Bytes::put(const void* p, std::size_t n) {
  // One byte at a time: GCC 12 misreads a range insert of a small local
  // here as an overflow (-Wstringop-overflow) once enough calls inline.
  auto* b = static_cast<const std::uint8_t*>(p);
  for (std::size_t i = 0; i < n; ++i) v_.push_back(b[i]);
  return *this;
}

std::vector<std::uint8_t> header(std::uint8_t type, std::uint32_t length, std::uint8_t version) {
  return Bytes().u16(0x4850).u8(version).u8(type).u32(length).get();
}

std::vector<std::uint8_t> frame(std::uint8_t type, const Bytes& payload) {
  auto f = header(type, static_cast<std::uint32_t>(payload.get().size()));
  f.insert(f.end(), payload.get().begin(), payload.get().end());
  return f;
}

int dial(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr) != 1) return -1;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::vector<std::uint8_t>& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

Reply read_reply(int fd, milliseconds timeout, std::size_t want) {
  Reply r;
  auto deadline = Clock::now() + timeout;
  while (want == 0 || r.bytes.size() < want) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    std::uint8_t buf[4096];
    std::size_t room = want ? std::min(sizeof buf, want - r.bytes.size()) : sizeof buf;
    ssize_t n = ::recv(fd, buf, room, 0);
    if (n <= 0) {
      r.closed = true;
      break;
    }
    r.bytes.insert(r.bytes.end(), buf, buf + n);
  }
  return r;
}

int first_frame_type(const std::vector<std::uint8_t>& bytes) {
  if (bytes.size() < 8 || bytes[0] != 0x50 || bytes[1] != 0x48 || bytes[2] != 1) return -1;
  return bytes[3];
}

WireClient& WireClient::operator=(WireClient&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    buf_ = std::move(o.buf_);
    o.fd_ = -1;
  }
  return *this;
}

WireClient::~WireClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<Frame> WireClient::next(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (buf_.size() >= 8) {
      std::uint32_t len = 0;
      std::memcpy(&len, buf_.data() + 4, 4);
      if (buf_.size() >= 8 + static_cast<std::size_t>(len)) {
        Frame f{buf_[3], std::vector<std::uint8_t>(buf_.begin() + 8, buf_.begin() + 8 + len)};
        buf_.erase(buf_.begin(), buf_.begin() + 8 + len);
        return f;
      }
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    std::uint8_t tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return std::nullopt;
    buf_.insert(buf_.end(), tmp, tmp + n);
  }
}

bool WireClient::closed_within(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    std::uint8_t tmp[4096];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return true;
  }
}

Result<WireClient> WireClient::control(const std::string& address, const std::string& token,
                                       std::uint32_t rank) {
  return handshake(address, token, rank, false);
}

Result<WireClient> WireClient::data(const std::string& address, const std::string& token,
                                    std::uint32_t rank) {
  return handshake(address, token, rank, true);
}

Result<WireClient> WireClient::handshake(const std::string& address, const std::string& token,
                                         std::uint32_t rank, bool data_plane) {
  int fd = dial(address);
  if (fd < 0) return peer_failure("cannot connect to " + address);
  WireClient c(fd);
  const auth::Key key(token);
  const auth::Nonce nonce = auth::fresh_nonce();
  const std::vector<std::uint8_t> nonce_bytes(nonce.begin(), nonce.end());
  if (data_plane) {
    c.send(frame(kDataHello, Bytes().u32(kDataProtocol).u32(rank).raw(nonce_bytes)));
  } else {
    c.send(frame(kControlHello, Bytes().u32(kControlProtocol).u32(rank).u8(0).raw(nonce_bytes)));
  }
  auto ch = c.next(milliseconds(5000));
  if (!ch) return peer_failure("no challenge from " + address);
  if (ch->type != (data_plane ? kDataChallenge : kControlChallenge) || ch->payload.size() != 4 + 32 + 32) {
    return protocol_error("expected a challenge, got frame type " + std::to_string(ch->type));
  }
  auth::Key::Transcript t;
  t.channel = data_plane ? 1 : 0;
  t.dialer = rank;
  std::memcpy(&t.acceptor, ch->payload.data(), 4);
  t.dialer_nonce = nonce;
  std::memcpy(t.acceptor_nonce.data(), ch->payload.data() + 4, 32);
  auth::Mac their{};
  std::memcpy(their.data(), ch->payload.data() + 36, 32);
  const bool node_proved = key.verify(auth::Key::Role::kAcceptor, t, their);
  auth::Mac proof = key.mac(auth::Key::Role::kDialer, t);
  c.send(frame(data_plane ? kDataProof : kControlProof, Bytes().raw({proof.begin(), proof.end()})));
  if (!node_proved) return peer_failure("the node's challenge does not check with our token");
  auto ack = c.next(milliseconds(5000));
  if (!ack) return peer_failure("no hello ack (refused?)");
  if (ack->type != (data_plane ? kDataHelloAck : kControlHelloAck))
    return peer_failure("refused: frame type " + std::to_string(ack->type));
  return c;
}

}  // namespace hoplite::itest
