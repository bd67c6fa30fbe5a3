// Hostile and broken peers: garbage and impostors on a node's control and
// data ports while it is serving a transfer, and bootstraps that cannot
// succeed, which must fail within the bootstrap timeout instead of hanging.
//
// The raw probes speak the wire format from docs/wire-protocol.md with plain
// POSIX sockets, so they test the documented bytes rather than our codec.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cluster.h"
#include "hoplite/node.h"
#include "wire_client.h"

namespace hoplite::itest {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMiB = 1u << 20;

// ------------------------------------------------------------ raw probes

// How long a node may take to hang up on a bad peer.
constexpr milliseconds kCloseWait{5000};

// A hello, the node's challenge, then a proof made with `wrong_token`: the
// node must answer with an error frame and hang up. "" if so.
std::string wrong_proof(const std::string& address, bool data_plane, const std::string& wrong_token) {
  int fd = dial(address);
  if (fd < 0) return "cannot connect to " + address;
  std::vector<std::uint8_t> nonce(32, 7);
  send_all(fd, data_plane
                   ? frame(kDataHello, Bytes().u32(kDataProtocol).u32(kNotAMember).raw(nonce))
                   : frame(kControlHello, Bytes().u32(kControlProtocol).u32(kNotAMember).u8(0).raw(nonce)));
  Reply ch = read_reply(fd, kCloseWait, 8 + 68);
  if (first_frame_type(ch.bytes) != (data_plane ? kDataChallenge : kControlChallenge)) {
    ::close(fd);
    return "no challenge after the hello (first frame type " + std::to_string(first_frame_type(ch.bytes)) +
           ")";
  }
  // Whatever we make of the challenge without the token is wrong: here a
  // MAC over it keyed by another token.
  std::vector<std::uint8_t> mac(32);
  for (std::size_t i = 0; i < mac.size(); ++i)
    mac[i] = static_cast<std::uint8_t>(ch.bytes[8 + 4 + i] ^ wrong_token[i % wrong_token.size()]);
  send_all(fd, frame(data_plane ? kDataProof : kControlProof, Bytes().raw(mac)));
  Reply r = read_reply(fd, kCloseWait);
  ::close(fd);
  if (!r.closed) return "still open after a wrong proof";
  if (first_frame_type(r.bytes) != (data_plane ? kDataError : kControlError))
    return "no error frame before the close (type " + std::to_string(first_frame_type(r.bytes)) + ")";
  return {};
}

// Sends `bytes` on a fresh connection and returns "" if the node hangs up
// (after answering with a frame of type `error_type`, when that is >= 0),
// or what went wrong.
std::string expect_hangup(const std::string& address, const std::vector<std::uint8_t>& bytes,
                          int error_type) {
  int fd = dial(address);
  if (fd < 0) return "cannot connect to " + address;
  send_all(fd, bytes);  // a refused send is fine: the node hung up early
  Reply r = read_reply(fd, kCloseWait);
  ::close(fd);
  if (!r.closed) {
    return "connection still open " + std::to_string(kCloseWait.count()) + " ms later (" +
           std::to_string(r.bytes.size()) + " bytes received)";
  }
  if (error_type >= 0 && first_frame_type(r.bytes) != error_type) {
    return "expected an error frame of type " + std::to_string(error_type) + " before the close, got " +
           std::to_string(r.bytes.size()) + " bytes starting with type " +
           std::to_string(first_frame_type(r.bytes));
  }
  return {};
}

// The TCP ports this process listens on, other than the control port in
// `control` ("host:port"): /proc/self/fd names the sockets, /proc/net/tcp
// says which of them listen.
std::vector<std::uint16_t> listening_ports(const std::string& control) {
  std::set<std::string> inodes;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  const auto control_port = static_cast<std::uint16_t>(std::stoi(control.substr(control.rfind(':') + 1)));
  std::vector<std::uint16_t> out;
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, st, queues, tr, retr, uid, timeout, inode;
    f >> sl >> local >> remote >> st >> queues >> tr >> retr >> uid >> timeout >> inode;
    if (st != "0A" || !inodes.count(inode)) continue;
    auto port = static_cast<std::uint16_t>(std::stoul(local.substr(local.find(':') + 1), nullptr, 16));
    if (port != control_port) out.push_back(port);
  }
  return out;
}

