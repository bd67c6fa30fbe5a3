// Frame header codec, control message codec and ObjectID.
//
// The decoder faces bytes from the network, so most of this file feeds it
// broken input: every prefix of every message, junk after it, impossible
// enum values, lengths that lie. The only acceptable outcomes are a decoded
// message or a kProtocol Status.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <ostream>
#include <random>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "common/hex.h"
#include "common/wire.h"
#include "control/messages.h"
#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite {

// Readable failure output: 40 hex digits instead of gtest's raw byte dump.
void PrintTo(const ObjectID& id, std::ostream* os) {
  *os << id.hex();
}

namespace {

namespace ctl = control;
using ctl::MsgType;
using Bytes = std::vector<std::uint8_t>;

Bytes Iota(std::size_t n, std::uint8_t first) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(first + i);
  return b;
}

std::span<const std::uint8_t> PayloadOf(const Bytes& frame) {
  return std::span<const std::uint8_t>(frame).subspan(wire::kHeaderSize);
}

Bytes PayloadCopy(const Bytes& frame) {
  return Bytes(frame.begin() + wire::kHeaderSize, frame.end());
}

Bytes EncodePayload(const ctl::Message& m) {
  Bytes b = ctl::encode(m);
  b.erase(b.begin(), b.begin() + wire::kHeaderSize);
  return b;
}

// ------------------------------------------------------------ field access
// The message structs have no operator==; comparing through tuples of their
// fields keeps each comparison in one line and prints every field on failure.

auto Fields(const ctl::Hello& m) {
  return std::tie(m.protocol, m.rank, m.channel, m.nonce);
}
auto Fields(const ctl::Challenge& m) {
  return std::tie(m.rank, m.nonce, m.mac);
}
auto Fields(const ctl::Proof& m) {
  return std::tie(m.mac);
}
auto Fields(const ctl::DiagRequest& m) {
  return std::tie(m.request);
}
auto Fields(const ctl::DiagReply& m) {
  return std::tie(m.request, m.rank, m.world, m.epoch, m.failed, m.objects, m.store_used, m.store_capacity);
}
auto Fields(const ctl::AppMessage& m) {
  return std::tie(m.channel, m.payload);
}
auto Fields(const ctl::Where& m) {
  return std::tie(m.id, m.request, m.requester);
}
auto Fields(const ctl::WhereReply& m) {
  return std::tie(m.id, m.request, m.known, m.has_inline, m.holders);
}
auto Fields(const ctl::HelloAck& m) {
  return std::tie(m.rank);
}
auto Fields(const ctl::Error& m) {
  return std::tie(m.code, m.message);
}
auto Fields(const ctl::PeerInfo& p) {
  return std::tie(p.host, p.control_port, p.transport_address, p.remote_key);
}
auto Fields(const ctl::Barrier& m) {
  return std::tie(m.epoch, m.rank);
}
auto Fields(const ctl::BarrierDone& m) {
  return std::tie(m.epoch);
}
auto Fields(const ctl::Publish& m) {
  return std::tie(m.id, m.request, m.size, m.rank, m.state, m.has_inline, m.inline_data);
}
auto Fields(const ctl::PublishAck& m) {
  return std::tie(m.id, m.request);
}
auto Fields(const ctl::Unpublish& m) {
  return std::tie(m.id, m.rank);
}
auto Fields(const ctl::Lookup& m) {
  return std::tie(m.id, m.request, m.requester, m.must_exist, m.resume, m.after, m.direct);
}
auto Fields(const ctl::Heartbeat& m) {
  return std::tie(m.rank, m.epoch);
}
auto Fields(const ctl::Part& p) {
  return std::tie(p.id, p.holder, p.offset, p.size);
}
void ExpectSameParts(const std::vector<ctl::Part>& a, const std::vector<ctl::Part>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(Fields(a[i]), Fields(b[i])) << "part " << i;
}
void ExpectSame(const ctl::LookupReply& a, const ctl::LookupReply& b) {
  EXPECT_EQ(std::tie(a.id, a.request, a.result, a.size, a.sender, a.inline_data),
            std::tie(b.id, b.request, b.result, b.size, b.sender, b.inline_data));
  ExpectSameParts(a.parts, b.parts);
}
void ExpectSame(const ctl::Rejoin& a, const ctl::Rejoin& b) {
  EXPECT_EQ(a.rank, b.rank);
  EXPECT_EQ(Fields(a.info), Fields(b.info));
}
void ExpectSame(const ctl::RejoinAt& a, const ctl::RejoinAt& b) {
  EXPECT_EQ(a.leader, b.leader);
  EXPECT_EQ(Fields(a.info), Fields(b.info));
}
void ExpectSame(const ctl::PeerUpdate& a, const ctl::PeerUpdate& b) {
  EXPECT_EQ(std::tie(a.rank, a.alive), std::tie(b.rank, b.alive));
  EXPECT_EQ(Fields(a.info), Fields(b.info));
}
void ExpectSame(const ctl::PublishComposite& a, const ctl::PublishComposite& b) {
  EXPECT_EQ(std::tie(a.id, a.request, a.size), std::tie(b.id, b.request, b.size));
  ExpectSameParts(a.parts, b.parts);
}
auto Fields(const ctl::Remove& m) {
  return std::tie(m.id, m.request, m.requester);
}
auto Fields(const ctl::RemoveAck& m) {
  return std::tie(m.id, m.request);
}
auto Fields(const ctl::Delete& m) {
  return std::tie(m.id);
}
auto Fields(const ctl::Watch& m) {
  return std::tie(m.id, m.requester, m.stream);
}
auto Fields(const ctl::Progress& m) {
  return std::tie(m.id, m.present, m.offset, m.size, m.ready, m.stream);
}
auto Fields(const ctl::Unwatch& m) {
  return std::tie(m.id, m.requester, m.stream);
}
auto Fields(const ctl::Locate& m) {
  return std::tie(m.id, m.request, m.requester, m.inline_max, m.partial_ok);
}
auto Fields(const ctl::LocateReply& m) {
  return std::tie(m.id, m.request, m.size, m.holder, m.has_inline, m.inline_data, m.refused);
}
auto Fields(const ctl::Upstream& u) {
  return std::tie(u.id, u.holder, u.offset);
}
auto Fields(const ctl::ReduceDone& m) {
  return std::tie(m.task, m.code, m.message);
}
auto Fields(const ctl::ReduceCancel& m) {
  return std::tie(m.task, m.output);
}
auto Fields(const ctl::ReduceLost& m) {
  return std::tie(m.task, m.failed);
}
auto Fields(const ctl::ReduceRelease& m) {
  return std::tie(m.target);
}

