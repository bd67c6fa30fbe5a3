// The TCP data plane's frames (transport/tcp/data_frames.h), decoded by the
// same functions as the endpoint state machine in tcp_transport.cc.
//
// Input: kind u8, then
//   0: a data hello payload        3: a DataError payload
//   1: a GetRequest payload        4: a region key (the PeerInfo remote key)
//   2: a GetResponse: u32 frame length, then the 18-byte fixed part
//   5: a frame header, under the caps the server (before and after the
//      hello) and the reader (chunk limit + 64) apply
// Every accepted input must round-trip byte for byte.
#include "fuzz/fuzz_common.h"
#include "transport/tcp/data_frames.h"

namespace {

using namespace hoplite;  // NOLINT(google-build-using-namespace)
namespace f = transport::tcp::frames;

constexpr std::uint64_t kMaxGet = 64u << 20;  // TcpOptions::max_get's default

void hello(fuzz::Bytes p) {
  auto h = f::decode_hello(p);
  if (!h.is_ok()) return fuzz::check_rejection(h.status());
  auto e = f::encode_hello(h.value());
  FUZZ_CHECK(fuzz::same(fuzz::checked_payload(e, f::kDataHello), p));
}

void get_request(fuzz::Bytes p) {
  auto g = f::decode_get_request(p);
  if (!g.is_ok()) return fuzz::check_rejection(g.status());
  FUZZ_CHECK(p.size() == f::kGetRequestSize);
  auto e = f::encode_get_request(g.value());
  FUZZ_CHECK(fuzz::same(fuzz::checked_payload(e, f::kGetRequest), p));
}

void get_response(fuzz::Bytes p) {
  if (p.size() < 4) return;
  std::uint32_t frame_length;
  std::memcpy(&frame_length, p.data(), 4);
  fuzz::Bytes fixed = p.subspan(4);
  auto g = f::decode_get_response_head(fixed);
  if (!g.is_ok()) return fuzz::check_rejection(g.status());
  FUZZ_CHECK(fixed.size() == f::kGetResponseFixed);
  const bool matches = f::response_length_matches(g.value(), frame_length);
  // The reader receives `length` bytes into a get's buffer only after this
  // check: it must mean exactly "the frame holds the fixed part and length".
  FUZZ_CHECK(matches == (frame_length >= f::kGetResponseFixed &&
                         std::uint64_t{frame_length} == f::kGetResponseFixed + g->length));
  auto e = f::encode_get_response_head(g.value());
  FUZZ_CHECK(e.size() == wire::kHeaderSize + f::kGetResponseFixed);
  FUZZ_CHECK(fuzz::same(fuzz::Bytes(e).subspan(wire::kHeaderSize), fixed));
  if (matches) {
    auto h = wire::decode_header(e.data(), ~0u);
    FUZZ_CHECK(h.is_ok() && h->type == f::kGetResponse && h->length == frame_length);
  }
}

void error(fuzz::Bytes p) {
  auto m = f::decode_error(p);
  if (!m.is_ok()) return fuzz::check_rejection(m.status());
  auto e = f::encode_error(m->code, m->message);
  FUZZ_CHECK(fuzz::same(fuzz::checked_payload(e, f::kDataError), p));
}

void region_key(fuzz::Bytes p) {
  auto k = f::decode_region_key(p);
  if (!k.is_ok()) return fuzz::check_rejection(k.status());
  FUZZ_CHECK(k->region == f::kRegionId);
  FUZZ_CHECK(fuzz::same(f::encode_region_key(k.value()), p));
}

void header(fuzz::Bytes p) {
  if (p.size() < wire::kHeaderSize) return;
  fuzz::header_check(p.data(), f::kMaxHello);
  fuzz::header_check(p.data(), static_cast<std::uint32_t>(f::kGetRequestSize));
  fuzz::header_check(p.data(), static_cast<std::uint32_t>(kMaxGet + 64));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  fuzz::Bytes rest(data + 1, size - 1);
  switch (data[0] % 6) {
    case 0: hello(rest); break;
    case 1: get_request(rest); break;
    case 2: get_response(rest); break;
    case 3: error(rest); break;
    case 4: region_key(rest); break;
    default: header(rest); break;
  }
  return 0;
}
