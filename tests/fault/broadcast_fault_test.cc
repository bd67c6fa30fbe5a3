// Broadcasts that lose a member: a receiver in the middle of a chain killed
// (SIGKILL) or frozen (SIGSTOP) part-way, the node holding the object's
// directory shard killed under a waiting get or a running transfer, and the
// only copy's holder killed while a receiver has half of it.
//
// The source streams its object in 32 paced steps: step s+1 is published
// only once every receiver holds step s. Receivers ask in rank order, each
// once its predecessor has bytes, so the directory strings them into one
// chain 0 -> 1 -> 2 -> ... and a kill at "x %" of rank 1's copy lands while
// everyone downstream is streaming through it, on every machine and load.

#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "fault_cluster.h"

namespace hoplite::ftest {
namespace {

using std::chrono::seconds;

constexpr std::uint64_t kMiB = 1u << 20;
constexpr std::uint64_t kSize = 32 * kMiB;
constexpr int kSteps = 32;
// Transfers here take well under a second; this only bounds a broken run.
constexpr milliseconds kGetWait{30000};
// How soon after a kill every survivor must list the victim as failed: a
// killed process's sockets are reset by the kernel, so this is detected at
// once, not after the failure timeout.
constexpr milliseconds kDetectKill{2000};

// The first time failed_ranks() lists `rank`, as a Board-style timestamp.
class DetectionClock {
 public:
  DetectionClock(const Node& node, int rank)
      : trigger_([&node, rank] { return lists(node.failed_ranks(), rank); }, [this] { at_ = now_ns(); }) {}
  // 0 if not (yet) detected.
  std::int64_t at() const { return at_.load(); }

