#include "transport/tcp/data_frames.h"

#include <cstring>

#include "common/wire.h"

namespace hoplite::transport::tcp::frames {

std::vector<std::uint8_t> frame(std::uint8_t type, std::span<const std::uint8_t> payload) {
  std::vector<std::uint8_t> out(wire::kHeaderSize + payload.size());
  wire::encode_header(type, static_cast<std::uint32_t>(payload.size()), out.data());
  if (!payload.empty()) std::memcpy(out.data() + wire::kHeaderSize, payload.data(), payload.size());
  return out;
}

std::vector<std::uint8_t> encode_hello(const DataHello& h) {
  wire::WireWriter w;
  w.u32(h.protocol);
  w.u32(h.rank);
  w.fixed(h.nonce);
  return frame(kDataHello, w.buffer());
}

Result<DataHello> decode_hello(std::span<const std::uint8_t> payload) {
  wire::WireReader r(payload);
  DataHello h;
  HOPLITE_RETURN_IF_ERROR(r.u32(h.protocol));
  HOPLITE_RETURN_IF_ERROR(r.u32(h.rank));
  HOPLITE_RETURN_IF_ERROR(r.fixed(h.nonce));
  HOPLITE_RETURN_IF_ERROR(r.finish());
  return h;
}

std::vector<std::uint8_t> encode_challenge(const DataChallenge& c) {
  wire::WireWriter w;
  w.u32(c.rank);
  w.fixed(c.nonce);
  w.fixed(c.mac);
  return frame(kDataChallenge, w.buffer());
}

Result<DataChallenge> decode_challenge(std::span<const std::uint8_t> payload) {
  wire::WireReader r(payload);
  DataChallenge c;
  HOPLITE_RETURN_IF_ERROR(r.u32(c.rank));
  HOPLITE_RETURN_IF_ERROR(r.fixed(c.nonce));
  HOPLITE_RETURN_IF_ERROR(r.fixed(c.mac));
  HOPLITE_RETURN_IF_ERROR(r.finish());
  return c;
}

std::vector<std::uint8_t> encode_proof(const DataProof& p) {
  wire::WireWriter w;
  w.fixed(p.mac);
  return frame(kDataProof, w.buffer());
}

Result<DataProof> decode_proof(std::span<const std::uint8_t> payload) {
  wire::WireReader r(payload);
  DataProof p;
  HOPLITE_RETURN_IF_ERROR(r.fixed(p.mac));
  HOPLITE_RETURN_IF_ERROR(r.finish());
  return p;
}

std::vector<std::uint8_t> encode_hello_ack(std::uint32_t rank) {
  wire::WireWriter w;
  w.u32(rank);
  return frame(kDataHelloAck, w.buffer());
}

std::vector<std::uint8_t> encode_get_request(const GetRequest& g) {
  wire::WireWriter w;
  w.u64(g.request);
  w.id(g.object);
  w.u64(g.offset);
  w.u64(g.length);
  return frame(kGetRequest, w.buffer());
}

Result<GetRequest> decode_get_request(std::span<const std::uint8_t> payload) {
  wire::WireReader r(payload);
  GetRequest g;
  HOPLITE_RETURN_IF_ERROR(r.u64(g.request));
  HOPLITE_RETURN_IF_ERROR(r.id(g.object));
  HOPLITE_RETURN_IF_ERROR(r.u64(g.offset));
  HOPLITE_RETURN_IF_ERROR(r.u64(g.length));
  HOPLITE_RETURN_IF_ERROR(r.finish());
  return g;
}

std::vector<std::uint8_t> encode_get_response_head(const GetResponseHead& g) {
  wire::WireWriter w;
  w.u64(g.request);
  w.u16(g.status);
  w.u64(g.length);
  std::vector<std::uint8_t> f(wire::kHeaderSize + w.buffer().size());
  // The frame covers the raw bytes that follow; the caller bounds `length`
  // by its chunk limit, far below 4 GiB.
  wire::encode_header(kGetResponse, static_cast<std::uint32_t>(kGetResponseFixed + g.length), f.data());
  std::memcpy(f.data() + wire::kHeaderSize, w.buffer().data(), w.buffer().size());
  return f;
}

Result<GetResponseHead> decode_get_response_head(std::span<const std::uint8_t> fixed) {
  wire::WireReader r(fixed);
  GetResponseHead g;
  HOPLITE_RETURN_IF_ERROR(r.u64(g.request));
  HOPLITE_RETURN_IF_ERROR(r.u16(g.status));
  HOPLITE_RETURN_IF_ERROR(r.u64(g.length));
  HOPLITE_RETURN_IF_ERROR(r.finish());
  return g;
}

bool response_length_matches(const GetResponseHead& g, std::uint64_t frame_length) {
  return frame_length >= kGetResponseFixed && frame_length - kGetResponseFixed == g.length;
}

std::vector<std::uint8_t> encode_error(std::uint16_t code, const std::string& message) {
  wire::WireWriter w;
  w.u16(code);
  w.str(message);
  return frame(kDataError, w.buffer());
}

Result<DataError> decode_error(std::span<const std::uint8_t> payload) {
  wire::WireReader r(payload);
  DataError e;
  HOPLITE_RETURN_IF_ERROR(r.u16(e.code));
  HOPLITE_RETURN_IF_ERROR(r.str(e.message, kMaxHello));
  HOPLITE_RETURN_IF_ERROR(r.finish());
  return e;
}

std::vector<std::uint8_t> encode_region_key(const RegionKey& k) {
  wire::WireWriter w;
  w.u32(k.region);
  w.u64(k.length);
  return std::move(w.buffer());
}

Result<RegionKey> decode_region_key(std::span<const std::uint8_t> key) {
  wire::WireReader r(key);
  RegionKey k;
  HOPLITE_RETURN_IF_ERROR(r.u32(k.region));
  HOPLITE_RETURN_IF_ERROR(r.u64(k.length));
  if (k.region != kRegionId) return protocol_error("tcp remote key for an unknown region");
  // Trailing bytes mean the key was made by something else (the UCX key is
  // longer and checked the same way): found by fuzz/tcp_data.
  HOPLITE_RETURN_IF_ERROR(r.finish());
  return k;
}

}  // namespace hoplite::transport::tcp::frames