void ExpectSame(const ctl::Register& a, const ctl::Register& b) {
  EXPECT_EQ(a.rank, b.rank);
  EXPECT_EQ(Fields(a.info), Fields(b.info));
}
void ExpectSame(const ctl::Table& a, const ctl::Table& b) {
  EXPECT_EQ(std::tie(a.failed, a.barrier), std::tie(b.failed, b.barrier));
  ASSERT_EQ(a.peers.size(), b.peers.size());
  for (std::size_t i = 0; i < a.peers.size(); ++i) {
    EXPECT_EQ(Fields(a.peers[i]), Fields(b.peers[i])) << "peer " << i;
  }
}
void ExpectSame(const ctl::ReduceTask& a, const ctl::ReduceTask& b);
void ExpectSame(const ctl::ReduceRetarget& a, const ctl::ReduceRetarget& b) {
  EXPECT_EQ(std::tie(a.task, a.old_upstream, a.holder), std::tie(b.task, b.old_upstream, b.holder));
  ExpectSame(a.next, b.next);
}
void ExpectSame(const ctl::ReduceTask& a, const ctl::ReduceTask& b) {
  EXPECT_EQ(
      std::tie(a.task, a.coordinator, a.output, a.input, a.input_offset, a.size, a.start, a.op, a.dtype),
      std::tie(b.task, b.coordinator, b.output, b.input, b.input_offset, b.size, b.start, b.op, b.dtype));
  ASSERT_EQ(a.upstreams.size(), b.upstreams.size());
  for (std::size_t i = 0; i < a.upstreams.size(); ++i) {
    EXPECT_EQ(Fields(a.upstreams[i]), Fields(b.upstreams[i])) << "upstream " << i;
  }
  EXPECT_EQ(a.target, b.target);
}
template <typename T>
void ExpectSame(const T& a, const T& b) {
  EXPECT_EQ(Fields(a), Fields(b));
}

// --------------------------------------------------------------- samples

ctl::PeerInfo Peer(const std::string& host, std::uint16_t port, const std::string& addr, Bytes key) {
  ctl::PeerInfo p;
  p.host = host;
  p.control_port = port;
  p.transport_address = addr;
  p.remote_key = std::move(key);
  return p;
}

struct Sample {
  std::string name;
  MsgType type;
  ctl::Message message;
};