 private:
  std::atomic<std::int64_t> at_{0};
  Trigger trigger_;
};

// The checks every survivor of a lost member makes: it lists the victim as
// failed, soon enough after `since_ns` (when the victim died or was
// stopped), and its membership callback said so.
int check_detected(const Node& node, const DetectionClock& detected, const MembershipLog& events, int victim,
                   std::int64_t since_ns, milliseconds within) {
  CHECK_TRUE(wait_failed(node, victim, within + milliseconds(1000)));
  CHECK_TRUE(itest::wait_until([&] { return detected.at() != 0; }, milliseconds(1000)));
  const double late_ms = static_cast<double>(detected.at() - since_ns) / 1e6;
  if (late_ms > static_cast<double>(within.count())) {
    FAIL_BODY("rank " + std::to_string(victim) + " listed as failed " + std::to_string(late_ms) +
              " ms after it was lost (limit " + std::to_string(within.count()) + " ms)");
  }
  CHECK_TRUE(events.saw(victim, /*alive=*/false, milliseconds(1000)));
  return 0;
}

// Receivers 1..n-1 of a paced chain broadcast from rank 0.
std::vector<int> receivers(int n) {
  std::vector<int> r;
  for (int i = 1; i < n; ++i) r.push_back(i);
  return r;
}

// ------------------------------------------------------- 1. mid-chain kill

class MidChainKillTest : public ::testing::TestWithParam<int> {};

// Rank 1, the first link of the chain 0 -> 1 -> 2 -> 3 -> 4, kills itself
// once it holds GetParam() % of the object. Ranks 2-4 were streaming from it
// (2 directly, 3 and 4 through 2): each must resume from another copy and
// end byte-exact, with the victim listed as failed within kDetectKill.
TEST_P(MidChainKillTest, SurvivorsResumeFromAnotherCopy) {
  constexpr int kN = 5;
  constexpr int kVictim = 1;
  const int percent = GetParam();
  const ObjectID id = ObjectID::from_name("fault/chain-kill/" + std::to_string(percent));
  const std::uint64_t seed = 100 + static_cast<std::uint64_t>(percent);

  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {kVictim};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    MembershipLog events(node);
    DetectionClock detected(node, kVictim);
    const int me = node.rank();
    if (me == 0) {
      CHECK_OK(stream_put(node, id, {kSize, seed, kSteps, milliseconds(5000), paced_by(b, receivers(kN))}));
    } else {
      ProgressMirror mirror(node, id, &b.progress[me]);
      std::unique_ptr<Trigger> suicide;
      if (me == kVictim) {
        suicide = die_when([&] { return node.local_progress(id) >= kSize * percent / 100; });
      }
      // Asking only once the predecessor streams makes the directory append
      // this rank behind it: the chain follows rank order.
      if (me > 1) {
        CHECK_TRUE(itest::wait_until([&] { return b.progress[me - 1] > 0; }, milliseconds(10000)));
      }
      ASSIGN_OR_FAIL(ObjectView view, node.get(id).wait(kGetWait));
      CHECK_PATTERN(view.bytes(), kSize, seed);
      // Whatever it got from the victim, the last bytes came from a copy
      // that survived.
      CHECK_TRUE(view.source() != kVictim);
    }
    // The victim never gets here: it dies at its threshold.
    CHECK_TRUE(itest::wait_until([&] { return b.died_ns[kVictim] != 0; }, milliseconds(10000)));
    if (int r = check_detected(node, detected, events, kVictim, b.died_ns[kVictim], kDetectKill)) {
      return r;
    }
    CHECK_OK(node.barrier(milliseconds(20000)));
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
}

INSTANTIATE_TEST_SUITE_P(Thresholds, MidChainKillTest, ::testing::Values(10, 50, 90),
                         [](const auto& info) { return "At" + std::to_string(info.param) + "Percent"; });

// ------------------------------------------------------- 2. mid-chain stop

// As above, but rank 1 is frozen (SIGSTOP, by the source, once rank 1 holds
// half the object): its sockets stay open, so only the heartbeat timeout
// can tell. Survivors must finish within failure_timeout plus a transfer,
// and the frozen process is SIGKILLed at the end without the run hanging on
// it.
TEST(MidChainStopTest, SurvivorsFinishAfterTheFailureTimeout) {
  constexpr int kN = 5;
  constexpr int kVictim = 1;
  const ObjectID id = ObjectID::from_name("fault/chain-stop");
  constexpr std::uint64_t kSeed = 200;
  // The failure timeout, then a resumed transfer of at most the whole
  // object on loopback (tens of ms), with room for two busy cores.
  const milliseconds budget = kFailureTimeout + milliseconds(3000);

  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {kVictim};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    MembershipLog events(node);
    DetectionClock detected(node, kVictim);
    const int me = node.rank();
    if (me == 0) {
      Trigger freeze([&] { return b.progress[kVictim] >= kSize / 2; },
                     [&] { signal_rank(b, kVictim, SIGSTOP); });
      CHECK_OK(stream_put(node, id, {kSize, kSeed, kSteps, milliseconds(5000), paced_by(b, receivers(kN))}));
      CHECK_TRUE(itest::wait_until([&] { return freeze.fired(); }, milliseconds(10000)));
    } else if (me != kVictim) {
      ProgressMirror mirror(node, id, &b.progress[me]);
      CHECK_TRUE(itest::wait_until([&] { return b.progress[me - 1] > 0; }, milliseconds(10000)));
      ASSIGN_OR_FAIL(ObjectView view, node.get(id).wait(kGetWait));
      const std::int64_t stopped = b.stopped_ns[kVictim];
      CHECK_TRUE(stopped != 0);
      const double took = ms_since(stopped);
      if (took > static_cast<double>(budget.count())) {
        FAIL_BODY("get finished " + std::to_string(took) + " ms after the stop (limit " +
                  std::to_string(budget.count()) + " ms)");
      }
      CHECK_PATTERN(view.bytes(), kSize, kSeed);
    } else {
      ProgressMirror mirror(node, id, &b.progress[me]);
      ASSIGN_OR_FAIL(ObjectView view, node.get(id).wait(kGetWait));
      (void)view;
      // Only reached if the stop came too late to matter.
      FAIL_BODY("the victim finished its get before it was stopped");
    }
    if (int r = check_detected(node, detected, events, kVictim, b.stopped_ns[kVictim],
                               kFailureTimeout + milliseconds(1500))) {
      return r;
    }
    // Silence, not a reset, gave it away: the victim's last message may
    // predate the stop by a heartbeat period, but half the timeout is a
    // floor no reset-driven detection would respect.
    const double after = static_cast<double>(detected.at() - b.stopped_ns[kVictim]) / 1e6;
    if (after < static_cast<double>(kFailureTimeout.count()) / 2) {
      FAIL_BODY("stopped rank declared failed after only " + std::to_string(after) + " ms");
    }
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == 0) signal_rank(b, kVictim, SIGKILL);
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->stopped_ns[kVictim], 0) << "the victim was never stopped";
  EXPECT_NE(board->died_ns[kVictim], 0) << "the stopped victim was not killed at the end";
}

