#include "common/wire.h"

#include <bit>
#include <cstdio>

namespace hoplite::wire {

static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian and the codec copies integers as they are");

void encode_header(std::uint8_t type, std::uint32_t length, std::uint8_t out[kHeaderSize]) {
  std::uint16_t magic = kMagic;
  std::memcpy(out, &magic, 2);
  out[2] = kVersion;
  out[3] = type;
  std::memcpy(out + 4, &length, 4);
}

Result<FrameHeader> decode_header(const std::uint8_t in[kHeaderSize], std::uint32_t max_length) {
  std::uint16_t magic;
  std::memcpy(&magic, in, 2);
  if (magic != kMagic) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "%04x", magic);
    return protocol_error(std::string("bad frame magic 0x") + hex);
  }
  if (in[2] != kVersion) {
    return protocol_error("unsupported protocol version " + std::to_string(in[2]) + " (this node speaks " +
                          std::to_string(kVersion) + ")");
  }
  FrameHeader h;
  h.type = in[3];
  std::memcpy(&h.length, in + 4, 4);
  if (h.length > max_length) {
    return protocol_error("frame length " + std::to_string(h.length) + " exceeds the limit " +
                          std::to_string(max_length));
  }
  return h;
}

Status WireReader::get(void* p, std::size_t n) {
  if (in_.size() - pos_ < n) {
    return protocol_error("truncated message: need " + std::to_string(n) + " bytes at offset " +
                          std::to_string(pos_) + ", have " + std::to_string(in_.size() - pos_));
  }
  std::memcpy(p, in_.data() + pos_, n);
  pos_ += n;
  return {};
}

Status WireReader::id(ObjectID& v) {
  std::uint8_t raw[ObjectID::kSize];
  HOPLITE_RETURN_IF_ERROR(get(raw, sizeof raw));
  v = ObjectID::from_bytes(raw);
  return {};
}

Status WireReader::bytes(std::vector<std::uint8_t>& v, std::uint32_t max_len) {
  std::uint32_t n;
  HOPLITE_RETURN_IF_ERROR(u32(n));
  if (n > max_len) {
    return protocol_error("byte string of " + std::to_string(n) + " exceeds the limit " +
                          std::to_string(max_len));
  }
  if (remaining() < n) return protocol_error("truncated byte string");
  v.assign(in_.data() + pos_, in_.data() + pos_ + n);
  pos_ += n;
  return {};
}

Status WireReader::str(std::string& v, std::uint32_t max_len) {
  std::vector<std::uint8_t> b;
  HOPLITE_RETURN_IF_ERROR(bytes(b, max_len));
  v.assign(b.begin(), b.end());
  return {};
}

Status WireReader::finish() const {
  if (pos_ != in_.size()) {
    return protocol_error(std::to_string(in_.size() - pos_) + " unexpected trailing bytes");
  }
  return {};
}

}  // namespace hoplite::wire