// At least one instance of every message type with every field away from its
// default, plus the variants whose layout differs (empty strings, inline or
// not, each lookup result).
std::vector<Sample> Samples() {
  const ObjectID id = ObjectID::from_name("wire-codec-test");
  std::vector<Sample> s;

  auth::Nonce nonce{};
  auth::Mac mac{};
  for (std::size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<std::uint8_t>(i * 7 + 1);
  for (std::size_t i = 0; i < mac.size(); ++i) mac[i] = static_cast<std::uint8_t>(255 - i);
  s.push_back({"Hello", MsgType::kHello, ctl::Hello{7, 3, ctl::Channel::kData, nonce}});
  s.push_back({"HelloTool", MsgType::kHello, ctl::Hello{3, ctl::kNoRank, ctl::Channel::kControl, {}}});
  s.push_back({"Challenge", MsgType::kChallenge, ctl::Challenge{5, nonce, mac}});
  s.push_back({"Proof", MsgType::kProof, ctl::Proof{mac}});
  s.push_back({"DiagRequest", MsgType::kDiagRequest, ctl::DiagRequest{77}});
  s.push_back(
      {"DiagReply", MsgType::kDiagReply, ctl::DiagReply{77, 2, 8, 5, {1, 6}, 12, 1u << 20, 1u << 30}});
  s.push_back({"DiagReplyAllAlive", MsgType::kDiagReply, ctl::DiagReply{78, 0, 1, 0, {}, 0, 0, 1u << 20}});
  s.push_back({"AppMessage", MsgType::kAppMessage, ctl::AppMessage{7, Iota(300, 3)}});
  s.push_back({"AppMessageEmpty", MsgType::kAppMessage, ctl::AppMessage{0, {}}});
  s.push_back({"Where", MsgType::kWhere, ctl::Where{id, 55, 3}});
  s.push_back({"WhereReply", MsgType::kWhereReply, ctl::WhereReply{id, 55, true, false, {0, 4, 7}}});
  s.push_back({"WhereReplyUnknown", MsgType::kWhereReply, ctl::WhereReply{id, 56, false, false, {}}});
  s.push_back({"HelloAck", MsgType::kHelloAck, ctl::HelloAck{41}});
  s.push_back({"Error", MsgType::kError,
               ctl::Error{static_cast<std::uint16_t>(StatusCode::kCapacity), "store full"}});
  s.push_back({"ErrorEmptyMessage", MsgType::kError, ctl::Error{9, ""}});
  s.push_back({"Register", MsgType::kRegister,
               ctl::Register{5, Peer("10.0.0.5", 40123, "tcp://10.0.0.5:40124", Iota(33, 7))}});
  s.push_back({"RegisterEmptyStrings", MsgType::kRegister, ctl::Register{6, Peer("", 1, "", {})}});
  s.push_back({"Table", MsgType::kTable,
               ctl::Table{{Peer("node-a", 5000, "tcp://a:5001", Iota(16, 0)), Peer("", 5002, "", {}),
                           Peer("node-c.example.org", 65535, std::string(300, 'x'), Iota(4096, 3)),
                           Peer("node-d", 1, "ucx:blob", Iota(1, 250))},
                          {},
                          0}});
  s.push_back({"TableOnePeer", MsgType::kTable, ctl::Table{{Peer("solo", 80, "a", {9})}, {}, 0}});
  s.push_back({"TableForARejoiner", MsgType::kTable,
               ctl::Table{{Peer("a", 1, "x", {1}), Peer("b", 2, "y", {2}), Peer("c", 3, "z", {3})},
                          {2, 0},
                          0x0000123456789abcULL}});
  s.push_back({"Barrier", MsgType::kBarrier, ctl::Barrier{0x0123456789abcdefULL, 12}});
  s.push_back({"BarrierDone", MsgType::kBarrierDone, ctl::BarrierDone{0xfedcba9876543210ULL}});

  ctl::Publish inline_pub;
  inline_pub.id = id;
  inline_pub.request = 77;
  inline_pub.size = 300;
  inline_pub.rank = 4;
  inline_pub.state = ctl::LocationState::kComplete;
  inline_pub.has_inline = true;
  inline_pub.inline_data = Iota(300, 11);
  s.push_back({"PublishInline", MsgType::kPublish, inline_pub});

  ctl::Publish empty_inline = inline_pub;
  empty_inline.size = 0;
  empty_inline.inline_data.clear();
  s.push_back({"PublishInlineEmpty", MsgType::kPublish, empty_inline});

  ctl::Publish partial;
  partial.id = ObjectID::from_name("partial");
  partial.request = 0xdeadbeefcafeULL;
  partial.size = 1ULL << 40;
  partial.rank = 65535;
  partial.state = ctl::LocationState::kPartial;
  partial.has_inline = false;
  s.push_back({"PublishPartial", MsgType::kPublish, partial});

  s.push_back({"PublishAck", MsgType::kPublishAck, ctl::PublishAck{id, 123456789}});
  s.push_back({"Unpublish", MsgType::kUnpublish, ctl::Unpublish{id, 17}});
  s.push_back({"Lookup", MsgType::kLookup, ctl::Lookup{id, 99, 8, true, true, 3}});
  s.push_back({"LookupDirect", MsgType::kLookup, ctl::Lookup{id, 98, 8, false, false, 2, true}});

  ctl::LookupReply sender_reply{id, 5, ctl::LookupResult::kSender, 1ULL << 33, 3, {}, {}};
  s.push_back({"LookupReplySender", MsgType::kLookupReply, sender_reply});
  ctl::LookupReply inline_reply{id, 6, ctl::LookupResult::kInline, 64, ctl::kNoRank, Iota(64, 1), {}};
  s.push_back({"LookupReplyInline", MsgType::kLookupReply, inline_reply});
  ctl::LookupReply missing{id, 7, ctl::LookupResult::kNotFound, 0, ctl::kNoRank, {}, {}};
  s.push_back({"LookupReplyNotFound", MsgType::kLookupReply, missing});
  ctl::LookupReply refused{id, 8, ctl::LookupResult::kRefused, 1u << 17, ctl::kNoRank, {}, {}};
  s.push_back({"LookupReplyRefused", MsgType::kLookupReply, refused});

  s.push_back({"Remove", MsgType::kRemove, ctl::Remove{id, 31, 2}});
  s.push_back({"RemoveAck", MsgType::kRemoveAck, ctl::RemoveAck{id, 32}});
  s.push_back({"Delete", MsgType::kDelete, ctl::Delete{id}});
  s.push_back({"Watch", MsgType::kWatch, ctl::Watch{id, 6, 1ULL << 50}});
  s.push_back({"Progress", MsgType::kProgress, ctl::Progress{id, true, 4096, 1 << 20, 65536, 17}});
  s.push_back({"ProgressDone", MsgType::kProgress, ctl::Progress{id, true, 64, 1000, 1000}});
  s.push_back({"Unwatch", MsgType::kUnwatch, ctl::Unwatch{id, 6, 99}});
  s.push_back({"Locate", MsgType::kLocate, ctl::Locate{id, 55, 9, 4096, false}});
  s.push_back({"LocatePartial", MsgType::kLocate, ctl::Locate{id, 58, 9, 0, true}});
  s.push_back({"LocateReply", MsgType::kLocateReply, ctl::LocateReply{id, 56, 1ULL << 35, 4, false, {}}});
  s.push_back({"LocateReplyInline", MsgType::kLocateReply, ctl::LocateReply{id, 57, 3, 4, true, {7, 8, 9}}});
  s.push_back({"LocateReplyRefused", MsgType::kLocateReply,
               ctl::LocateReply{id, 59, 64, ctl::kNoRank, false, {}, true}});

  ctl::ReduceTask task;
  task.task = 0x1122334455667788ULL;
  task.coordinator = 2;
  task.output = ObjectID::from_name("sum");
  task.input = ObjectID::from_name("grad-3");
  task.input_offset = 4096;
  task.size = 1 << 20;
  task.start = 1 << 18;
  task.op = 3;
  task.dtype = 1;
  task.upstreams = {{ObjectID::from_name("grad-1"), 1, 0},
                    {ObjectID::from_name("partial-2"), 5, 1 << 19},
                    {ObjectID::from_name("grad-7"), 7, 64}};
  task.target = ObjectID::from_name("sum-target");
  s.push_back({"ReduceTask", MsgType::kReduceTask, task});
  ctl::ReduceTask leaf = task;
  leaf.upstreams.clear();  // the first position of a chain reduces nothing in
  s.push_back({"ReduceTaskLeaf", MsgType::kReduceTask, leaf});
  ctl::ReduceTask widest = task;
  widest.upstreams.resize(ctl::kMaxUpstreams);
  for (std::uint32_t i = 0; i < ctl::kMaxUpstreams; ++i) {
    widest.upstreams[i] = {ObjectID::from_name("up-" + std::to_string(i)), i, i * 8ULL};
  }
  s.push_back({"ReduceTaskMaxUpstreams", MsgType::kReduceTask, widest});

  s.push_back({"ReduceDone", MsgType::kReduceDone,
               ctl::ReduceDone{9, static_cast<std::uint16_t>(StatusCode::kPeerFailure), "lost 3"}});
  s.push_back({"ReduceDoneOk", MsgType::kReduceDone, ctl::ReduceDone{10, 0, ""}});

  const ObjectID whole = ObjectID::from_name("whole");
  std::vector<ctl::Part> parts = {{ObjectID::from_name("p0"), 0, 0, 100},
                                  {ObjectID::from_name("p1"), 3, 100, 28},
                                  {ObjectID::from_name("p2"), 1, 128, 0}};
  s.push_back({"PublishComposite", MsgType::kPublishComposite, ctl::PublishComposite{whole, 77, 128, parts}});
  ctl::LookupReply composite{whole, 78, ctl::LookupResult::kComposite, 128, ctl::kNoRank, {}, {}};
  composite.parts = parts;
  s.push_back({"LookupReplyComposite", MsgType::kLookupReply, composite});
  s.push_back({"Heartbeat", MsgType::kHeartbeat, ctl::Heartbeat{6, 1ULL << 40}});
  ctl::PeerInfo back{"10.78.0.3", 4242, "10.78.0.3:5555", Iota(12, 9)};
  s.push_back({"Rejoin", MsgType::kRejoin, ctl::Rejoin{2, back}});
  s.push_back({"PeerUpdate", MsgType::kPeerUpdate, ctl::PeerUpdate{2, true, back}});
  s.push_back({"PeerUpdateDead", MsgType::kPeerUpdate, ctl::PeerUpdate{5, false, {}}});
  s.push_back({"RejoinAt", MsgType::kRejoinAt, ctl::RejoinAt{1, back}});
  s.push_back({"ReduceCancel", MsgType::kReduceCancel, ctl::ReduceCancel{1ULL << 41, whole}});
  s.push_back({"ReduceRetarget", MsgType::kReduceRetarget,
               ctl::ReduceRetarget{77, ObjectID::from_name("old"), 4, task}});
  s.push_back({"ReduceLost", MsgType::kReduceLost, ctl::ReduceLost{78, 5}});
  s.push_back({"ReduceRelease", MsgType::kReduceRelease, ctl::ReduceRelease{whole}});
  return s;
}

const std::vector<Sample>& AllSamples() {
  static const std::vector<Sample> kSamples = Samples();
  return kSamples;
}

constexpr MsgType kAllTypes[] = {
    MsgType::kHello,
    MsgType::kHelloAck,
    MsgType::kError,
    MsgType::kRegister,
    MsgType::kTable,
    MsgType::kBarrier,
    MsgType::kBarrierDone,
    MsgType::kPublish,
    MsgType::kPublishAck,
    MsgType::kUnpublish,
    MsgType::kLookup,
    MsgType::kLookupReply,
    MsgType::kRemove,
    MsgType::kRemoveAck,
    MsgType::kDelete,
    MsgType::kWatch,
    MsgType::kProgress,
    MsgType::kUnwatch,
    MsgType::kLocate,
    MsgType::kLocateReply,
    MsgType::kReduceTask,
    MsgType::kReduceDone,
    MsgType::kPublishComposite,
    MsgType::kHeartbeat,
    MsgType::kRejoin,
    MsgType::kPeerUpdate,
    MsgType::kReduceCancel,
    MsgType::kReduceRetarget,
    MsgType::kReduceLost,
    MsgType::kChallenge,
    MsgType::kProof,
    MsgType::kDiagRequest,
    MsgType::kDiagReply,
    MsgType::kAppMessage,
    MsgType::kWhere,
    MsgType::kWhereReply,
    MsgType::kRejoinAt,
    MsgType::kReduceRelease,
};
// A message added to the variant must be added here too, or the unknown-type
// and fuzz tests silently stop covering it.
static_assert(std::size(kAllTypes) == std::variant_size_v<ctl::Message>);

std::uint8_t Byte(MsgType t) {
  return static_cast<std::uint8_t>(t);
}

void ExpectProtocolError(std::uint8_t type, std::span<const std::uint8_t> payload, const std::string& what) {
  auto r = ctl::decode(type, payload);
  ASSERT_FALSE(r.is_ok()) << what << ": decoded as " << ctl::type_name(r.value());
  EXPECT_EQ(r.status().code(), StatusCode::kProtocol) << what << ": " << r.status().to_string();
  EXPECT_FALSE(r.status().message().empty()) << what;
}

// ----------------------------------------------------------- round trips

TEST(ControlCodec, SamplesCoverEveryMessageType) {
  std::set<std::size_t> seen;
  for (const auto& s : AllSamples()) seen.insert(s.message.index());
  EXPECT_EQ(seen.size(), std::variant_size_v<ctl::Message>);
}

TEST(ControlCodec, EveryMessageTypeRoundTrips) {
  for (const auto& s : AllSamples()) {
    SCOPED_TRACE(s.name);
    Bytes frame = ctl::encode(s.message);
    ASSERT_GE(frame.size(), wire::kHeaderSize);

    auto h = wire::decode_header(frame.data(), wire::kMaxControlPayload);
    ASSERT_TRUE(h.is_ok()) << h.status().to_string();
    EXPECT_EQ(h->type, Byte(s.type));
    EXPECT_EQ(h->length, frame.size() - wire::kHeaderSize);

    auto decoded = ctl::decode(h->type, PayloadOf(frame));
    ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
    ASSERT_EQ(decoded->index(), s.message.index());
    EXPECT_STREQ(ctl::type_name(decoded.value()), ctl::type_name(s.message));
    std::visit(
        [&](const auto& want) {
          using T = std::decay_t<decltype(want)>;
          ExpectSame(want, std::get<T>(decoded.value()));
        },
        s.message);
    // The encoding is canonical: decoding loses nothing the encoder wrote.
    EXPECT_EQ(ctl::encode(decoded.value()), frame);
  }
}

TEST(ControlCodec, TypeNamesMatchTheVariant) {
  EXPECT_STREQ(ctl::type_name(ctl::Hello{}), "Hello");
  EXPECT_STREQ(ctl::type_name(ctl::Table{}), "Table");
  EXPECT_STREQ(ctl::type_name(ctl::LookupReply{}), "LookupReply");
  EXPECT_STREQ(ctl::type_name(ctl::Unwatch{}), "Unwatch");
}

TEST(ControlCodec, PublishWithoutInlineIgnoresStaleInlineBytes) {
  // has_inline decides the layout; bytes left in inline_data by the caller
  // must not leak onto the wire.
  ctl::Publish p;
  p.id = ObjectID::from_name("x");
  p.size = 10;
  p.rank = 1;
  p.has_inline = false;
  p.inline_data = Iota(10, 0);
  Bytes frame = ctl::encode(p);
  auto d = ctl::decode(Byte(MsgType::kPublish), PayloadOf(frame));
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_TRUE(std::get<ctl::Publish>(d.value()).inline_data.empty());
}

// -------------------------------------------------------- frame header

TEST(FrameHeader, RoundTripsTypeAndLength) {
  std::uint8_t buf[wire::kHeaderSize];
  wire::encode_header(21, 123456, buf);
  EXPECT_EQ(buf[0], 0x50);  // "HP" little-endian
  EXPECT_EQ(buf[1], 0x48);
  EXPECT_EQ(buf[2], wire::kVersion);
  auto h = wire::decode_header(buf, wire::kMaxControlPayload);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->type, 21);
  EXPECT_EQ(h->length, 123456u);
}

