// The TCP data plane's frames as pure functions over bytes: the hello, get
// requests, get responses, errors, and the region key a node publishes in
// its PeerInfo. No sockets here: the endpoint state machine in
// tcp_transport.cc reads the bytes and calls these, and fuzz/tcp_data.cc
// drives the same functions with arbitrary input. docs/wire-protocol.md
// ("Data plane") has the layouts.
//
// Every decode_* takes a frame's payload (the bytes after the 8-byte header)
// and either returns the fields or a kProtocol Status; none reads past the
// span it is given. Every encode_* returns a complete frame, header included.
//
// Thread-safety: pure functions over value types.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "auth/handshake.h"
#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite::transport::tcp::frames {

enum DataType : std::uint8_t {
  kDataHello = 0x40,
  kDataHelloAck = 0x41,
  kGetRequest = 0x42,
  kDataError = 0x43,
  kGetResponse = 0x44,
  kDataChallenge = 0x45,
  kDataProof = 0x46,
};
// 2: the hello's token became a challenge-response (auth/handshake.h), and a
// get names its object.
inline constexpr std::uint32_t kProtocol = 2;
inline constexpr std::uint8_t kDataChannel = 1;  // in the handshake's MACs
inline constexpr std::uint32_t kRegionId = 1;
// request u64, object id, offset u64, length u64
inline constexpr std::size_t kGetRequestSize = 24 + ObjectID::kSize;
inline constexpr std::size_t kGetResponseFixed = 18;  // request u64, status u16, length u64
// The largest frame before the handshake completes, also the cap on an
// error's message as the reader decodes it.
inline constexpr std::uint32_t kMaxHello = 4096;

struct DataHello {
  std::uint32_t protocol = kProtocol;
  std::uint32_t rank = 0xffffffffu;
  auth::Nonce nonce{};
};
struct DataChallenge {
  std::uint32_t rank = 0xffffffffu;  // the holder
  auth::Nonce nonce{};
  auth::Mac mac{};
};
struct DataProof {
  auth::Mac mac{};
};
struct GetRequest {
  std::uint64_t request = 0;
  ObjectID object;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};
// The fixed part of a GetResponse; `length` raw bytes follow it on the wire,
// which the reader receives straight into the get's destination.
struct GetResponseHead {
  std::uint64_t request = 0;
  std::uint16_t status = 0;  // a StatusCode; 0 = ok
  std::uint64_t length = 0;
};
struct DataError {
  std::uint16_t code = 0;  // a StatusCode
  std::string message;
};
// What a TcpRegion publishes as its remote key.
struct RegionKey {
  std::uint32_t region = kRegionId;
  std::uint64_t length = 0;
};

// Header + payload.
std::vector<std::uint8_t> frame(std::uint8_t type, std::span<const std::uint8_t> payload);

std::vector<std::uint8_t> encode_hello(const DataHello& h);
// Layout only: the protocol number is the caller's to check.
[[nodiscard]] Result<DataHello> decode_hello(std::span<const std::uint8_t> payload);
std::vector<std::uint8_t> encode_challenge(const DataChallenge& c);
[[nodiscard]] Result<DataChallenge> decode_challenge(std::span<const std::uint8_t> payload);
std::vector<std::uint8_t> encode_proof(const DataProof& p);
[[nodiscard]] Result<DataProof> decode_proof(std::span<const std::uint8_t> payload);

// The reader does not decode the ack (it only waits for it to arrive before
// the responses), so there is no decode_hello_ack.
std::vector<std::uint8_t> encode_hello_ack(std::uint32_t rank);

std::vector<std::uint8_t> encode_get_request(const GetRequest& g);
[[nodiscard]] Result<GetRequest> decode_get_request(std::span<const std::uint8_t> payload);

// The header and the fixed part; the frame length counts the `length` bytes
// that the caller sends after it.
std::vector<std::uint8_t> encode_get_response_head(const GetResponseHead& g);
// `fixed` is the kGetResponseFixed bytes after the header. The frame's
// length must be at least kGetResponseFixed (the reader checks that before
// it reads `fixed`); whether it agrees with `length` is the caller's check,
// made after it has matched the request (response_length_matches).
[[nodiscard]] Result<GetResponseHead> decode_get_response_head(std::span<const std::uint8_t> fixed);
bool response_length_matches(const GetResponseHead& g, std::uint64_t frame_length);

std::vector<std::uint8_t> encode_error(std::uint16_t code, const std::string& message);
[[nodiscard]] Result<DataError> decode_error(std::span<const std::uint8_t> payload);

std::vector<std::uint8_t> encode_region_key(const RegionKey& k);
// The key's layout (exactly, nothing after it) and its region id.
[[nodiscard]] Result<RegionKey> decode_region_key(std::span<const std::uint8_t> key);

}  // namespace hoplite::transport::tcp::frames
