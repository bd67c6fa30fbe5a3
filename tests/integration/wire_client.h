// WireClient: a small hostile peer for the tests, speaking the wire format
// of docs/wire-protocol.md with plain POSIX sockets.
//
// Frames are built byte by byte here, not with the runtime's codec, so the
// tests check the documented bytes. Only the handshake's MAC comes from
// auth::Key (HMAC-SHA256 is not worth writing twice): a client that holds
// the token can authenticate as any rank it likes, which is what the
// identity tests need.
//
// Ownership: owns its socket. Thread-safety: one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite::itest {

// Little-endian field writer for hand-made payloads.
class Bytes {
 public:
  Bytes& u8(std::uint8_t v) { return put(&v, 1); }
  Bytes& u16(std::uint16_t v) { return put(&v, 2); }  // hosts are little-endian, as the wire
  Bytes& u32(std::uint32_t v) { return put(&v, 4); }
  Bytes& u64(std::uint64_t v) { return put(&v, 8); }
  Bytes& id(const ObjectID& v) { return put(v.data(), ObjectID::kSize); }
  Bytes& str(const std::string& s) {
    u32(static_cast<std::uint32_t>(s.size()));
    return put(s.data(), s.size());
  }
  Bytes& raw(const std::vector<std::uint8_t>& b) { return put(b.data(), b.size()); }
  Bytes& put(const void* p, std::size_t n);
  const std::vector<std::uint8_t>& get() const { return v_; }

 private:
  std::vector<std::uint8_t> v_;
};

inline constexpr std::uint8_t kControlHello = 1;
inline constexpr std::uint8_t kControlHelloAck = 2;
inline constexpr std::uint8_t kControlError = 3;
inline constexpr std::uint8_t kControlChallenge = 34;
inline constexpr std::uint8_t kControlProof = 35;
inline constexpr std::uint32_t kControlProtocol =
    6;  // written out: the client speaks the documented wire format
inline constexpr std::uint8_t kDataHello = 0x40;
inline constexpr std::uint8_t kDataHelloAck = 0x41;
inline constexpr std::uint8_t kDataGetRequest = 0x42;
inline constexpr std::uint8_t kDataError = 0x43;
inline constexpr std::uint8_t kDataGetResponse = 0x44;
inline constexpr std::uint8_t kDataChallenge = 0x45;
inline constexpr std::uint8_t kDataProof = 0x46;
inline constexpr std::uint32_t kDataProtocol = 2;
inline constexpr std::uint32_t kNotAMember = 0xffffffffu;

std::vector<std::uint8_t> header(std::uint8_t type, std::uint32_t length, std::uint8_t version = 1);
std::vector<std::uint8_t> frame(std::uint8_t type, const Bytes& payload);

// A connected socket to "host:port", or -1.
int dial(const std::string& address);
// MSG_NOSIGNAL: the node may hang up first, which must not kill the prober.
bool send_all(int fd, const std::vector<std::uint8_t>& bytes);

struct Reply {
  std::vector<std::uint8_t> bytes;
  bool closed = false;  // EOF or reset: the node hung up
};
// Reads until the peer hangs up, `want` bytes arrived (0: no limit), or
// `timeout` passes.
Reply read_reply(int fd, std::chrono::milliseconds timeout, std::size_t want = 0);
// The type of the first frame in `bytes`, or -1.
int first_frame_type(const std::vector<std::uint8_t>& bytes);

struct Frame {
  std::uint8_t type = 0;
  std::vector<std::uint8_t> payload;
};

class WireClient {
 public:
  // Dials and runs the challenge-response as `rank` with `token`. The
  // acceptor's MAC is checked (with `token`), so a client with the wrong
  // token fails here after sending a proof the node must refuse.
  [[nodiscard]] static Result<WireClient> control(const std::string& address, const std::string& token,
                                                  std::uint32_t rank);
  [[nodiscard]] static Result<WireClient> data(const std::string& address, const std::string& token,
                                               std::uint32_t rank);
  WireClient(WireClient&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  WireClient& operator=(WireClient&& o) noexcept;
  ~WireClient();

  bool send(const std::vector<std::uint8_t>& f) { return send_all(fd_, f); }
  // The next frame, or nullopt when the node hung up or `timeout` passed.
  std::optional<Frame> next(std::chrono::milliseconds timeout);
  // True once the node has closed the connection (waits up to `timeout`).
  bool closed_within(std::chrono::milliseconds timeout);
  int fd() const { return fd_; }

 private:
  explicit WireClient(int fd) : fd_(fd) {}
  static Result<WireClient> handshake(const std::string& address, const std::string& token,
                                      std::uint32_t rank, bool data_plane);
  int fd_ = -1;
  std::vector<std::uint8_t> buf_;
};

}  // namespace hoplite::itest