// ---------------------------------------------------- 3. shard owner dies

constexpr int kShardN = 5;
constexpr int kShardOwner = 3;
constexpr int kShardSource = 1;

// Gets are waiting at the object's shard (rank 3) before anyone has put it;
// rank 3 dies; then rank 1 puts. The shard moves to the next live rank,
// where the waiting lookups are re-sent and the put is published, so every
// get completes, and a get issued after everything is answered there too.
TEST(ShardOwnerKillTest, WaitingGetsCompleteAfterThePut) {
  const ObjectID id = id_with_shard("fault/shard-wait", kShardN, kShardOwner);
  constexpr std::uint64_t kSeed = 300;
  constexpr int kAsked = 0;  // flag: receivers that have issued their get
  constexpr int kPut = 1;    // flag: the put has returned
  SharedBoard board;
  FaultPlan plan;
  plan.n = kShardN;
  plan.victims = {kShardOwner};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    if (me == kShardOwner) {
      // The lookups need a moment to arrive; one still in flight when the
      // owner dies is re-sent to the new owner, so either order is valid.
      std::int64_t asked_at = 0;
      auto suicide = die_when([&b, asked_at]() mutable {
        if (b.flag[kAsked] < 2) return false;
        if (asked_at == 0) asked_at = now_ns();
        return ms_since(asked_at) >= 50;
      });
      std::this_thread::sleep_for(seconds(30));
      FAIL_BODY("the shard owner was not killed");
    }
    if (me == 2 || me == 4) {
      ObjectFuture f = node.get(id);
      b.flag[kAsked]++;
      ASSIGN_OR_FAIL(ObjectView view, f.wait(kGetWait));
      CHECK_PATTERN(view.bytes(), kSize, kSeed);
      CHECK_TRUE(view.source() != kShardOwner);
    }
    CHECK_TRUE(wait_failed(node, kShardOwner, kDetectKill + milliseconds(3000)));
    if (me == kShardSource) {
      auto t0 = Clock::now();
      CHECK_OK(node.put(id, itest::make_pattern(kSize, kSeed)));
      auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
      if (ms > 2000) FAIL_BODY("put took " + std::to_string(ms) + " ms");
      b.flag[kPut] = 1;
    }
    if (me == 0) {
      CHECK_TRUE(itest::wait_until([&] { return b.flag[kPut] == 1; }, milliseconds(20000)));
      ASSIGN_OR_FAIL(ObjectView view, node.get(id).wait(kGetWait));
      CHECK_PATTERN(view.bytes(), kSize, kSeed);
    }
    CHECK_OK(node.barrier(milliseconds(20000)));
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kShardOwner], 0) << "the shard owner was never killed";
}

// The shard owner dies while rank 1 streams the object to ranks 2 and 4
// (half way). The transfers themselves never touch the shard and go on;
// the seal and the receivers' completions are published to the new owner,
// which the survivors' re-reports have filled, so a later get finds it.
TEST(ShardOwnerKillTest, RunningTransfersCompleteAndStayFindable) {
  const ObjectID id = id_with_shard("fault/shard-transfer", kShardN, kShardOwner);
  constexpr std::uint64_t kSeed = 301;
  constexpr int kDone = 0;  // flag: receivers that have their copy
  SharedBoard board;
  FaultPlan plan;
  plan.n = kShardN;
  plan.victims = {kShardOwner};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    if (me == kShardOwner) {
      auto suicide = die_when([&] { return b.progress[2] >= kSize / 2; });
      std::this_thread::sleep_for(seconds(30));
      FAIL_BODY("the shard owner was not killed");
    }
    if (me == kShardSource) {
      CHECK_OK(stream_put(node, id, {kSize, kSeed, kSteps, milliseconds(5000), paced_by(b, {2, 4})}));
    }
    if (me == 2 || me == 4) {
      ProgressMirror mirror(node, id, &b.progress[me]);
      if (me == 4) CHECK_TRUE(itest::wait_until([&] { return b.progress[2] > 0; }, milliseconds(10000)));
      ASSIGN_OR_FAIL(ObjectView view, node.get(id).wait(kGetWait));
      CHECK_PATTERN(view.bytes(), kSize, kSeed);
      b.flag[kDone]++;
    }
    CHECK_TRUE(wait_failed(node, kShardOwner, milliseconds(10000)));
    if (me == 0) {
      CHECK_TRUE(itest::wait_until([&] { return b.flag[kDone] == 2; }, milliseconds(20000)));
      ASSIGN_OR_FAIL(ObjectView view, node.get(id).wait(kGetWait));
      CHECK_PATTERN(view.bytes(), kSize, kSeed);
    }
    CHECK_OK(node.barrier(milliseconds(20000)));
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kShardOwner], 0) << "the shard owner was never killed";
}