TEST(FrameHeader, AcceptsLengthAtTheCap) {
  std::uint8_t buf[wire::kHeaderSize];
  wire::encode_header(Byte(MsgType::kPublish), wire::kMaxControlPayload, buf);
  auto h = wire::decode_header(buf, wire::kMaxControlPayload);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->length, wire::kMaxControlPayload);
}

TEST(FrameHeader, RejectsLengthAboveTheCap) {
  std::uint8_t buf[wire::kHeaderSize];
  for (std::uint32_t len : {wire::kMaxControlPayload + 1, 0xFFFFFFFFu}) {
    wire::encode_header(Byte(MsgType::kPublish), len, buf);
    auto h = wire::decode_header(buf, wire::kMaxControlPayload);
    ASSERT_FALSE(h.is_ok()) << len;
    EXPECT_EQ(h.status().code(), StatusCode::kProtocol);
  }
  // The cap is the caller's: the data plane passes its own.
  wire::encode_header(1, 101, buf);
  EXPECT_EQ(wire::decode_header(buf, 100).status().code(), StatusCode::kProtocol);
  EXPECT_TRUE(wire::decode_header(buf, 101).is_ok());
}

TEST(FrameHeader, RejectsBadMagic) {
  Bytes frame = ctl::encode(ctl::HelloAck{1});
  for (std::size_t at : {0, 1}) {
    Bytes bad = frame;
    bad[at] ^= 0xFF;
    auto h = wire::decode_header(bad.data(), wire::kMaxControlPayload);
    ASSERT_FALSE(h.is_ok());
    EXPECT_EQ(h.status().code(), StatusCode::kProtocol);
  }
  // Byte-swapped magic: a big-endian peer would send exactly this.
  Bytes swapped = frame;
  std::swap(swapped[0], swapped[1]);
  EXPECT_EQ(wire::decode_header(swapped.data(), wire::kMaxControlPayload).status().code(),
            StatusCode::kProtocol);
}

