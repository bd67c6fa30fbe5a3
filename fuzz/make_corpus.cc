// Writes the seed corpus: a few valid encodings of every message, in the
// input layout of each target (a kind or type byte, then the bytes; see the
// comment at the top of each target). scripts/fuzz --make-corpus runs it
// into fuzz/corpus/, where the seeds are committed; inputs that found bugs
// sit next to them under names that say so.
//
// Usage: make_corpus DIR (writes DIR/<target>/seed-<name>).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "control/messages.h"
#include "task/task_messages.h"
#include "transport/tcp/data_frames.h"
#include "transport/ucx/am_headers.h"

namespace {

hoplite::auth::Nonce seed_nonce() {
  hoplite::auth::Nonce n{};
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<std::uint8_t>(i + 1);
  return n;
}
hoplite::auth::Mac seed_mac() {
  hoplite::auth::Mac m{};
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<std::uint8_t>(0xf0 ^ i);
  return m;
}

using namespace hoplite;  // NOLINT(google-build-using-namespace)
namespace ctl = control;
namespace tf = transport::tcp::frames;
namespace am = transport::ucx::am;
using Bytes = std::vector<std::uint8_t>;

std::filesystem::path g_root;

void put(const std::string& target, const std::string& name, std::uint8_t kind, const Bytes& body) {
  auto dir = g_root / target;
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / ("seed-" + name), std::ios::binary);
  out.put(static_cast<char>(kind));
  out.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size()));
}

Bytes payload(const Bytes& frame) {
  return Bytes(frame.begin() + wire::kHeaderSize, frame.end());
}

Bytes iota(std::size_t n, std::uint8_t first) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(first + i);
  return b;
}

ctl::PeerInfo tcp_peer(const std::string& host, std::uint16_t port) {
  return {host, port, host + ":" + std::to_string(port + 1),
          tf::encode_region_key({tf::kRegionId, 1u << 30})};
}
ctl::PeerInfo ucx_peer(const std::string& host, std::uint16_t port) {
  return {host, port, "ucx:" + host + ":0a1b2c3d4e5f",
          am::encode_region_key({0x7f0000000000, 1u << 30, iota(24, 1)})};
}

