// The data planes' frame codecs (transport/tcp/data_frames.h and
// transport/ucx/am_headers.h): what tcp_transport.cc and ucx_transport.cc
// decode from peer bytes. Round trips byte for byte, every truncation and
// every trailing byte rejected as a protocol error, and the checks the
// endpoints rely on (the response length, the region id and kind).

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/wire.h"
#include "hoplite/status.h"
#include "transport/tcp/data_frames.h"
#include "transport/ucx/am_headers.h"

namespace hoplite {
namespace {

namespace tf = transport::tcp::frames;
namespace am = transport::ucx::am;
using Bytes = std::vector<std::uint8_t>;

Bytes Payload(const Bytes& frame, std::uint8_t type) {
  EXPECT_GE(frame.size(), wire::kHeaderSize);
  auto h = wire::decode_header(frame.data(), ~0u);
  EXPECT_TRUE(h.is_ok());
  EXPECT_EQ(h->type, type);
  return Bytes(frame.begin() + wire::kHeaderSize, frame.end());
}

template <typename Decode>
void ExpectEveryTruncationAndTrailerRejected(const Bytes& good, Decode decode, const std::string& what) {
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto r = decode(std::span<const std::uint8_t>(good.data(), n));
    ASSERT_FALSE(r.is_ok()) << what << " truncated to " << n;
    EXPECT_EQ(r.status().code(), StatusCode::kProtocol) << what << " truncated to " << n;
  }
  Bytes longer = good;
  longer.push_back(0);
  auto r = decode(longer);
  ASSERT_FALSE(r.is_ok()) << what << " with a trailing byte";
  EXPECT_EQ(r.status().code(), StatusCode::kProtocol);
}

auth::Nonce TestNonce() {
  auth::Nonce n{};
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<std::uint8_t>(3 * i + 1);
  return n;
}

TEST(TcpDataFrames, HelloRoundTrips) {
  Bytes p = Payload(tf::encode_hello({tf::kProtocol, 7, TestNonce()}), tf::kDataHello);
  EXPECT_EQ(p.size(), 4u + 4u + auth::kNonceSize);
  auto h = tf::decode_hello(p);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->protocol, tf::kProtocol);
  EXPECT_EQ(h->rank, 7u);
  EXPECT_EQ(h->nonce, TestNonce());
  ExpectEveryTruncationAndTrailerRejected(p, tf::decode_hello, "hello");
}

TEST(TcpDataFrames, HelloDecodesAnyProtocolForTheCallerToCheck) {
  // The server answers a wrong protocol with its own message, so the
  // decoder must not reject it as malformed.
  auto h = tf::decode_hello(Payload(tf::encode_hello({99, 1, {}}), tf::kDataHello));
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(h->protocol, 99u);
}

TEST(TcpDataFrames, ChallengeAndProofRoundTrip) {
  auth::Mac mac{};
  mac[0] = 0xaa;
  mac[31] = 0x55;
  Bytes c = Payload(tf::encode_challenge({4, TestNonce(), mac}), tf::kDataChallenge);
  EXPECT_EQ(c.size(), 4u + auth::kNonceSize + auth::kMacSize);
  auto ch = tf::decode_challenge(c);
  ASSERT_TRUE(ch.is_ok());
  EXPECT_EQ(ch->rank, 4u);
  EXPECT_EQ(ch->nonce, TestNonce());
  EXPECT_EQ(ch->mac, mac);
  ExpectEveryTruncationAndTrailerRejected(c, tf::decode_challenge, "challenge");
  Bytes p = Payload(tf::encode_proof({mac}), tf::kDataProof);
  EXPECT_EQ(p.size(), auth::kMacSize);
  EXPECT_EQ(tf::decode_proof(p)->mac, mac);
  ExpectEveryTruncationAndTrailerRejected(p, tf::decode_proof, "proof");
}

TEST(TcpDataFrames, HelloAckCarriesTheRank) {
  Bytes p = Payload(tf::encode_hello_ack(12), tf::kDataHelloAck);
  EXPECT_EQ(p, (Bytes{12, 0, 0, 0}));
}

TEST(TcpDataFrames, GetRequestRoundTrips) {
  const ObjectID id = ObjectID::from_name("frames/get");
  Bytes p = Payload(tf::encode_get_request({1ull << 40, id, 4096, 65536}), tf::kGetRequest);
  ASSERT_EQ(p.size(), tf::kGetRequestSize);
  auto g = tf::decode_get_request(p);
  ASSERT_TRUE(g.is_ok());
  EXPECT_EQ(g->request, 1ull << 40);
  EXPECT_EQ(g->object, id);
  EXPECT_EQ(g->offset, 4096u);
  EXPECT_EQ(g->length, 65536u);
  ExpectEveryTruncationAndTrailerRejected(p, tf::decode_get_request, "get request");
}

TEST(TcpDataFrames, GetResponseHeadCountsTheBytesThatFollow) {
  Bytes f = tf::encode_get_response_head({9, 0, 1000});
  ASSERT_EQ(f.size(), wire::kHeaderSize + tf::kGetResponseFixed);
  auto h = wire::decode_header(f.data(), ~0u);
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(h->type, tf::kGetResponse);
  EXPECT_EQ(h->length, tf::kGetResponseFixed + 1000);
  Bytes fixed(f.begin() + wire::kHeaderSize, f.end());
  auto g = tf::decode_get_response_head(fixed);
  ASSERT_TRUE(g.is_ok());
  EXPECT_EQ(g->request, 9u);
  EXPECT_EQ(g->status, 0u);
  EXPECT_EQ(g->length, 1000u);
  EXPECT_TRUE(tf::response_length_matches(*g, h->length));
  ExpectEveryTruncationAndTrailerRejected(fixed, tf::decode_get_response_head, "get response");
}

