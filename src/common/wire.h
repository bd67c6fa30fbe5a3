// Frame codec shared by the control plane and the TCP data plane.
//
// Every frame is an 8-byte header followed by `length` payload bytes:
//   magic u16 (0x4850, "HP" little-endian) | version u8 | type u8 | length u32
// All integers are little-endian. docs/wire-protocol.md is the byte-by-byte
// reference. WireWriter appends; WireReader consumes with bounds checks and
// reports truncation as a protocol Status instead of reading past the end.
//
// Thread-safety: value types, no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite::wire {

inline constexpr std::uint16_t kMagic = 0x4850;
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kHeaderSize = 8;
// A control frame never needs more than an inline object plus a little; the
// cap stops a corrupt length from making a node allocate gigabytes.
inline constexpr std::uint32_t kMaxControlPayload = 8u << 20;

struct FrameHeader {
  std::uint8_t type = 0;
  std::uint32_t length = 0;
};

void encode_header(std::uint8_t type, std::uint32_t length, std::uint8_t out[kHeaderSize]);
// Validates magic, version and the length cap; the type is checked by the
// caller, which knows its own message set.
[[nodiscard]] Result<FrameHeader> decode_header(const std::uint8_t in[kHeaderSize], std::uint32_t max_length);

// A status code off the wire: values this build does not know (a newer or
// a hostile peer) become kProtocol instead of an enum value out of range.
inline StatusCode status_code(std::uint16_t v) {
  return v <= static_cast<std::uint16_t>(StatusCode::kInternal) ? static_cast<StatusCode>(v)
                                                                : StatusCode::kProtocol;
}

class WireWriter {
 public:
  void u8(std::uint8_t v) { buf_.push_back(v); }
  void u16(std::uint16_t v) { put(&v, sizeof v); }
  void u32(std::uint32_t v) { put(&v, sizeof v); }
  void u64(std::uint64_t v) { put(&v, sizeof v); }
  void id(const ObjectID& v) { put(v.data(), ObjectID::kSize); }
  // u32 length, then the bytes.
  void bytes(std::span<const std::uint8_t> b) {
    u32(static_cast<std::uint32_t>(b.size()));
    put(b.data(), b.size());
  }
  void str(const std::string& s) { bytes({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}); }
  // Fixed-size field (nonces, MACs): no length prefix.
  void fixed(std::span<const std::uint8_t> b) { put(b.data(), b.size()); }
  std::vector<std::uint8_t>& buffer() { return buf_; }

 private:
  // The code base targets little-endian hosts only (x86-64, aarch64); a
  // static_assert in wire.cc guards that assumption.
  void put(const void* p, std::size_t n) {
    auto* b = static_cast<const std::uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  std::vector<std::uint8_t> buf_;
};

class WireReader {
 public:
  explicit WireReader(std::span<const std::uint8_t> in) : in_(in) {}

  [[nodiscard]] Status u8(std::uint8_t& v) { return get(&v, sizeof v); }
  [[nodiscard]] Status u16(std::uint16_t& v) { return get(&v, sizeof v); }
  [[nodiscard]] Status u32(std::uint32_t& v) { return get(&v, sizeof v); }
  [[nodiscard]] Status u64(std::uint64_t& v) { return get(&v, sizeof v); }
  [[nodiscard]] Status id(ObjectID& v);
  [[nodiscard]] Status bytes(std::vector<std::uint8_t>& v, std::uint32_t max_len);
  [[nodiscard]] Status str(std::string& v, std::uint32_t max_len);
  [[nodiscard]] Status fixed(std::span<std::uint8_t> out) { return get(out.data(), out.size()); }
  // Trailing bytes mean the peer and we disagree about the message layout.
  [[nodiscard]] Status finish() const;
  std::size_t remaining() const { return in_.size() - pos_; }

 private:
  [[nodiscard]] Status get(void* p, std::size_t n);
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
};

}  // namespace hoplite::wire
