// The handshake: what a peer that has not authenticated yet can make a node
// decode.
//
// Input: mode u8, then
//   mode 0: a control Hello payload (control::decode, round trip);
//   mode 1: a data-plane hello payload (tcp frames::decode_hello, round trip);
//   mode 2: the byte stream a dialer sends on a control connection before
//           it is authenticated: frames are cut as Connection::parse_frames
//           cuts them (header checked at the pre-hello cap) and each payload
//           is decoded under its own type byte, so the challenge-response's
//           Challenge and Proof are reached as well as Hello.
#include "fuzz/fuzz_common.h"
#include "transport/tcp/data_frames.h"

namespace {

using namespace hoplite;  // NOLINT(google-build-using-namespace)
namespace frames = transport::tcp::frames;

constexpr std::uint32_t kPreAuthCap = control::kMaxString + 64;

void control_hello(fuzz::Bytes payload) {
  auto m = fuzz::control_round_trip(static_cast<std::uint8_t>(control::MsgType::kHello), payload);
  if (!m) return;
  const auto& h = std::get<control::Hello>(*m);
  FUZZ_CHECK(static_cast<std::uint8_t>(h.channel) <= 1);
}

void data_hello(fuzz::Bytes payload) {
  // The server reads at most kMaxHello payload bytes before the hello.
  if (payload.size() > frames::kMaxHello) return;
  auto h = frames::decode_hello(payload);
  if (!h.is_ok()) return fuzz::check_rejection(h.status());
  auto e1 = frames::encode_hello(h.value());
  fuzz::Bytes p1 = fuzz::checked_payload(e1, frames::kDataHello);
  FUZZ_CHECK(fuzz::same(p1, payload));
  auto h2 = frames::decode_hello(p1);
  FUZZ_CHECK(h2.is_ok());
  FUZZ_CHECK(h2->protocol == h->protocol && h2->rank == h->rank && h2->nonce == h->nonce);
  // The challenge and proof have fixed layouts: whatever decodes as one
  // re-encodes to the same bytes.
  if (auto c = frames::decode_challenge(payload); c.is_ok()) {
    FUZZ_CHECK(fuzz::same(fuzz::checked_payload(frames::encode_challenge(c.value()), frames::kDataChallenge),
                          payload));
  } else {
    fuzz::check_rejection(c.status());
  }
  if (auto p = frames::decode_proof(payload); p.is_ok()) {
    FUZZ_CHECK(
        fuzz::same(fuzz::checked_payload(frames::encode_proof(p.value()), frames::kDataProof), payload));
  } else {
    fuzz::check_rejection(p.status());
  }
}

void pre_auth_stream(fuzz::Bytes in) {
  while (in.size() >= wire::kHeaderSize) {
    auto h = wire::decode_header(in.data(), kPreAuthCap);
    if (!h.is_ok()) return fuzz::check_rejection(h.status());
    if (in.size() - wire::kHeaderSize < h->length) return;  // incomplete: the node waits for more
    auto m = fuzz::control_round_trip(h->type, in.subspan(wire::kHeaderSize, h->length));
    if (!m) return;  // rejected: the connection closes
    in = in.subspan(wire::kHeaderSize + h->length);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  fuzz::Bytes rest(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: control_hello(rest); break;
    case 1: data_hello(rest); break;
    default: pre_auth_stream(rest); break;
  }
  return 0;
}