TEST(FrameHeader, RejectsBadVersion) {
  Bytes frame = ctl::encode(ctl::HelloAck{1});
  for (std::uint8_t v : {0, 2, 255}) {
    Bytes bad = frame;
    bad[2] = v;
    auto h = wire::decode_header(bad.data(), wire::kMaxControlPayload);
    ASSERT_FALSE(h.is_ok()) << int{v};
    EXPECT_EQ(h.status().code(), StatusCode::kProtocol);
  }
}

// ------------------------------------------------------ malformed payloads

TEST(ControlCodec, RejectsEveryTruncation) {
  for (const auto& s : AllSamples()) {
    SCOPED_TRACE(s.name);
    Bytes frame = ctl::encode(s.message);
    const Bytes payload = PayloadCopy(frame);
    for (std::size_t len = 0; len < payload.size(); ++len) {
      // A fresh copy of exactly `len` bytes, so a read past the end is an
      // out-of-bounds access a sanitizer build can see.
      Bytes prefix(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(len));
      ExpectProtocolError(Byte(s.type), prefix, "prefix of " + std::to_string(len));
    }
  }
}

TEST(ControlCodec, RejectsTrailingBytes) {
  for (const auto& s : AllSamples()) {
    SCOPED_TRACE(s.name);
    Bytes frame = ctl::encode(s.message);
    for (std::size_t extra : {1, 2, 8, 100}) {
      Bytes payload = PayloadCopy(frame);
      payload.insert(payload.end(), extra, 0);
      ExpectProtocolError(Byte(s.type), payload, std::to_string(extra) + " trailing bytes");
    }
  }
}

TEST(ControlCodec, RejectsUnknownTypes) {
  std::set<std::uint8_t> known;
  for (MsgType t : kAllTypes) known.insert(Byte(t));
  // Any sample's payload: the type alone must make it unacceptable.
  Bytes frame = ctl::encode(ctl::Delete{ObjectID::from_name("d")});
  Bytes payload = PayloadCopy(frame);
  for (std::uint8_t t : {0, 8, 9, 18, 19, 43, 99, 255}) {
    ASSERT_EQ(known.count(t), 0u);
    ExpectProtocolError(t, payload, "type " + std::to_string(t));
    ExpectProtocolError(t, {}, "empty payload of type " + std::to_string(t));
  }
  for (int t = 0; t < 256; ++t) {
    if (known.count(static_cast<std::uint8_t>(t))) continue;
    ExpectProtocolError(static_cast<std::uint8_t>(t), payload, "type " + std::to_string(t));
  }
}

TEST(ControlCodec, RejectsOversizedStringLength) {
  for (std::uint32_t claimed : {0xFFFFFFFFu, ctl::kMaxString + 1}) {
    wire::WireWriter w;
    w.u32(1);
    w.u32(0);
    w.u8(0);
    w.u32(claimed);
    // Enough real bytes for kMaxString + 1, so only the cap can reject it.
    w.buffer().insert(w.buffer().end(), ctl::kMaxString + 1, 'a');
    ExpectProtocolError(Byte(MsgType::kHello), w.buffer(), "token length " + std::to_string(claimed));
  }
}

