// Control frames: the frame header codec, then control::decode of a payload
// under a type byte taken from the input, so every message type (and every
// type added later) is reached; each decoded message must round-trip
// (fuzz_common.h).
//
// Input: type u8, then the payload. The first 8 input bytes also go through
// wire::decode_header as they are, under both caps a connection uses.
#include "fuzz/fuzz_common.h"

namespace {

using namespace hoplite;  // NOLINT(google-build-using-namespace)

// Connection::parse_frames: before the hello, frames are capped near a
// hello's size; once authenticated, at the control payload limit.
constexpr std::uint32_t kPreAuthCap = control::kMaxString + 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size >= wire::kHeaderSize) {
    fuzz::header_check(data, kPreAuthCap);
    fuzz::header_check(data, wire::kMaxControlPayload);
  }
  if (size < 1) return 0;
  const std::uint8_t type = data[0];
  fuzz::Bytes payload(data + 1, size - 1);
  // The header a sender makes for this payload passes the receiver's check
  // exactly when the payload is within the cap.
  std::uint8_t hdr[wire::kHeaderSize];
  wire::encode_header(type, static_cast<std::uint32_t>(payload.size()), hdr);
  FUZZ_CHECK(wire::decode_header(hdr, kPreAuthCap).is_ok() == (payload.size() <= kPreAuthCap));
  FUZZ_CHECK(wire::decode_header(hdr, wire::kMaxControlPayload).is_ok());
  (void)fuzz::control_round_trip(type, payload);
  return 0;
}