// --------------------------------------------------- 4. the only copy dies

constexpr int kOnlyN = 4;
constexpr int kOnlySource = 1;
constexpr int kOnlyReceiver = 2;
constexpr int kRePutter = 3;

// Rank 1 streams the object to rank 2 and dies once rank 2 holds exactly
// half of it. No other copy exists. With `reput`, rank 3 then puts the same
// object (a re-executed task) and the get must complete byte-exact from it,
// resuming where it stopped; without, the get keeps waiting, and a bounded
// wait says kTimeout.
int only_copy_body(Node& node, Board& b, const ObjectID& id, std::uint64_t seed, bool reput) {
  const int me = node.rank();
  if (me == kOnlySource) {
    StreamPlan p{kSize, seed, kSteps, milliseconds(5000), nullptr};
    p.ready = [&](std::uint64_t published) {
      if (published >= kSize / 2) {
        itest::wait_until([&] { return b.progress[kOnlyReceiver] >= published; }, milliseconds(10000));
        ::raise(SIGKILL);
      }
      return b.progress[kOnlyReceiver] >= published;
    };
    CHECK_OK(stream_put(node, id, p));
    FAIL_BODY("the source outlived its object");
  }
  if (me == kOnlyReceiver) {
    ProgressMirror mirror(node, id, &b.progress[me]);
    const std::uint64_t before = node.stats().bytes_received;
    ObjectFuture f = node.get(id);
    CHECK_TRUE(wait_failed(node, kOnlySource, kDetectKill + milliseconds(3000)));
    if (!reput) {
      auto t0 = Clock::now();
      CHECK_CODE(f.wait(milliseconds(2000)), StatusCode::kTimeout);
      auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
      if (ms > 3000) FAIL_BODY("wait(2000 ms) took " + std::to_string(ms) + " ms");
      // The half that arrived is kept for a resume.
      CHECK_EQ(node.local_progress(id), kSize / 2);
    } else {
      ASSIGN_OR_FAIL(ObjectView view, f.wait(kGetWait));
      CHECK_PATTERN(view.bytes(), kSize, seed);
      CHECK_EQ(view.source(), kRePutter);
      // Resumed at the first missing byte rather than fetched again.
      const std::uint64_t received = node.stats().bytes_received - before;
      if (received > kSize + kSize / 8) {
        FAIL_BODY("received " + std::to_string(received) + " bytes for a " + std::to_string(kSize) +
                  "-byte object: the resume started over");
      }
    }
  }
  if (me == kRePutter || me == 0) {
    CHECK_TRUE(wait_failed(node, kOnlySource, kDetectKill + milliseconds(3000)));
    if (me == kRePutter && reput) CHECK_OK(node.put(id, itest::make_pattern(kSize, seed)));
  }
  CHECK_OK(node.barrier(milliseconds(20000)));
  return 0;
}

TEST(OnlyCopyKillTest, GetWaitsAndTimesOut) {
  const ObjectID id = ObjectID::from_name("fault/only-copy/wait");
  SharedBoard board;
  FaultPlan plan;
  plan.n = kOnlyN;
  plan.victims = {kOnlySource};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(
      plan, *board, [&](Node& node, Board& b) { return only_copy_body(node, b, id, 400, /*reput=*/false); });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kOnlySource], 0);
}

TEST(OnlyCopyKillTest, RePutCompletesTheGet) {
  const ObjectID id = ObjectID::from_name("fault/only-copy/reput");
  SharedBoard board;
  FaultPlan plan;
  plan.n = kOnlyN;
  plan.victims = {kOnlySource};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(
      plan, *board, [&](Node& node, Board& b) { return only_copy_body(node, b, id, 401, /*reput=*/true); });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kOnlySource], 0);
}

}  // namespace
}  // namespace hoplite::ftest