// The prober's side of TEST(GarbageTest, ...): every kind of bad input on
// both ports must cost only the offending connection.
int probe_node(const std::string& control, const std::string& data, bool tcp_data_plane,
               const std::vector<std::uint16_t>& ucx_ports) {
  std::mt19937_64 rng(12345);
  std::vector<std::uint8_t> noise(64);
  for (auto& b : noise) b = static_cast<std::uint8_t>(rng());
  noise[0] = 0x00;  // never the magic's first byte, whatever the seed gives

  struct Case {
    const char* name;
    std::string address;
    std::vector<std::uint8_t> bytes;
    int error_type;  // -1: only the hang-up is checked
  };
  std::vector<std::uint8_t> bad_version = header(kControlHello, 4, 2);
  bad_version.resize(bad_version.size() + 4);
  std::vector<std::uint8_t> bad_data_version = header(kDataHello, 4, 2);
  bad_data_version.resize(bad_data_version.size() + 4);
  const std::vector<std::uint8_t> nonce(32, 1);
  const std::vector<Case> cases = {
      {"control: random bytes", control, noise, -1},
      {"control: huge length", control, header(kControlHello, 0xfffffff0u), kControlError},
      {"control: bad version", control, bad_version, -1},
      // Protocol 2 sent the token in the hello; it is not spoken any more.
      {"control: protocol 2 (token in clear)", control,
       frame(kControlHello, Bytes().u32(2).u32(kNotAMember).u8(0).str("test-token")), kControlError},
      // Protocol 3 had no Lookup.direct: its Lookups would not decode.
      {"control: protocol 3", control,
       frame(kControlHello, Bytes().u32(3).u32(kNotAMember).u8(0).raw(nonce)), kControlError},
      {"control: no hello first", control, frame(6, Bytes().u64(1).u32(0)), kControlError},
      {"control: proof without a hello", control, frame(kControlProof, Bytes().raw(nonce)), kControlError},
      {"control: a data hello", control,
       frame(kControlHello, Bytes().u32(kControlProtocol).u32(kNotAMember).u8(1).raw(nonce)), kControlError},
  };
  std::vector<Case> data_cases = {
      {"data: random bytes", data, noise, -1},
      {"data: huge length", data, header(kDataHello, 0xfffffff0u), kDataError},
      {"data: bad version", data, bad_data_version, -1},
      {"data: protocol 1 (token in clear)", data, frame(kDataHello, Bytes().u32(1).u32(2).str("test-token")),
       kDataError},
      {"data: get before the handshake", data, frame(kDataGetRequest, Bytes().u64(1).u64(0).u64(16)),
       kDataError},
  };
  if (!tcp_data_plane) data_cases.clear();
  for (const std::vector<Case>* list : {&cases, static_cast<const std::vector<Case>*>(&data_cases)}) {
    for (const Case& c : *list) {
      std::string why = expect_hangup(c.address, c.bytes, c.error_type);
      if (!why.empty()) FAIL_BODY(std::string(c.name) + ": " + why);
    }
  }
  if (auto why = wrong_proof(control, false, "wrong-token"); !why.empty())
    FAIL_BODY("control: wrong token: " + why);
  if (tcp_data_plane) {
    if (auto why = wrong_proof(data, true, "wrong-token"); !why.empty())
      FAIL_BODY("data: wrong token: " + why);
  }
  // UCX's own listening sockets (its tcp transport's connection
  // establishment) get the same noise: UCX may drop or keep such a
  // connection, but the node must keep serving.
  for (std::uint16_t port : ucx_ports) {
    std::string address = "127.0.0.1:" + std::to_string(port);
    int fd = dial(address);
    if (fd < 0) continue;
    send_all(fd, noise);
    send_all(fd, header(kDataHello, 0xfffffff0u));
    (void)read_reply(fd, milliseconds(200));
    ::close(fd);
  }

  // The same handshake with the right token is accepted, which shows the
  // refusals above were about the content, not a malformed probe.
  {
    ASSIGN_OR_FAIL(WireClient c, WireClient::control(control, "test-token", kNotAMember));
    CHECK_FALSE(c.closed_within(milliseconds(200)));
  }
  // After the handshake, a bad frame costs the connection (an error frame,
  // then the close).
  {
    ASSIGN_OR_FAIL(WireClient c, WireClient::control(control, "test-token", kNotAMember));
    CHECK_TRUE(c.send(frame(6, Bytes().u64(1))));  // a Barrier without its rank
    auto f = c.next(kCloseWait);
    CHECK_TRUE(f.has_value());
    CHECK_EQ(f->type, kControlError);
    CHECK_TRUE(c.closed_within(kCloseWait));
  }
  if (tcp_data_plane) {
    ASSIGN_OR_FAIL(WireClient c, WireClient::data(data, "test-token", 2));
    // A get outside the region is refused with a status; the connection
    // stays usable (docs/wire-protocol.md).
    CHECK_TRUE(
        c.send(frame(kDataGetRequest, Bytes().u64(9).id(ObjectID::from_name("x")).u64(1ull << 60).u64(16))));
    auto g = c.next(kCloseWait);
    CHECK_TRUE(g.has_value());
    CHECK_EQ(g->type, kDataGetResponse);
    CHECK_EQ(g->payload.size(), 18u);
    std::uint16_t status = 0;
    std::memcpy(&status, g->payload.data() + 8, 2);
    CHECK_TRUE(status != 0);
    CHECK_FALSE(c.closed_within(milliseconds(200)));
  }
  return 0;
}