TEST(TcpDataFrames, ResponseLengthMustAgreeWithTheFrame) {
  tf::GetResponseHead g{1, 0, 100};
  EXPECT_TRUE(tf::response_length_matches(g, tf::kGetResponseFixed + 100));
  EXPECT_FALSE(tf::response_length_matches(g, tf::kGetResponseFixed + 99));
  EXPECT_FALSE(tf::response_length_matches(g, tf::kGetResponseFixed + 101));
  // A frame shorter than the fixed part must not wrap around to a match.
  tf::GetResponseHead wraps{1, 0, ~0ull};
  EXPECT_FALSE(tf::response_length_matches(wraps, tf::kGetResponseFixed - 1));
  EXPECT_FALSE(tf::response_length_matches(g, 0));
}

TEST(TcpDataFrames, ErrorRoundTrips) {
  Bytes p =
      Payload(tf::encode_error(static_cast<std::uint16_t>(StatusCode::kPeerFailure), "no"), tf::kDataError);
  auto e = tf::decode_error(p);
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->code, static_cast<std::uint16_t>(StatusCode::kPeerFailure));
  EXPECT_EQ(e->message, "no");
  ExpectEveryTruncationAndTrailerRejected(p, tf::decode_error, "error");
}

TEST(TcpDataFrames, RegionKeyRoundTrips) {
  Bytes k = tf::encode_region_key({tf::kRegionId, 1ull << 33});
  EXPECT_EQ(k.size(), 12u);
  auto d = tf::decode_region_key(k);
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->length, 1ull << 33);
  ExpectEveryTruncationAndTrailerRejected(k, tf::decode_region_key, "tcp region key");
}

// Found by fuzz/tcp_data (fuzz/corpus/tcp_data/crash-region-key-trailing-bytes):
// the key decoded with bytes after it, so encode(decode(key)) != key.
TEST(TcpDataFrames, RegionKeyWithTrailingBytesIsRejected) {
  Bytes k = tf::encode_region_key({tf::kRegionId, 0x2a4000000000ull});
  k.push_back(0);
  auto r = tf::decode_region_key(k);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kProtocol);
}

TEST(TcpDataFrames, RegionKeyOfAnotherRegionOrBackendIsRejected) {
  auto r = tf::decode_region_key(tf::encode_region_key({tf::kRegionId + 1, 64}));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kProtocol);
  EXPECT_FALSE(tf::decode_region_key(am::encode_region_key({0x1000, 64, {1, 2, 3}})).is_ok());
}

TEST(UcxAmHeaders, GetHeaderRoundTrips) {
  const ObjectID id = ObjectID::from_name("am/get");
  Bytes h = am::encode_get({5, id, 4096, 1u << 16, 3});
  ASSERT_EQ(h.size(), am::kGetHeaderSize);
  auto g = am::decode_get(h);
  ASSERT_TRUE(g.is_ok());
  EXPECT_EQ(g->id, 5u);
  EXPECT_EQ(g->object, id);
  EXPECT_EQ(g->offset, 4096u);
  EXPECT_EQ(g->length, 1u << 16);
  EXPECT_EQ(g->requester, 3u);
  ExpectEveryTruncationAndTrailerRejected(h, am::decode_get, "ucx get header");
}

TEST(UcxAmHeaders, DataHeaderRoundTrips) {
  Bytes h = am::encode_data({77, static_cast<std::uint16_t>(StatusCode::kInvalidArgument)});
  ASSERT_EQ(h.size(), am::kDataHeaderSize);
  auto d = am::decode_data(h);
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->id, 77u);
  EXPECT_EQ(d->status, static_cast<std::uint16_t>(StatusCode::kInvalidArgument));
  ExpectEveryTruncationAndTrailerRejected(h, am::decode_data, "ucx data header");
}

TEST(UcxAmHeaders, RegionKeyRoundTrips) {
  Bytes k = am::encode_region_key({0x7f0000001000, 1u << 30, {9, 8, 7, 6}});
  auto d = am::decode_region_key(k);
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->base, 0x7f0000001000u);
  EXPECT_EQ(d->length, 1u << 30);
  EXPECT_EQ(d->rkey, (Bytes{9, 8, 7, 6}));
  ExpectEveryTruncationAndTrailerRejected(k, am::decode_region_key, "ucx region key");
}

TEST(UcxAmHeaders, RegionKeyOfTheTcpBackendIsRejected) {
  auto r = am::decode_region_key(tf::encode_region_key({tf::kRegionId, 64}));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kProtocol);
}

TEST(UcxAmHeaders, RkeyAboveTheCapIsRejected) {
  EXPECT_TRUE(am::decode_region_key(am::encode_region_key({0, 1, Bytes(am::kMaxRkey, 1)})).is_ok());
  EXPECT_FALSE(am::decode_region_key(am::encode_region_key({0, 1, Bytes(am::kMaxRkey + 1, 1)})).is_ok());
}

}  // namespace
}  // namespace hoplite
