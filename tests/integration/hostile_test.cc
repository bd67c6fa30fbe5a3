// A hostile peer against real nodes: an impostor holding the bootstrap port,
// a member that forges messages in another rank's name, reads of the arena
// nobody granted, and strangers who connect and never finish a handshake.
// Each case checks what the attack would have done before the fix (a
// token in clear, a rank declared dead, a transfer corrupted, a spinning
// accept loop) does not happen now.

#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster.h"
#include "control/messages.h"
#include "hoplite/node.h"
#include "wire_client.h"

namespace hoplite::itest {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
namespace ctl = control;

constexpr std::uint64_t kMiB = 1u << 20;
constexpr const char* kToken = "test-token";  // make_options' token

// Everything one accepted connection sent, until it closed or `until`.
std::vector<std::uint8_t> drain(int fd, Clock::time_point until) {
  std::vector<std::uint8_t> got;
  while (Clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<long>(left, 1))) <= 0) continue;
    std::uint8_t buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.insert(got.end(), buf, buf + n);
  }
  return got;
}

// The frame types in `bytes` (frames back to back).
std::vector<int> frame_types(const std::vector<std::uint8_t>& bytes) {
  std::vector<int> types;
  std::size_t at = 0;
  while (bytes.size() - at >= 8) {
    std::uint32_t len = 0;
    std::memcpy(&len, bytes.data() + at + 4, 4);
    types.push_back(bytes[at + 3]);
    at += 8 + len;
  }
  return types;
}

// Before: the dialling rank sent the token in its hello and its Register
// right behind it, so whoever held MASTER_ADDR:PORT learnt the token and the
// rank's addresses. Now the hello carries a nonce only, and nothing follows
// until the acceptor proves it holds the token.
TEST(Impostor, HoldingTheBootstrapPortLearnsNothing) {
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(lfd, 16), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string bootstrap = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  const std::string secret = "impostor-test-secret-4711";

  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(lfd);
    NodeOptions o = make_options(1, 2, bootstrap);
    o.token = secret;
    o.bootstrap_timeout = milliseconds(2500);
    auto node = Node::create(o);
    _exit(node.is_ok() ? 1 : 0);  // joining an impostor would be the failure
  }
  std::vector<std::uint8_t> all;
  std::vector<int> types;
  int connections = 0;
  auto until = Clock::now() + milliseconds(2000);
  while (Clock::now() < until) {
    pollfd p{lfd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) continue;
    connections++;
    // Read the hello, answer with a challenge the impostor cannot make
    // right, and record whatever else arrives.
    auto got = drain(fd, Clock::now() + milliseconds(150));
    std::vector<std::uint8_t> fake_mac(32, 0xab), nonce(32, 0x11);
    send_all(fd, frame(kControlChallenge, Bytes().u32(0).raw(nonce).raw(fake_mac)));
    auto rest = drain(fd, Clock::now() + milliseconds(150));
    got.insert(got.end(), rest.begin(), rest.end());
    ::close(fd);
    for (int t : frame_types(got)) types.push_back(t);
    all.insert(all.end(), got.begin(), got.end());
  }
  ::close(lfd);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the node joined an impostor";
  ASSERT_GT(connections, 0) << "the node never dialled";
  const std::string seen(all.begin(), all.end());
  EXPECT_EQ(seen.find(secret), std::string::npos) << "the token crossed the wire";
  ASSERT_FALSE(types.empty());
  for (int t : types) {
    // A hello, and the error the node sends when the challenge fails.
    EXPECT_TRUE(t == kControlHello || t == kControlError)
        << "the node sent frame type " << t << " to an unauthenticated acceptor";
  }
}

ctl::Publish forged_publish(const ObjectID& id, ctl::Rank as) {
  ctl::Publish p;
  p.id = id;
  p.size = 1;
  p.rank = as;
  return p;
}

// An object whose directory shard is not `not_on` in a world of `n`.
ObjectID id_not_sharded_on(const std::string& prefix, std::uint32_t not_on, std::uint32_t n) {
  for (int i = 0;; ++i) {
    ObjectID id = ObjectID::from_name(prefix + std::to_string(i));
    if (id.hash() % n != not_on) return id;
  }
}