// Every message type at least once, and the variants whose layout differs.
std::vector<std::pair<std::string, ctl::Message>> messages() {
  const ObjectID id = ObjectID::from_name("fuzz-seed");
  const ObjectID whole = ObjectID::from_name("whole");
  std::vector<ctl::Part> parts = {{ObjectID::from_name("p0"), 0, 0, 100},
                                  {ObjectID::from_name("p1"), 3, 100, 28}};
  ctl::ReduceTask task{
      0x1122334455667788ULL,
      2,
      ObjectID::from_name("sum"),
      ObjectID::from_name("grad-3"),
      4096,
      1 << 20,
      1 << 18,
      3,
      1,
      {{ObjectID::from_name("grad-1"), 1, 0}, {ObjectID::from_name("partial-2"), 5, 1 << 19}},
      ObjectID::from_name("sum")};
  ctl::LookupReply composite{whole, 78, ctl::LookupResult::kComposite, 128, ctl::kNoRank, {}, parts};
  return {
      {"hello", ctl::Hello{ctl::kControlProtocol, 3, ctl::Channel::kControl, seed_nonce()}},
      {"hello-data", ctl::Hello{ctl::kControlProtocol, ctl::kNoRank, ctl::Channel::kData, {}}},
      {"challenge", ctl::Challenge{0, seed_nonce(), seed_mac()}},
      {"proof", ctl::Proof{seed_mac()}},
      {"diag-request", ctl::DiagRequest{9}},
      {"diag-reply", ctl::DiagReply{9, 1, 4, 2, {3}, 10, 1u << 20, 1u << 30}},
      {"app-message", ctl::AppMessage{1, iota(40, 2)}},
      {"where", ctl::Where{id, 12, 3}},
      {"where-reply", ctl::WhereReply{id, 12, true, false, {0, 2, 5}}},
      {"hello-ack", ctl::HelloAck{41}},
      {"error", ctl::Error{static_cast<std::uint16_t>(StatusCode::kPeerFailure), "wrong cluster token"}},
      {"register", ctl::Register{5, tcp_peer("10.0.0.5", 40123)}},
      {"table", ctl::Table{{tcp_peer("127.0.0.1", 5000), tcp_peer("127.0.0.1", 5002)}, {}, 0}},
      {"table-ucx",
       ctl::Table{{ucx_peer("node-a", 5000), ucx_peer("node-b", 5000), ucx_peer("node-c", 5000)}, {1}, 7}},
      {"barrier", ctl::Barrier{7, 12}},
      {"barrier-done", ctl::BarrierDone{7}},
      {"publish", ctl::Publish{id, 77, 1ULL << 40, 4, ctl::LocationState::kPartial, false, {}}},
      {"publish-inline", ctl::Publish{id, 78, 16, 4, ctl::LocationState::kComplete, true, iota(16, 11)}},
      {"publish-ack", ctl::PublishAck{id, 77}},
      {"unpublish", ctl::Unpublish{id, 17}},
      {"lookup", ctl::Lookup{id, 99, 8, true, false, ctl::kNoRank}},
      {"lookup-reply", ctl::LookupReply{id, 5, ctl::LookupResult::kSender, 1ULL << 33, 3, {}, {}}},
      {"lookup-reply-inline",
       ctl::LookupReply{id, 6, ctl::LookupResult::kInline, 8, ctl::kNoRank, iota(8, 1), {}}},
      {"lookup-reply-composite", composite},
      {"remove", ctl::Remove{id, 31, 2}},
      {"remove-ack", ctl::RemoveAck{id, 32}},
      {"delete", ctl::Delete{id}},
      {"watch", ctl::Watch{id, 6, 1ULL << 50}},
      {"progress", ctl::Progress{id, true, 4096, 1 << 20, 65536, 17}},
      {"progress-withdrawn", ctl::Progress{id, false, 0, ctl::kWithdrawn, 0, 17}},
      {"unwatch", ctl::Unwatch{id, 6, 99}},
      {"locate", ctl::Locate{id, 55, 9, 4096}},
      {"locate-reply", ctl::LocateReply{id, 56, 1ULL << 35, 4, false, {}}},
      {"locate-reply-inline", ctl::LocateReply{id, 57, 3, 4, true, {7, 8, 9}}},
      {"reduce-task", task},
      {"reduce-done", ctl::ReduceDone{9, static_cast<std::uint16_t>(StatusCode::kPeerFailure), "lost 3"}},
      {"publish-composite", ctl::PublishComposite{whole, 77, 128, parts}},
      {"heartbeat", ctl::Heartbeat{6, 1ULL << 40}},
      {"rejoin", ctl::Rejoin{2, tcp_peer("10.78.0.3", 4242)}},
      {"peer-update", ctl::PeerUpdate{2, true, ucx_peer("10.78.0.3", 4242)}},
      {"rejoin-at", ctl::RejoinAt{1, tcp_peer("10.78.0.2", 4243)}},
      {"reduce-cancel", ctl::ReduceCancel{1ULL << 41, whole}},
      {"reduce-retarget", ctl::ReduceRetarget{77, ObjectID::from_name("old"), 4, task}},
      {"reduce-lost", ctl::ReduceLost{78, 5}},
      {"reduce-release", ctl::ReduceRelease{whole}},
  };
}