TEST(ControlCodec, AcceptsStringAtTheCap) {
  ctl::Error e{1, std::string(ctl::kMaxString, 'm')};
  Bytes frame = ctl::encode(e);
  auto d = ctl::decode(Byte(MsgType::kError), PayloadOf(frame));
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(std::get<ctl::Error>(d.value()).message.size(), ctl::kMaxString);
}

TEST(ControlCodec, RejectsOversizedByteStringInPeerInfo) {
  wire::WireWriter w;
  w.u32(3);           // rank
  w.str("host");      // host
  w.u16(80);          // control port
  w.str("addr");      // transport address
  w.u32(0xFFFFFFFF);  // remote key length
  w.u8(1);
  ExpectProtocolError(Byte(MsgType::kRegister), w.buffer(), "remote key length 0xFFFFFFFF");
}

TEST(ControlCodec, RejectsOversizedInlinePayloadLength) {
  const ObjectID id = ObjectID::from_name("big");
  for (std::uint32_t claimed : {0xFFFFFFFFu, ctl::kMaxInline + 1}) {
    wire::WireWriter pub;
    pub.id(id);
    pub.u64(0);
    pub.u64(claimed);
    pub.u32(0);
    pub.u8(1);  // complete
    pub.u8(1);  // has_inline
    pub.u32(claimed);
    pub.u8(0);
    ExpectProtocolError(Byte(MsgType::kPublish), pub.buffer(),
                        "publish inline length " + std::to_string(claimed));

    wire::WireWriter reply;
    reply.id(id);
    reply.u64(0);
    reply.u8(static_cast<std::uint8_t>(ctl::LookupResult::kInline));
    reply.u64(claimed);
    reply.u32(0);
    reply.u32(claimed);
    reply.u8(0);
    ExpectProtocolError(Byte(MsgType::kLookupReply), reply.buffer(),
                        "reply inline length " + std::to_string(claimed));
  }
}

// Rewrites one byte of a valid encoding of `m` and expects rejection.
void ExpectRejectedWithByte(const ctl::Message& m, std::size_t payload_offset, std::uint8_t value,
                            const std::string& what) {
  Bytes frame = ctl::encode(m);
  Bytes payload = PayloadCopy(frame);
  ASSERT_LT(payload_offset, payload.size()) << what;
  payload[payload_offset] = value;
  ExpectProtocolError(frame[3], payload, what + " = " + std::to_string(value));
}

TEST(ControlCodec, RejectsEnumAndBoolOutOfRange) {
  const ObjectID id = ObjectID::from_name("enum");
  constexpr std::size_t kId = ObjectID::kSize;
  // Offsets follow the layouts in messages.cc.
  for (std::uint8_t v : {2, 3, 127, 255}) {
    ExpectRejectedWithByte(ctl::Hello{1, 0, ctl::Channel::kControl, "t"}, 4 + 4, v, "Hello.channel");
    ctl::Publish p;
    p.id = id;
    ExpectRejectedWithByte(p, kId + 8 + 8 + 4, v, "Publish.state");
    ExpectRejectedWithByte(p, kId + 8 + 8 + 4 + 1, v, "Publish.has_inline");
    ExpectRejectedWithByte(ctl::Lookup{id, 1, 2, false, false}, kId + 8 + 4, v, "Lookup.must_exist");
    ExpectRejectedWithByte(ctl::Lookup{id, 1, 2, false, false}, kId + 8 + 4 + 1, v, "Lookup.resume");
    ExpectRejectedWithByte(ctl::Lookup{id, 1, 2, false, false}, kId + 8 + 4 + 1 + 1 + 4, v, "Lookup.direct");
    ExpectRejectedWithByte(ctl::Progress{id, false, 0, 0, 0}, kId, v, "Progress.present");
  }
  // 3 (composite) wants parts after the fields; 4 is kRefused.
  for (std::uint8_t v : {3, 5, 255}) {
    ExpectRejectedWithByte(ctl::LookupReply{id, 1, ctl::LookupResult::kSender, 5, 0, {}, {}}, kId + 8, v,
                           "LookupReply.result");
  }
  ctl::ReduceTask task;
  task.output = id;
  task.input = ObjectID::from_name("in");
  constexpr std::size_t kOp = 8 + 4 + kId + kId + 8 + 8 + 8;
  for (std::uint8_t v : {4, 5, 255}) ExpectRejectedWithByte(task, kOp, v, "ReduceTask.op");
  // Types 4 and 5 are bfloat16 and float16.
  for (std::uint8_t v : {6, 7, 255}) ExpectRejectedWithByte(task, kOp + 1, v, "ReduceTask.dtype");
}

TEST(ControlCodec, RejectsReduceTaskWithTooManyUpstreams) {
  for (std::uint32_t n : {ctl::kMaxUpstreams + 1, 0xFFFFFFFFu}) {
    wire::WireWriter w;
    w.u64(1);
    w.u32(0);
    w.id(ObjectID::from_name("out"));
    w.id(ObjectID::from_name("in"));
    w.u64(0);
    w.u64(64);
    w.u64(0);  // start
    w.u8(0);
    w.u8(0);
    w.u32(n);
    // Real upstream entries for all of them, so only the cap can reject.
    for (std::uint32_t i = 0; i < ctl::kMaxUpstreams + 1; ++i) {
      w.id(ObjectID::from_name("u"));
      w.u32(i);
      w.u64(0);
    }
    ExpectProtocolError(Byte(MsgType::kReduceTask), w.buffer(), std::to_string(n) + " upstreams");
  }
}

TEST(ControlCodec, RejectsReduceTaskStartingPastItsEnd) {
  ctl::ReduceTask task;
  task.size = 64;
  task.start = 65;
  Bytes frame = ctl::encode(task);
  ExpectProtocolError(Byte(MsgType::kReduceTask), PayloadCopy(frame), "start past the end");
  ctl::ReduceRetarget retarget{1, ObjectID::from_name("old"), 2, task};
  frame = ctl::encode(retarget);
  ExpectProtocolError(Byte(MsgType::kReduceRetarget), PayloadCopy(frame), "retarget starting past the end");
}