TEST(GarbageTest, BadPeersDoNotDisturbTransfers) {
  const ObjectID busy = ObjectID::from_name("garbage/busy");
  const ObjectID later = ObjectID::from_name("garbage/later");
  constexpr std::uint64_t kSize = 64 * kMiB;
  constexpr std::uint64_t kHalf = kSize / 2;

  int rc = run_cluster(3, [&](Node& node) -> int {
    // Rank 1's transfer is held open across the attack: rank 0 publishes
    // only half of the object until the prober is done.
    ObjectWriter writer;
    ObjectFuture got;
    if (node.rank() == 0) {
      ASSIGN_OR_FAIL(writer, node.create(busy, kSize));
      fill_pattern(writer.data().subspan(0, kHalf), 21, 0);
      CHECK_OK(writer.publish(kHalf));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 1) {
      got = node.get(busy);
      CHECK_TRUE(wait_until([&] { return node.local_progress(busy) >= kHalf; }, kWait));
    }
    CHECK_OK(node.barrier(kWait));
    // Under UCX, rank 0 tells the prober where its UCX listens.
    const ObjectID ports_id = ObjectID::from_name("garbage/ucx-ports");
    const bool tcp = node.transport_name() == "tcp";
    if (node.rank() == 0 && !tcp) {
      std::vector<std::uint16_t> mine = listening_ports(node.control_address(0));
      std::vector<std::byte> bytes(mine.size() * 2);
      std::memcpy(bytes.data(), mine.data(), bytes.size());
      CHECK_OK(node.put(ports_id, bytes));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 2) {
      std::vector<std::uint16_t> ports;
      if (!tcp) {
        ASSIGN_OR_FAIL(ObjectView v, node.get(ports_id).wait(kWait));
        ports.resize(v.size() / 2);
        std::memcpy(ports.data(), v.data(), ports.size() * 2);
        CHECK_TRUE(!ports.empty());
      }
      int probe = probe_node(node.control_address(0), node.data_address(0), tcp, ports);
      if (probe != 0) return probe;
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) {
      fill_pattern(writer.data().subspan(kHalf), 21, kHalf);
      CHECK_OK(writer.seal());
    }
    if (node.rank() == 1) {
      ASSIGN_OR_FAIL(ObjectView view, got.wait(kWait));
      CHECK_PATTERN(view.bytes(), kSize, 21);
      CHECK_EQ(view.source(), 0);
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) CHECK_OK(node.put(later, make_pattern(5 * kMiB + 1, 22)));
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 2) {
      ASSIGN_OR_FAIL(ObjectView view, node.get(later).wait(kWait));
      CHECK_PATTERN(view.bytes(), 5 * kMiB + 1, 22);
      CHECK_EQ(view.source(), 0);
    }
    if (node.rank() == 0) {
      NodeStats stats = node.stats();
      // One wrong token on each plane (the control plane only, under UCX).
      CHECK_TRUE(stats.rejected_connections >= (tcp ? 2u : 1u));
      // The protocol-2 hello at least.
      CHECK_TRUE(stats.protocol_errors >= 1);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// --------------------------------------------------------------- bootstrap

constexpr milliseconds kBootstrap{1000};
// Process start, hwloc topology load and scheduling on a busy 2-core box.
constexpr milliseconds kSlack{2000};

struct Outcome {
  Status status;
  milliseconds elapsed{0};
};

// Node::create with `options`, timed; the node (if any) is destroyed at once.
Outcome try_create(const NodeOptions& options) {
  auto start = Clock::now();
  auto node = Node::create(options);
  Outcome o;
  o.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  if (!node.is_ok()) o.status = node.status();
  return o;
}

NodeOptions bootstrap_options(int rank, int n, const std::string& bootstrap) {
  ClusterOptions c;
  c.bootstrap_timeout = kBootstrap;
  c.store_capacity = 8 * kMiB;
  return make_options(rank, n, bootstrap, c);
}

// The failing side must give up with an error by the bootstrap timeout.
#define CHECK_FAILS_IN_TIME(outcome)                                  \
  do {                                                                \
    CHECK_FALSE((outcome).status.is_ok());                            \
    if ((outcome).elapsed > kBootstrap + kSlack) {                    \
      FAIL_BODY("took " + std::to_string((outcome).elapsed.count()) + \
                " ms to fail: " + (outcome).status.to_string());      \
    }                                                                 \
  } while (0)

TEST(BootstrapTest, UnreachableRankZeroTimesOut) {
  // Nobody listens on the picked port: rank 1 keeps redialling until the
  // deadline, then must report a timeout.
  int rc = run_processes(
      1,
      [](int, const std::string& bootstrap) -> int {
        Outcome o = try_create(bootstrap_options(1, 2, bootstrap));
        CHECK_FAILS_IN_TIME(o);
        CHECK_CODE(o.status, StatusCode::kTimeout);
        CHECK_TRUE(o.elapsed >= kBootstrap - milliseconds(50));
        return 0;
      },
      milliseconds(30000));
  EXPECT_EQ(rc, 0);
}

TEST(BootstrapTest, LoneRankZeroTimesOut) {
  int rc = run_processes(
      1,
      [](int, const std::string& bootstrap) -> int {
        Outcome o = try_create(bootstrap_options(0, 2, bootstrap));
        CHECK_FAILS_IN_TIME(o);
        CHECK_CODE(o.status, StatusCode::kTimeout);
        return 0;
      },
      milliseconds(30000));
  EXPECT_EQ(rc, 0);
}

TEST(BootstrapTest, WorldSizeMismatchFails) {
  // Rank 0 expects two members and completes with them; rank 1 was started
  // for three and must refuse the two-entry table rather than wait.
  int rc = run_processes(
      2,
      [](int rank, const std::string& bootstrap) -> int {
        Outcome o = try_create(bootstrap_options(rank, rank == 0 ? 2 : 3, bootstrap));
        if (rank == 1) {
          CHECK_FAILS_IN_TIME(o);
          CHECK_TRUE(o.status.code() != StatusCode::kTimeout);
        } else if (!o.status.is_ok()) {
          CHECK_TRUE(o.elapsed <= kBootstrap + kSlack);
        }
        return 0;
      },
      milliseconds(30000));
  EXPECT_EQ(rc, 0);
}

TEST(BootstrapTest, RankOutsideRankZerosWorldFails) {
  // Rank 2 of 3 dials a rank 0 started for 2: refused, and rank 0, still
  // missing its rank 1, must time out as well.
  int rc = run_processes(
      2,
      [](int child, const std::string& bootstrap) -> int {
        Outcome o = child == 0 ? try_create(bootstrap_options(0, 2, bootstrap))
                               : try_create(bootstrap_options(2, 3, bootstrap));
        CHECK_FAILS_IN_TIME(o);
        return 0;
      },
      milliseconds(30000));
  EXPECT_EQ(rc, 0);
}

// Messages that name ranks, sent to rank 0 before it has its table (its
// membership view and address book are still empty): a ReduceLost, a
// PeerUpdate, a heartbeat, and a Rejoin, which must be refused with an
// Error frame (a restarted rank that dials too early is told so). Rank 0
// must survive all of them, and the cluster must then form and work.
TEST(BootstrapTest, RankMessagesBeforeTheTableAreHarmless) {
  constexpr std::uint8_t kRejoin = 29, kPeerUpdate = 30, kReduceLost = 33, kHeartbeat = 28;
  int rc = run_processes(
      2,
      [](int child, const std::string& bootstrap) -> int {
        ClusterOptions c;
        c.bootstrap_timeout = milliseconds(20000);
        c.store_capacity = 8 * kMiB;
        if (child == 0) {
          auto node = Node::create(make_options(0, 2, bootstrap, c));
          CHECK_OK(node.status());
          const ObjectID id = ObjectID::from_name("early/after");
          CHECK_OK((*node)->put(id, make_pattern(2 * kMiB, 31)));
          CHECK_OK((*node)->barrier(kWait));
          return 0;
        }
        // Rank 0 listens once its process is up; we authenticate as rank 1.
        std::optional<WireClient> client;
        CHECK_TRUE(wait_until(
            [&] {
              auto c = WireClient::control(bootstrap, "test-token", 1);
              if (c.is_ok()) client.emplace(std::move(c).value());
              return client.has_value();
            },
            milliseconds(20000)));
        const int fd = client->fd();
        // A PeerInfo (docs/wire-protocol.md) with a tcp region key.
        const std::vector<std::uint8_t> key = Bytes().u32(1).u64(8 * kMiB).get();
        Bytes info;
        info.str("127.0.0.1").u16(1).str("127.0.0.1:1").str(std::string(key.begin(), key.end()));
        std::vector<std::uint8_t> batch;
        for (const auto& f :
             {frame(kReduceLost, Bytes().u64(7).u32(1)), frame(kReduceLost, Bytes().u64(8).u32(kNotAMember)),
              frame(kHeartbeat, Bytes().u32(1).u64(0)),
              frame(kPeerUpdate, Bytes().u32(1).u8(1).put(info.get().data(), info.get().size())),
              frame(kPeerUpdate, Bytes().u32(1).u8(0).put(info.get().data(), info.get().size())),
              frame(kRejoin, Bytes().u32(1).put(info.get().data(), info.get().size()))}) {
          for (std::uint8_t byte : f) batch.push_back(byte);
        }
        CHECK_TRUE(send_all(fd, batch));
        Reply r = read_reply(fd, kCloseWait);
        client.reset();
        CHECK_TRUE(r.closed);
        CHECK_EQ(first_frame_type(r.bytes), kControlError);
        // Error: u16 code, str message; it says why.
        CHECK_TRUE(r.bytes.size() >= 14);
        std::uint32_t len = 0;
        std::memcpy(&len, r.bytes.data() + 10, 4);
        CHECK_TRUE(r.bytes.size() >= 14 + len);
        const std::string why(reinterpret_cast<const char*>(r.bytes.data()) + 14, len);
        CHECK_TRUE(why.find("has not formed yet") != std::string::npos);
        // Rank 0 is still there, and the real rank 1 joins it.
        auto node = Node::create(make_options(1, 2, bootstrap, c));
        CHECK_OK(node.status());
        ASSIGN_OR_FAIL(ObjectView v, (*node)->get(ObjectID::from_name("early/after")).wait(kWait));
        CHECK_PATTERN(v.bytes(), 2 * kMiB, 31);
        CHECK_OK((*node)->barrier(kWait));
        return 0;
      },
      milliseconds(60000));
  EXPECT_EQ(rc, 0);
}

TEST(BootstrapTest, WrongTokenFails) {
  int rc = run_processes(
      2,
      [](int rank, const std::string& bootstrap) -> int {
        NodeOptions opts = bootstrap_options(rank, 2, bootstrap);
        if (rank == 1) opts.token = "not-the-cluster-token";
        Outcome o = try_create(opts);
        CHECK_FAILS_IN_TIME(o);
        return 0;
      },
      milliseconds(30000));
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace hoplite::itest