void control_seeds() {
  for (const auto& [name, m] : messages()) {
    Bytes f = ctl::encode(m);
    put("control_frames", name, f[3], payload(f));
    if (std::holds_alternative<ctl::Hello>(m)) put("hello", name, 0, payload(f));
    std::uint8_t kind = 0xff;
    if (std::holds_alternative<ctl::Table>(m)) kind = 0;
    if (std::holds_alternative<ctl::Register>(m)) kind = 1;
    if (std::holds_alternative<ctl::Rejoin>(m)) kind = 2;
    if (std::holds_alternative<ctl::PeerUpdate>(m)) kind = 3;
    if (std::holds_alternative<ctl::RejoinAt>(m)) kind = 4;
    if (kind != 0xff) put("table", name, kind, payload(f));
  }
  // The pre-hello stream: a hello, then what a member sends right after it.
  Bytes stream = ctl::encode(ctl::Hello{ctl::kControlProtocol, 1, ctl::Channel::kControl, seed_nonce()});
  for (const ctl::Message& m :
       {ctl::Message{ctl::Proof{seed_mac()}}, ctl::Message{ctl::Register{1, tcp_peer("127.0.0.1", 6000)}},
        ctl::Message{ctl::Heartbeat{1, 3}}}) {
    Bytes f = ctl::encode(m);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  put("hello", "stream", 2, stream);
  put("hello", "stream-hello-only", 2,
      ctl::encode(ctl::Hello{ctl::kControlProtocol, ctl::kNoRank, ctl::Channel::kControl, {}}));
}

void data_plane_seeds() {
  Bytes hello = payload(tf::encode_hello({tf::kProtocol, 3, seed_nonce()}));
  put("tcp_data", "hello", 0, hello);
  put("hello", "data-hello", 1, hello);
  put("hello", "data-challenge", 1, payload(tf::encode_challenge({0, seed_nonce(), seed_mac()})));
  put("hello", "data-proof", 1, payload(tf::encode_proof({seed_mac()})));
  put("tcp_data", "get-request", 1,
      payload(tf::encode_get_request({7, ObjectID::from_name("seed"), 1u << 20, 1u << 16})));
  Bytes head = tf::encode_get_response_head({7, 0, 1u << 16});
  Bytes resp = {0, 0, 0, 0};
  const std::uint32_t frame_length = tf::kGetResponseFixed + (1u << 16);
  std::memcpy(resp.data(), &frame_length, 4);
  resp.insert(resp.end(), head.begin() + wire::kHeaderSize, head.end());
  put("tcp_data", "get-response", 2, resp);
  Bytes refused = {18, 0, 0, 0};
  Bytes refused_head =
      tf::encode_get_response_head({8, static_cast<std::uint16_t>(StatusCode::kInvalidArgument), 0});
  refused.insert(refused.end(), refused_head.begin() + wire::kHeaderSize, refused_head.end());
  put("tcp_data", "get-response-refused", 2, refused);
  put("tcp_data", "error", 3,
      payload(tf::encode_error(static_cast<std::uint16_t>(StatusCode::kPeerFailure), "wrong cluster token")));
  put("tcp_data", "region-key", 4, tf::encode_region_key({tf::kRegionId, 1u << 30}));
  Bytes hdr(wire::kHeaderSize);
  wire::encode_header(tf::kGetRequest, tf::kGetRequestSize, hdr.data());
  put("tcp_data", "header", 5, hdr);

  put("ucx_headers", "get", 0, am::encode_get({5, ObjectID::from_name("seed"), 4096, 1u << 16, 3}));
  put("ucx_headers", "data", 1, am::encode_data({5, 0}));
  put("ucx_headers", "data-refused", 1,
      am::encode_data({6, static_cast<std::uint16_t>(StatusCode::kInvalidArgument)}));
  put("ucx_headers", "region-key", 2, am::encode_region_key({0x7f0000000000, 1u << 30, iota(24, 1)}));
}

}  // namespace

// The task runtime's messages: the input is the payload itself (its first
// byte is the message kind).
void task_seeds() {
  namespace tk = hoplite::task;
  tk::Submit s;
  s.task = (2ull << 48) | 5;
  s.attempt = 1;
  s.result = ObjectID::from_name("task-result");
  s.function = "primes";
  tk::WireArg ref;
  ref.is_ref = true;
  ref.id = ObjectID::from_name("task-arg");
  ref.producer = 3;
  tk::WireArg val;
  val.bytes = iota(8, 1);
  s.args = {ref, val};
  std::vector<std::pair<std::string, tk::TaskMessage>> seeds = {
      {"submit", s},
      {"done", tk::Done{s.task, 1, s.result, 0, "", 4096}},
      {"done-error", tk::Done{s.task, 1, s.result, 1, "task fail on rank 2: bad input", 0}},
      {"failed", tk::Failed{s.result, 6, "task expand on rank 3: lost"}},
  };
  for (const auto& [name, m] : seeds) {
    Bytes b = tk::encode(m);
    put("task_messages", name, b[0], Bytes(b.begin() + 1, b.end()));
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  control_seeds();
  data_plane_seeds();
  task_seeds();
  return 0;
}