TEST(ControlCodec, RejectsPublishWhoseInlineSizeDisagrees) {
  for (std::uint64_t size : {0, 9, 11, 1000}) {
    ctl::Publish p;
    p.id = ObjectID::from_name("mismatch");
    p.rank = 1;
    p.has_inline = true;
    p.inline_data = Iota(10, 0);
    p.size = size;
    Bytes frame = ctl::encode(p);
    ExpectProtocolError(Byte(MsgType::kPublish), PayloadOf(frame),
                        "10 inline bytes, size " + std::to_string(size));
  }
}

TEST(ControlCodec, RejectsInlineReplyWhoseSizeDisagrees) {
  ctl::LookupReply r{ObjectID::from_name("m"), 1, ctl::LookupResult::kInline, 5, 0, Iota(4, 0), {}};
  Bytes frame = ctl::encode(r);
  ExpectProtocolError(Byte(MsgType::kLookupReply), PayloadOf(frame), "4 inline bytes, size 5");
}

TEST(ControlCodec, RejectsProgressBeyondSize) {
  ctl::Progress p{ObjectID::from_name("p"), true, 0, 100, 101};
  Bytes frame = ctl::encode(p);
  ExpectProtocolError(Byte(MsgType::kProgress), PayloadOf(frame), "ready 101 of 100");
  p.size = 0;
  p.ready = 0xFFFFFFFFFFFFFFFFULL;
  frame = ctl::encode(p);
  ExpectProtocolError(Byte(MsgType::kProgress), PayloadOf(frame), "ready max of 0");
}

TEST(ControlCodec, RejectsTableWithoutPeers) {
  Bytes frame = ctl::encode(ctl::Table{});
  ExpectProtocolError(Byte(MsgType::kTable), PayloadOf(frame), "0 peers");
}

// A rejoiner's table may list each other rank as failed once; a list as
// long as the table, a rank twice or one out of range is a forgery.
TEST(ControlCodec, RejectsTableFailedListsThatCannotBe) {
  auto frame = [](std::vector<std::uint32_t> failed) {
    wire::WireWriter w;
    w.u32(3);
    for (int i = 0; i < 3; ++i) {
      w.str("h");
      w.u16(1);
      w.str("a");
      w.bytes(std::vector<std::uint8_t>{});
    }
    w.u32(static_cast<std::uint32_t>(failed.size()));
    for (auto f : failed) w.u32(f);
    w.u64(0);
    return w.buffer();
  };
  auto ok = ctl::decode(Byte(MsgType::kTable), frame({2}));
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(std::get<ctl::Table>(ok.value()).failed, std::vector<ctl::Rank>{2});
  ExpectProtocolError(Byte(MsgType::kTable), frame({0, 1, 2}), "every rank failed");
  ExpectProtocolError(Byte(MsgType::kTable), frame({1, 1}), "a rank twice");
  ExpectProtocolError(Byte(MsgType::kTable), frame({3}), "a rank out of range");
  auto wrapped = frame({});
  for (int b = 0; b < 8; ++b) wrapped[wrapped.size() - 1 - b] = 0xff;
  ExpectProtocolError(Byte(MsgType::kTable), wrapped, "a barrier number that would wrap");
}

TEST(ControlCodec, RejectsTableLargerThanTheWorldCap) {
  for (std::uint32_t n : {ctl::kMaxWorld + 1, 0xFFFFFFFFu}) {
    wire::WireWriter w;
    w.u32(n);
    ExpectProtocolError(Byte(MsgType::kTable), w.buffer(), std::to_string(n) + " peers");
  }
  // At the cap the count is fine, but the peers it promises are missing.
  wire::WireWriter w;
  w.u32(ctl::kMaxWorld);
  ExpectProtocolError(Byte(MsgType::kTable), w.buffer(), "kMaxWorld peers, no bytes");
}

// ------------------------------------------------------------------ fuzz

// Whatever the decoder accepts it must have understood completely: encoding
// the result reproduces the input byte for byte.
void CheckDecodeOutcome(std::uint8_t type, const Bytes& payload) {
  auto r = ctl::decode(type, payload);
  if (!r.is_ok()) {
    ASSERT_EQ(r.status().code(), StatusCode::kProtocol) << r.status().to_string();
    return;
  }
  Bytes again = ctl::encode(r.value());
  ASSERT_EQ(again[3], type);
  ASSERT_TRUE(std::equal(again.begin() + wire::kHeaderSize, again.end(), payload.begin(), payload.end()))
      << "type " << int{type} << " decoded non-canonically";
}

TEST(ControlCodecFuzz, RandomPayloadsDecodeOrFailCleanly) {
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<std::size_t> known_type(0, std::size(kAllTypes) - 1);
  std::uniform_int_distribution<int> coin(0, 3);
  std::uniform_int_distribution<std::size_t> short_len(0, 80);
  std::uniform_int_distribution<std::size_t> long_len(0, 600);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    // Mostly real types so the parsers get past the switch.
    std::uint8_t type =
        coin(rng) == 0 ? static_cast<std::uint8_t>(byte(rng)) : Byte(kAllTypes[known_type(rng)]);
    Bytes payload(coin(rng) == 0 ? long_len(rng) : short_len(rng));
    for (auto& b : payload) b = static_cast<std::uint8_t>(byte(rng));
    // Small lengths and 0/1 flags make deeper fields reachable: random u32
    // lengths are almost always huge.
    if (!payload.empty() && coin(rng) == 0) {
      std::uniform_int_distribution<std::size_t> at(0, payload.size() - 1);
      for (int k = 0; k < 4; ++k) payload[at(rng)] = static_cast<std::uint8_t>(coin(rng) & 1);
    }
    SCOPED_TRACE("iteration " + std::to_string(i));
    ASSERT_NO_FATAL_FAILURE(CheckDecodeOutcome(type, payload));
    if (ctl::decode(type, payload).is_ok()) ++accepted;
  }
  // Fixed-length messages of the right size decode; the fuzz should hit some.
  EXPECT_GT(accepted, 0);
}