// Rank 2 holds the token but forges messages in rank 0's name and the
// bootstrap's, fake progress for rank 1's transfer and an inline answer to
// rank 1's pending lookup. Before: the PeerUpdate alone made rank 1 drop
// rank 0 and fail its transfer; the Progress redirected its reads; the
// LookupReply put forged bytes under a real id.
TEST(HostileMember, ForgeriesInAnotherRanksNameAreRefused) {
  const ObjectID busy = ObjectID::from_name("hostile/busy");
  const ObjectID pending = id_not_sharded_on("hostile/pending", 2, 3);
  constexpr std::uint64_t kSize = 16 * kMiB;
  constexpr std::uint64_t kHalf = kSize / 2;
  constexpr std::uint64_t kSmall = 1000;  // inline in the directory

  int rc = run_cluster(3, [&](Node& node) -> int {
    ObjectWriter writer;
    ObjectFuture got, later;
    if (node.rank() == 0) {
      ASSIGN_OR_FAIL(writer, node.create(busy, kSize));
      fill_pattern(writer.data().subspan(0, kHalf), 31, 0);
      CHECK_OK(writer.publish(kHalf));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 1) {
      got = node.get(busy);
      later = node.get(pending);
      CHECK_TRUE(wait_until([&] { return node.local_progress(busy) >= kHalf; }, kWait));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 2) {
      ASSIGN_OR_FAIL(WireClient c, WireClient::control(node.control_address(1), kToken, 2));
      std::vector<ctl::Message> forged = {
          forged_publish(busy, 0),                                 // names rank 0
          ctl::Heartbeat{0, 1},                                    // names rank 0
          ctl::Rejoin{0, {}},                                      // names rank 0
          ctl::PeerUpdate{0, false, {}},                           // only the bootstrap says who is alive
          ctl::Table{std::vector<ctl::PeerInfo>(3), {}, 0},        // only the bootstrap sends the table
          ctl::BarrierDone{1ull << 63},                            // only the bootstrap; and a wrapping epoch
          ctl::Unwatch{busy, 0, 1},                                // names rank 0
          ctl::Lookup{pending, 1, 0, false, false, ctl::kNoRank},  // names rank 0
          ctl::RejoinAt{2, {}},                                    // rank 1 is not rejoining
      };
      // Fake progress for every stream rank 1's fetcher may have opened.
      for (std::uint64_t k = 1; k <= 64; ++k) {
        forged.push_back(ctl::Progress{busy, true, 0, kSize, kSize, (1ull << 56) | k});
      }
      ctl::LookupReply fake;
      fake.id = pending;
      fake.result = ctl::LookupResult::kInline;
      fake.size = kSmall;
      fake.inline_data.assign(kSmall, 0xee);
      forged.push_back(fake);
      for (const auto& m : forged) CHECK_TRUE(c.send(ctl::encode(m)));
      // A rank-less tool may not change anything either, but may read how
      // the node sees the cluster.
      ASSIGN_OR_FAIL(WireClient tool, WireClient::control(node.control_address(1), kToken, kNotAMember));
      CHECK_TRUE(tool.send(ctl::encode(forged_publish(busy, kNotAMember))));
      CHECK_TRUE(tool.send(ctl::encode(ctl::DiagRequest{42})));
      auto diag = tool.next(milliseconds(5000));
      CHECK_TRUE(diag.has_value());
      CHECK_EQ(static_cast<int>(diag->type), static_cast<int>(ctl::MsgType::kDiagReply));
      auto reply = ctl::decode(diag->type, diag->payload);
      CHECK_OK(reply);
      const auto& d = std::get<ctl::DiagReply>(reply.value());
      CHECK_EQ(d.request, 42u);
      CHECK_EQ(d.rank, 1u);
      CHECK_EQ(d.world, 3u);
      CHECK_TRUE(d.failed.empty());
      // Refusals cost the message, not the connection.
      CHECK_FALSE(c.closed_within(milliseconds(300)));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) {
      fill_pattern(writer.data().subspan(kHalf), 31, kHalf);
      CHECK_OK(writer.seal());
      CHECK_OK(node.put(pending, make_pattern(kSmall, 32)));
    }
    if (node.rank() == 1) {
      ASSIGN_OR_FAIL(ObjectView view, got.wait(kWait));
      CHECK_PATTERN(view.bytes(), kSize, 31);
      CHECK_EQ(view.source(), 0);
      ASSIGN_OR_FAIL(ObjectView small, later.wait(kWait));
      CHECK_PATTERN(small.bytes(), kSmall, 32);
      CHECK_TRUE(node.failed_ranks().empty());
      const NodeStats s = node.stats();
      // 9 forgeries naming others or answering what nobody asked, at least
      // one Progress on a live stream, the LookupReply and the tool's publish.
      if (s.refused_messages < 12) FAIL_BODY("refused only " + std::to_string(s.refused_messages));
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// A member asks rank 0's data plane for bytes of an object it never
// watched. Before: any range inside the arena was served, other objects and
// freed extents included. Now the holder answers only what it granted (the
// Progress of a Watch), and keeps serving.
TEST(HostileMember, DataPlaneReadsNeedAGrant) {
  if (backend() == "ucx") GTEST_SKIP() << "UCX's active messages cannot be spoken by a raw socket client";
  const ObjectID secret = ObjectID::from_name("hostile/secret");
  constexpr std::uint64_t kSize = 4 * kMiB;
  int rc = run_cluster(3, [&](Node& node) -> int {
    if (node.rank() == 0) CHECK_OK(node.put(secret, make_pattern(kSize, 41)));
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 2) {
      ASSIGN_OR_FAIL(WireClient c, WireClient::data(node.data_address(0), kToken, 2));
      // The arena's first 64 MiB, where the secret lives, in 1 MiB steps,
      // named as the secret and as an object that does not exist.
      std::uint64_t req = 1;
      for (const ObjectID& id : {secret, ObjectID::from_name("hostile/none")}) {
        for (std::uint64_t off = 0; off < 64 * kMiB; off += kMiB) {
          CHECK_TRUE(c.send(frame(kDataGetRequest, Bytes().u64(req++).id(id).u64(off).u64(4096))));
          auto g = c.next(milliseconds(5000));
          CHECK_TRUE(g.has_value());
          CHECK_EQ(g->type, kDataGetResponse);
          std::uint16_t status = 0;
          std::memcpy(&status, g->payload.data() + 8, 2);
          if (status == 0) FAIL_BODY("rank 0 served [" + std::to_string(off) + ", +4096) without a grant");
          CHECK_EQ(g->payload.size(), 18u);  // and no bytes
        }
      }
      // The honest path still works: a get watches, is granted, reads.
      ASSIGN_OR_FAIL(ObjectView v, node.get(secret).wait(kWait));
      CHECK_PATTERN(v.bytes(), kSize, 41);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// Open descriptors of this process.
int open_fds() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    n++;
  }
  return n;
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// A stranger connects and never speaks: the node hangs up after the
// handshake timeout (before: the connection stayed forever).
TEST(Limits, SilentConnectionsAreClosedAfterTheHandshakeTimeout) {
  int rc = run_cluster(2, [&](Node& node) -> int {
    if (node.rank() == 1) {
      std::vector<std::string> ports = {node.control_address(0)};
      if (node.transport_name() == "tcp") ports.push_back(node.data_address(0));
      for (const auto& address : ports) {
        int fd = dial(address);
        CHECK_TRUE(fd >= 0);
        auto start = Clock::now();
        Reply r = read_reply(fd, milliseconds(9000));
        ::close(fd);
        auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
        if (!r.closed) FAIL_BODY(address + ": still open after 9 s");
        if (took < 4000) FAIL_BODY(address + ": closed after only " + std::to_string(took) + " ms");
      }
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// Rank 2 floods rank 0 with connections that never finish a handshake,
// past rank 0's descriptor limit, while rank 1 is half way through a
// transfer from rank 0. Before: accept() failing with EMFILE was retried at
// once, a busy loop. Now the transfer finishes, rank 0 stays nearly idle,
// and once the flood is gone new peers are served again.
TEST(Limits, ConnectionFloodPastTheDescriptorLimit) {
  const ObjectID busy = ObjectID::from_name("flood/busy");
  constexpr std::uint64_t kSize = 16 * kMiB;
  constexpr std::uint64_t kHalf = kSize / 2;
  constexpr int kFlood = 400;
  int rc = run_cluster(3, [&](Node& node) -> int {
    ObjectWriter writer;
    ObjectFuture got;
    if (node.rank() == 0) {
      ASSIGN_OR_FAIL(writer, node.create(busy, kSize));
      fill_pattern(writer.data().subspan(0, kHalf), 51, 0);
      CHECK_OK(writer.publish(kHalf));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 1) {
      got = node.get(busy);
      CHECK_TRUE(wait_until([&] { return node.local_progress(busy) >= kHalf; }, kWait));
    }
    double cpu_before = 0;
    if (node.rank() == 0) {
      // Room for 100 more descriptors: the flood runs out of them.
      rlimit lim{static_cast<rlim_t>(open_fds() + 100), static_cast<rlim_t>(open_fds() + 100)};
      rlimit old{};
      CHECK_TRUE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
      lim.rlim_max = old.rlim_max;
      CHECK_TRUE(::setrlimit(RLIMIT_NOFILE, &lim) == 0);
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) cpu_before = cpu_seconds();
    std::vector<int> flood;
    if (node.rank() == 2) {
      std::vector<std::string> targets = {node.control_address(0)};
      if (node.transport_name() == "tcp") targets.push_back(node.data_address(0));
      for (int i = 0; i < kFlood; ++i) {
        int fd = dial(targets[i % targets.size()]);
        if (fd >= 0) flood.push_back(fd);
      }
      CHECK_TRUE(flood.size() > 200);
      std::this_thread::sleep_for(milliseconds(2000));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) {
      const double used = cpu_seconds() - cpu_before;
      // A spinning accept loop burns the whole 2 s.
      if (used > 0.8) FAIL_BODY("rank 0 used " + std::to_string(used) + " s of CPU during a 2 s flood");
      fill_pattern(writer.data().subspan(kHalf), 51, kHalf);
      CHECK_OK(writer.seal());
    }
    if (node.rank() == 1) {
      ASSIGN_OR_FAIL(ObjectView view, got.wait(kWait));
      CHECK_PATTERN(view.bytes(), kSize, 51);
    }
    if (node.rank() == 2) {
      for (int fd : flood) ::close(fd);
      // Served again once the flood is gone.
      bool served = wait_until(
          [&] { return WireClient::control(node.control_address(0), kToken, kNotAMember).is_ok(); },
          milliseconds(10000));
      CHECK_TRUE(served);
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) CHECK_TRUE(node.stats().rejected_connections > 0);
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// An honest transfer held open across an attack: start() has rank 0 write
// half of a 16 MiB object and rank 1 read that half; finish() has rank 0
// write the rest and rank 1 check every byte. Every rank calls both (they
// hold barriers); each returns 0 or a failed check's exit code.
class HeldTransfer {
 public:
  HeldTransfer(const std::string& name, std::uint64_t seed) : id_(ObjectID::from_name(name)), seed_(seed) {}
  int start(Node& node) {
    if (node.rank() == 0) {
      ASSIGN_OR_FAIL(writer_, node.create(id_, kSize));
      fill_pattern(writer_.data().subspan(0, kHalf), seed_, 0);
      CHECK_OK(writer_.publish(kHalf));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 1) {
      got_ = node.get(id_);
      CHECK_TRUE(wait_until([&] { return node.local_progress(id_) >= kHalf; }, kWait));
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  }
  int finish(Node& node) {
    if (node.rank() == 0) {
      fill_pattern(writer_.data().subspan(kHalf), seed_, kHalf);
      CHECK_OK(writer_.seal());
    }
    if (node.rank() == 1) {
      ASSIGN_OR_FAIL(ObjectView view, got_.wait(kWait));
      CHECK_PATTERN(view.bytes(), kSize, seed_);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  }

 private:
  static constexpr std::uint64_t kSize = 16 * kMiB;
  static constexpr std::uint64_t kHalf = kSize / 2;
  ObjectID id_;
  std::uint64_t seed_;
  ObjectWriter writer_;
  ObjectFuture got_;
};

// Rank 2 watches one of rank 0's objects on ever more streams, past the
// per-rank limit, while rank 1 reads another object from rank 0. Each watch
// pins the copy and costs a watcher. Before: the watches past the limit
// were answered "not here" silently, nowhere counted; now rank 0 holds no
// more than the limit, counts and logs each refusal, rank 1's transfer
// finishes byte-exact, and rank 2's Unwatches free the watchers again.
TEST(Limits, WatchesPastARanksLimitAreRefused) {
  const ObjectID pinned = ObjectID::from_name("watch-limit/pinned");
  constexpr std::size_t kLimit = 16384;  // ObjectServer::kMaxWatchesPerRank
  constexpr std::size_t kExtra = 500;
  // Streams no component of rank 2 owns: its node drops their Progress.
  auto stream = [](std::size_t k) { return (0xeeull << 56) | k; };
  HeldTransfer held("watch-limit/busy", 61);
  int rc = run_cluster(3, [&](Node& node) -> int {
    if (node.rank() == 0) CHECK_OK(node.put(pinned, make_pattern(kMiB, 62)));
    if (int r = held.start(node)) return r;
    std::optional<WireClient> c;
    if (node.rank() == 2) {
      ASSIGN_OR_FAIL(WireClient w, WireClient::control(node.control_address(0), kToken, 2));
      for (std::size_t k = 1; k <= kLimit + kExtra; ++k)
        CHECK_TRUE(w.send(ctl::encode(ctl::Watch{pinned, 2, stream(k)})));
      c.emplace(std::move(w));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) {
      CHECK_TRUE(wait_until([&] { return node.stats().refused_messages >= kExtra; }, kWait));
      const NodeStats s = node.stats();
      // Rank 2's, and rank 1's watch of the held transfer.
      if (s.watches > kLimit + 1) FAIL_BODY("rank 0 holds " + std::to_string(s.watches) + " watches");
      CHECK_TRUE(s.watches >= kLimit);
      CHECK_EQ(s.refused_messages, kExtra);
    }
    if (int r = held.finish(node)) return r;
    if (node.rank() == 2) {
      CHECK_FALSE(c->closed_within(milliseconds(100)));
      for (std::size_t k = 1; k <= kLimit + kExtra; ++k)
        CHECK_TRUE(c->send(ctl::encode(ctl::Unwatch{pinned, 2, stream(k)})));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) CHECK_TRUE(wait_until([&] { return node.stats().watches <= 1; }, kWait));
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// Sends `batch` (whole frames) on `fd` again and again, up to `most` bytes,
// until a whole second passes without room to send. Returns the bytes
// sent, and whether the sends blocked.
std::pair<std::size_t, bool> send_until_blocked(int fd, const std::vector<std::uint8_t>& batch,
                                                std::size_t most) {
  std::size_t sent = 0;
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  while (sent < most && Clock::now() < give_up) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 1000) == 0) return {sent, true};
    const std::size_t at = sent % batch.size();
    ssize_t n = ::send(fd, batch.data() + at, batch.size() - at, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  return {sent, false};
}

// A tool asks rank 0 for diagnostics as fast as it can and reads none of
// the answers, while rank 1 reads an object from rank 0. Before: rank 0
// read every request and queued every answer (about four bytes of answer
// per byte asked) until 256 MiB, then dropped the connection. Now it stops
// reading the tool once 1 MiB of answers wait, so the tool's sends block
// after a few MiB (socket buffers); once the tool reads, it gets every
// answer and the connection stays open. Rank 1's transfer finishes.
TEST(Limits, AToolThatDoesNotReadItsAnswersIsNotRead) {
  constexpr std::size_t kAsk = 32 * kMiB;        // the most the tool tries to send
  constexpr std::size_t kBlockedBy = 16 * kMiB;  // sends must block before this
  constexpr std::size_t kBatch = 4096;           // requests per batch
  HeldTransfer held("backpressure/busy", 71);
  int rc = run_cluster(3, [&](Node& node) -> int {
    if (int r = held.start(node)) return r;
    if (node.rank() == 2) {
      ASSIGN_OR_FAIL(WireClient tool, WireClient::control(node.control_address(0), kToken, kNotAMember));
      int small = 64 << 10;
      CHECK_TRUE(::setsockopt(tool.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
      std::vector<std::uint8_t> batch;
      for (std::uint64_t i = 0; i < kBatch; ++i) {
        auto f = ctl::encode(ctl::DiagRequest{i});
        batch.insert(batch.end(), f.begin(), f.end());
      }
      auto [sent, blocked] = send_until_blocked(tool.fd(), batch, kAsk);
      if (!blocked || sent >= kBlockedBy)
        FAIL_BODY("rank 0 read " + std::to_string(sent) + " bytes of requests whose answers nobody read");
      // Now the tool reads: every whole request is answered.
      const std::size_t asked = sent / (batch.size() / kBatch);
      for (std::size_t answers = 0; answers < asked; ++answers) {
        auto f = tool.next(milliseconds(10000));
        if (!f) FAIL_BODY("no answer after " + std::to_string(answers) + " of " + std::to_string(asked));
        CHECK_EQ(static_cast<int>(f->type), static_cast<int>(ctl::MsgType::kDiagReply));
      }
      CHECK_FALSE(tool.closed_within(milliseconds(100)));
    }
    CHECK_OK(node.barrier(kWait));
    if (int r = held.finish(node)) return r;
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace hoplite::itest
