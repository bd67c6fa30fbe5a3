// Shared by the libFuzzer targets in this folder (scripts/fuzz builds them;
// docs/fuzzing.md says what each covers).
//
// A target fails by abort(): libFuzzer saves the input and reports it as a
// crash, the same as a sanitizer finding. Besides crashes the targets check
// that the codecs are symmetric: whatever a decoder accepts, its encoder
// writes back byte for byte (so there is one encoding per message and no
// field the decoder reads but the encoder drops), and that encoding decodes
// again to the same bytes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "common/wire.h"
#include "control/messages.h"
#include "hoplite/status.h"

namespace hoplite::fuzz {

using Bytes = std::span<const std::uint8_t>;

[[noreturn]] inline void fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
  std::abort();
}

#define FUZZ_CHECK(cond)                                           \
  do {                                                             \
    if (!(cond)) ::hoplite::fuzz::fail(__FILE__, __LINE__, #cond); \
  } while (0)

inline bool same(Bytes a, Bytes b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// A complete frame's payload, after checking that its header is one a
// receiver accepts and names `type`.
inline Bytes checked_payload(const std::vector<std::uint8_t>& frame, std::uint8_t type) {
  FUZZ_CHECK(frame.size() >= wire::kHeaderSize);
  auto h = wire::decode_header(frame.data(), ~0u);
  FUZZ_CHECK(h.is_ok());
  FUZZ_CHECK(h->type == type);
  FUZZ_CHECK(h->length == frame.size() - wire::kHeaderSize);
  return Bytes(frame).subspan(wire::kHeaderSize);
}

// Every decoder reports bad bytes as a protocol error, never as anything
// that recovery code would treat as a local fault or a dead peer.
inline void check_rejection(const Status& st) {
  FUZZ_CHECK(!st.is_ok());
  FUZZ_CHECK(st.code() == StatusCode::kProtocol);
}

// control::decode of `payload` as a message of `type`; when it decodes, the
// round trip encode -> decode -> encode must reproduce the payload exactly.
// Works for every type byte, so message types added later are covered by
// the targets that feed the type from their input.
inline std::optional<control::Message> control_round_trip(std::uint8_t type, Bytes payload) {
  auto m = control::decode(type, payload);
  if (!m.is_ok()) {
    check_rejection(m.status());
    return std::nullopt;
  }
  FUZZ_CHECK(control::type_name(m.value()) != nullptr);
  const std::vector<std::uint8_t> e1 = control::encode(m.value());
  Bytes p1 = checked_payload(e1, type);
  if (!same(p1, payload)) fail(__FILE__, __LINE__, "encode(decode(x)) != x: the codec is not symmetric");
  auto m2 = control::decode(type, p1);
  FUZZ_CHECK(m2.is_ok());
  FUZZ_CHECK(m2.value().index() == m.value().index());
  const std::vector<std::uint8_t> e2 = control::encode(m2.value());
  FUZZ_CHECK(e1 == e2);
  return std::move(m).value();
}

// The header codec on 8 arbitrary bytes: accepted headers say what the
// bytes say and stay within the cap, and re-encode to the same bytes.
inline void header_check(const std::uint8_t* in, std::uint32_t cap) {
  auto h = wire::decode_header(in, cap);
  if (!h.is_ok()) return check_rejection(h.status());
  FUZZ_CHECK(h->type == in[3]);
  FUZZ_CHECK(h->length <= cap);
  std::uint8_t again[wire::kHeaderSize];
  wire::encode_header(h->type, h->length, again);
  FUZZ_CHECK(std::memcmp(again, in, wire::kHeaderSize) == 0);
}

}  // namespace hoplite::fuzz