TEST(ControlCodecFuzz, MutatedValidFramesDecodeOrFailCleanly) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> flips(1, 4);
  const auto& samples = AllSamples();
  std::uniform_int_distribution<std::size_t> pick(0, samples.size() - 1);
  for (int i = 0; i < 20000; ++i) {
    const Sample& s = samples[pick(rng)];
    Bytes payload = EncodePayload(s.message);
    if (payload.empty()) continue;
    std::uniform_int_distribution<std::size_t> at(0, payload.size() - 1);
    for (int k = flips(rng); k > 0; --k) payload[at(rng)] = static_cast<std::uint8_t>(byte(rng));
    SCOPED_TRACE(s.name + ", iteration " + std::to_string(i));
    ASSERT_NO_FATAL_FAILURE(CheckDecodeOutcome(Byte(s.type), payload));
  }
}

// ------------------------------------------------------------ WireReader

TEST(WireReader, ReportsTruncationWithoutMovingPastTheEnd) {
  const Bytes three = {1, 2, 3};
  wire::WireReader r(three);
  std::uint32_t v = 0;
  EXPECT_EQ(r.u32(v).code(), StatusCode::kProtocol);
  EXPECT_EQ(r.remaining(), 3u);
  std::uint16_t h = 0;
  ASSERT_TRUE(r.u16(h).is_ok());
  EXPECT_EQ(h, 0x0201);
  EXPECT_EQ(r.finish().code(), StatusCode::kProtocol);
  std::uint8_t b = 0;
  ASSERT_TRUE(r.u8(b).is_ok());
  EXPECT_TRUE(r.finish().is_ok());
  EXPECT_EQ(r.u8(b).code(), StatusCode::kProtocol);
}

TEST(WireReader, ByteStringLengthBeyondInputIsTruncation) {
  wire::WireWriter w;
  w.u32(10);
  w.u8(1);
  wire::WireReader r(w.buffer());
  Bytes out;
  EXPECT_EQ(r.bytes(out, 100).code(), StatusCode::kProtocol);
  EXPECT_TRUE(out.empty());
}

// -------------------------------------------------------------- ObjectID

TEST(ObjectId, FromNameIsDeterministic) {
  EXPECT_EQ(ObjectID::from_name("weights/layer0"), ObjectID::from_name("weights/layer0"));
  EXPECT_EQ(ObjectID::from_name(""), ObjectID::from_name(""));
  EXPECT_FALSE(ObjectID::from_name("weights/layer0").is_nil());
}

TEST(ObjectId, FromNameSeparatesNames) {
  std::set<ObjectID> ids;
  std::vector<std::string> names = {"", "a", "b", "ab", "ba", "a"};
  names.back().push_back('\0');  // an embedded NUL is part of the name
  for (int i = 0; i < 1000; ++i) names.push_back("object-" + std::to_string(i));
  for (const auto& n : names) ids.insert(ObjectID::from_name(n));
  EXPECT_EQ(ids.size(), names.size());
  // Names differing in one character must differ in every 8-byte lane, not
  // only in the one the hash of the first lane happens to touch.
  ObjectID x = ObjectID::from_name("object-1");
  ObjectID y = ObjectID::from_name("object-2");
  for (std::size_t lane = 0; lane < ObjectID::kSize; lane += 8) {
    std::size_t n = std::min<std::size_t>(8, ObjectID::kSize - lane);
    EXPECT_NE(0, std::memcmp(x.data() + lane, y.data() + lane, n)) << "lane " << lane;
  }
}

TEST(ObjectId, HexRoundTrips) {
  std::array<std::uint8_t, ObjectID::kSize> raw{};
  for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<std::uint8_t>(i * 13 + 5);
  ObjectID known(raw);
  EXPECT_EQ(known.hex(), "05121f2c394653606d7a8794a1aebbc8d5e2effc");
  EXPECT_EQ(known.short_hex(), "05121f2c");

  for (const ObjectID& id : {known, ObjectID(), ObjectID::from_name("hex"), ObjectID::random()}) {
    std::string h = id.hex();
    EXPECT_EQ(h.size(), 2 * ObjectID::kSize);
    auto back = ObjectID::from_hex(h);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_EQ(back.value(), id);
  }
  auto upper = ObjectID::from_hex("05121F2C394653606D7A8794A1AEBBC8D5E2EFFC");
  ASSERT_TRUE(upper.is_ok());
  EXPECT_EQ(upper.value(), known);
}

TEST(ObjectId, FromHexRejectsBadInput) {
  const std::string good = ObjectID::from_name("bad-hex").hex();
  std::vector<std::string> bad = {
      "",
      good.substr(1),
      good + "0",
      "0x" + good.substr(2),
      std::string(40, 'g'),
      std::string(39, '0') + "G",
      " " + good.substr(1),
      good.substr(0, 20) + "-" + good.substr(21),
      std::string(40, '\0'),
  };
  for (const auto& s : bad) {
    auto r = ObjectID::from_hex(s);
    ASSERT_FALSE(r.is_ok()) << "accepted '" << s << "'";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(ObjectId, RandomIdsDiffer) {
  std::set<ObjectID> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(ObjectID::random());
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_EQ(ids.count(ObjectID()), 0u);
}

TEST(ObjectId, HashUsesTheIdBytes) {
  ObjectID a = ObjectID::from_name("h1");
  EXPECT_EQ(std::hash<ObjectID>{}(a), a.hash());
  EXPECT_NE(a.hash(), ObjectID::from_name("h2").hash());
}

}  // namespace
TEST(Hex, RoundTripsEveryByteAndRejectsBadText) {
  std::vector<std::uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<std::uint8_t>(i);
  std::string text = to_hex(all);
  EXPECT_EQ(text.substr(0, 6), "000102");
  EXPECT_EQ(text.substr(text.size() - 4), "feff");
  auto back = from_hex(text);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, all);
  EXPECT_EQ(from_hex("ABcd").value(), (std::vector<std::uint8_t>{0xab, 0xcd}));
  EXPECT_EQ(from_hex("abc").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(from_hex("zz").status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(from_hex("").value().empty());
}

}  // namespace hoplite
