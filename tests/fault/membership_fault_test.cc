// Membership after faults: a SIGKILLed rank restarted as a new process that
// rejoins and works with the survivors again, and blocking calls that must
// return a Status, not hang, while a peer they need is frozen by SIGSTOP.

#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fault_cluster.h"
#include "hoplite/reduce.h"

namespace hoplite::ftest {
namespace {

constexpr std::uint64_t kMiB = 1u << 20;
constexpr milliseconds kGetWait{30000};

// ------------------------------------------------------------- 8. rejoin

constexpr int kRejoinN = 4;
constexpr int kRejoiner = 3;
constexpr std::uint64_t kRejoinSize = 16 * kMiB;

// Board flags of the rejoin test.
constexpr int kRejoined = 0;   // the new rank 3 is up and has put its objects
constexpr int kReduced = 1;    // rank 0's reduce with the rejoiner is done
constexpr int kBroadcast = 2;  // rank 0's post-rejoin broadcast object is put
constexpr int kFinished = 3;   // ranks that have checked everything

ObjectID hello_id() {
  return ObjectID::from_name("fault/rejoin/hello");
}
ObjectID after_id() {
  return ObjectID::from_name("fault/rejoin/after");
}
ObjectID rejoin_input(int rank) {
  return ObjectID::from_name("fault/rejoin/in/" + std::to_string(rank));
}
ObjectID rejoin_target() {
  return ObjectID::from_name("fault/rejoin/out");
}
constexpr std::uint64_t kHelloSeed = 800;
constexpr std::uint64_t kAfterSeed = 801;

// Input r is a float32 vector of the value r + 1: the sum over four ranks is
// 10 in every element, exact in float.
Status put_rejoin_input(Node& node, int rank) {
  std::vector<float> v(kRejoinSize / sizeof(float), static_cast<float>(rank + 1));
  return node.put(rejoin_input(rank), v.data(), kRejoinSize);
}

// What every member checks once the rejoiner is back: it can read the
// rejoiner's object, the reduce's result and rank 0's new broadcast.
int check_shared_objects(Node& node, Board& b) {
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kReduced] == 1 && b.flag[kBroadcast] == 1; }, kGetWait));
  ASSIGN_OR_FAIL(ObjectView hello, node.get(hello_id()).wait(kGetWait));
  CHECK_PATTERN(hello.bytes(), kRejoinSize, kHelloSeed);
  ASSIGN_OR_FAIL(ObjectView after, node.get(after_id()).wait(kGetWait));
  CHECK_PATTERN(after.bytes(), kRejoinSize, kAfterSeed);
  ASSIGN_OR_FAIL(ObjectView sum, node.get(rejoin_target()).wait(kGetWait));
  CHECK_EQ(sum.size(), kRejoinSize);
  for (std::size_t i = 0; i < kRejoinSize / sizeof(float); ++i) {
    float f;
    std::memcpy(&f, sum.data() + i * sizeof f, sizeof f);
    if (f != 10.0f) FAIL_BODY("sum element " + std::to_string(i) + " is " + std::to_string(f));
  }
  // Checked before anyone may leave (a member that left is listed too).
  CHECK_TRUE(node.failed_ranks().empty());
  b.flag[kFinished]++;
  // Nobody leaves while another member may still read from it.
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kFinished] == kRejoinN; }, kGetWait));
  return 0;
}

// Rank 3 dies right after the cluster formed; survivors see it fail, put
// their reduce inputs and wait for the rejoiner.
int rejoin_survivor_start(Node& node, Board& b, MembershipLog& events) {
  const int me = node.rank();
  CHECK_OK(node.barrier(milliseconds(20000)));
  if (me == kRejoiner) ::raise(SIGKILL);
  CHECK_TRUE(wait_failed(node, kRejoiner, milliseconds(5000)));
  CHECK_TRUE(events.saw(kRejoiner, /*alive=*/false, milliseconds(1000)));
  CHECK_OK(put_rejoin_input(node, me));
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kRejoined] == 1; }, kGetWait));
  CHECK_TRUE(wait_failed(node, kRejoiner, milliseconds(5000), /*listed=*/false));
  CHECK_TRUE(events.saw(kRejoiner, /*alive=*/true, milliseconds(1000)));
  return 0;
}

// The rejoiner's first steps: its own object and its reduce input.
int rejoiner_start(Node& node, Board& b) {
  CHECK_EQ(node.rank(), kRejoiner);
  CHECK_TRUE(node.failed_ranks().empty());
  CHECK_OK(node.put(hello_id(), itest::make_pattern(kRejoinSize, kHelloSeed)));
  CHECK_OK(put_rejoin_input(node, kRejoiner));
  b.flag[kRejoined] = 1;
  return 0;
}

// Rank 3 is SIGKILLed after the cluster formed; a new process takes its
// rank with rejoin = true, puts an object, feeds a reduce coordinated by
// rank 0 and reads rank 0's next broadcast, and the survivors stop listing
// it as failed (their callback says it rejoined).
TEST(RejoinTest, RestartedRankWorksWithTheSurvivors) {
  SharedBoard board;
  FaultPlan plan;
  plan.n = kRejoinN;
  plan.victims = {kRejoiner};
  plan.cluster = fault_cluster_options();
  plan.rejoin_options = skip_link_probe;
  plan.rejoin[kRejoiner] = [](Node& node, Board& b) -> int {
    if (int r = rejoiner_start(node, b)) return r;
    return check_shared_objects(node, b);
  };
  int rc = run_fault_cluster(plan, *board, [](Node& node, Board& b) -> int {
    MembershipLog events(node);
    if (int r = rejoin_survivor_start(node, b, events)) return r;
    if (node.rank() == 0) {
      ReduceOptions o;
      for (int r = 0; r < kRejoinN; ++r) o.inputs.push_back(rejoin_input(r));
      o.target = rejoin_target();
      o.timeout = kGetWait;
      ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
      CHECK_EQ(res.used.size(), static_cast<std::size_t>(kRejoinN));
      b.flag[kReduced] = 1;
      CHECK_OK(node.put(after_id(), itest::make_pattern(kRejoinSize, kAfterSeed)));
      b.flag[kBroadcast] = 1;
    }
    return check_shared_objects(node, b);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kRejoiner], 0) << "rank 3 was never killed";
  EXPECT_EQ(board->flag[kRejoined], 1) << "rank 3 never rejoined";
}

// A rank that hangs (SIGSTOP) while a peer reads from it, and is restarted
// under its rank before anyone declared it failed: rank 0 gets the Rejoin
// while it still counts the rank alive, and the reader gets the PeerUpdate
// while its data-plane endpoint to the stopped process is live (a read is
// pending on its socket). The rejoin must replace that endpoint without
// touching the old one after it is gone (ASan: heap-use-after-free in the
// TCP backend's ClientEndpoint handlers), treat the old process as failed
// (its half-read object resumes from the re-put copy) and let the new
// process join (rank 0 must not close the rejoiner's own connection while
// it drops the old process's).
TEST(RejoinTest, ReplacesARankStillCountedAlive) {
  constexpr int kN = 3;
  constexpr int kHolder = 2;
  constexpr int kReader = 1;
  constexpr std::uint64_t kSize = 32 * kMiB;
  constexpr std::uint64_t kSeed = 810, kLaterSeed = 811;
  constexpr int kHalfPublished = 0, kBack = 1, kDone = 2, kReaderGot = 3;  // board flags
  // Shard on rank 0, which stays up: the reader's resumed lookup waits
  // there for the re-put.
  const ObjectID streamed = id_with_shard("fault/replace/streamed", kN, 0);
  const ObjectID later = id_with_shard("fault/replace/later", kN, 0);
  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {kHolder};
  plan.rejoin_when_stopped = {kHolder};
  plan.cluster = fault_cluster_options();
  plan.rejoin_options = skip_link_probe;
  // Nobody may declare the stopped rank failed by silence before the
  // replacement is in: its Rejoin has to find it counted alive.
  plan.failure_timeout = milliseconds(20000);
  plan.rejoin[kHolder] = [&](Node& node, Board& b) -> int {
    CHECK_EQ(node.rank(), kHolder);
    // The object the stopped process was streaming, put again (a
    // re-executed task), and one more.
    CHECK_OK(node.put(streamed, itest::make_pattern(kSize, kSeed)));
    CHECK_OK(node.put(later, itest::make_pattern(kSize, kLaterSeed)));
    b.flag[kBack] = 1;
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kDone] == kN - 1; }, kGetWait));
    return 0;
  };
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    MembershipLog events(node);
    CHECK_OK(node.barrier(milliseconds(20000)));
    const int me = node.rank();
    if (me == kHolder) {
      // Half of the object is readable; the rest never comes from this
      // process, which is stopped and then killed.
      ASSIGN_OR_FAIL(ObjectWriter w, node.create(streamed, kSize));
      itest::fill_pattern(w.data(), kSeed);
      CHECK_OK(w.publish(kSize / 2));
      b.flag[kHalfPublished] = 1;
      itest::wait_until([] { return false; }, kGetWait);
      FAIL_BODY("the holder was not stopped");
    }
    if (me == kReader) {
      CHECK_TRUE(itest::wait_until([&] { return b.flag[kHalfPublished] == 1; }, kGetWait));
      ObjectFuture got = node.get(streamed);
      CHECK_TRUE(itest::wait_until([&] { return node.local_progress(streamed) >= kSize / 2; }, kGetWait));
      signal_rank(b, kHolder, SIGSTOP);
      ASSIGN_OR_FAIL(ObjectView v, got.wait(kGetWait));
      CHECK_PATTERN(v.bytes(), kSize, kSeed);
    }
    CHECK_TRUE(events.saw(kHolder, /*alive=*/false, kGetWait));
    CHECK_TRUE(events.saw(kHolder, /*alive=*/true, kGetWait));
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kBack] == 1; }, kGetWait));
    // The reader's replaced endpoint is its way to the new process; rank 0
    // reads after it, from whichever copy its shard picks.
    GetOptions from_holder;
    from_holder.after = kHolder;
    if (me != kReader) CHECK_TRUE(itest::wait_until([&] { return b.flag[kReaderGot] == 1; }, kGetWait));
    ASSIGN_OR_FAIL(ObjectView v, node.get(later, me == kReader ? from_holder : GetOptions{}).wait(kGetWait));
    CHECK_PATTERN(v.bytes(), kSize, kLaterSeed);
    if (me == kReader) {
      CHECK_EQ(v.source(), kHolder);
      b.flag[kReaderGot] = 1;
    }
    CHECK_TRUE(node.failed_ranks().empty());
    b.flag[kDone]++;
    // Nobody leaves while the other may still need its shard.
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kDone] == kN - 1; }, kGetWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(board->flag[kBack], 1) << "the replacement never joined";
}

// After a rejoin, a barrier of all four members completes: the rejoiner is
// a member again, for barriers as for data.
TEST(RejoinTest, BarrierIncludesTheRejoiner) {
  SharedBoard board;
  FaultPlan plan;
  plan.n = kRejoinN;
  plan.victims = {kRejoiner};
  plan.cluster = fault_cluster_options();
  plan.rejoin_options = skip_link_probe;
  plan.rejoin[kRejoiner] = [](Node& node, Board& b) -> int {
    if (int r = rejoiner_start(node, b)) return r;
    CHECK_OK(node.barrier(milliseconds(3000)));
    return 0;
  };
  int rc = run_fault_cluster(plan, *board, [](Node& node, Board& b) -> int {
    MembershipLog events(node);
    if (int r = rejoin_survivor_start(node, b, events)) return r;
    CHECK_OK(node.barrier(milliseconds(3000)));
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(board->flag[kRejoined], 1) << "rank 3 never rejoined";
}

// A rejoiner with default options (link model measured at start-up) is
// back within a few seconds of its restart; it must not wait for a
// start-up barrier that the survivors, busy with their own work, never
// enter.
TEST(RejoinTest, DefaultOptionsJoinPromptly) {
  constexpr int kJoinedMs = 4;  // flag: ms from the kill to the rejoiner's first line
  SharedBoard board;
  FaultPlan plan;
  plan.n = kRejoinN;
  plan.victims = {kRejoiner};
  plan.cluster = fault_cluster_options();
  // The probe's barrier gives up after this; 10 s keeps a failure short.
  plan.cluster.bootstrap_timeout = std::chrono::seconds(10);
  plan.rejoin[kRejoiner] = [](Node& node, Board& b) -> int {
    b.flag[kJoinedMs] = static_cast<std::int64_t>(ms_since(b.died_ns[kRejoiner]));
    if (int r = rejoiner_start(node, b)) return r;
    // Stays a member until the survivors have checked that it is one.
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kFinished] == kRejoinN - 1; }, kGetWait));
    if (b.flag[kJoinedMs] > 5000) {
      FAIL_BODY("Node::create with rejoin took " + std::to_string(b.flag[kJoinedMs]) + " ms after the kill");
    }
    return 0;
  };
  int rc = run_fault_cluster(plan, *board, [](Node& node, Board& b) -> int {
    MembershipLog events(node);
    if (int r = rejoin_survivor_start(node, b, events)) return r;
    b.flag[kFinished]++;
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(board->flag[kRejoined], 1) << "rank 3 never rejoined";
}

// ------------------------------------- 8a. rank 0 dies and comes back

// Board flags of the rank-0 rejoin test.
constexpr int kThreeBack = 5;  // rank 3 rejoined while rank 0 was dead
constexpr int kZeroBack = 6;   // rank 0 rejoined
constexpr int kAllDone = 7;    // ranks that have checked everything

ObjectID zero_object(const std::string& name) {
  return ObjectID::from_name("fault/rank0-rejoin/" + name);
}

// Every rank but rank 0, and any rank once rank 0 is back: the objects and
// the reduce of the reborn cluster. Rank 0 leads the barriers again.
int zero_rejoin_finish(Node& node, Board& b) {
  const int me = node.rank();
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kZeroBack] == 1; }, kGetWait));
  CHECK_TRUE(wait_failed(node, 0, milliseconds(5000), /*listed=*/false));
  CHECK_TRUE(itest::wait_until([&] { return node.failed_ranks().empty(); }, milliseconds(5000)));
  CHECK_OK(node.barrier(milliseconds(10000)));
  std::vector<float> in(kMiB / sizeof(float), static_cast<float>(me + 1));
  CHECK_OK(node.put(zero_object("in/" + std::to_string(me)), in.data(), kMiB));
  if (me == 0) CHECK_OK(node.put(zero_object("from0"), itest::make_pattern(kRejoinSize, 810)));
  if (me == 2) CHECK_OK(node.put(zero_object("from2"), itest::make_pattern(kRejoinSize, 812)));
  CHECK_OK(node.barrier(milliseconds(10000)));
  ASSIGN_OR_FAIL(ObjectView a, node.get(zero_object("from0")).wait(kGetWait));
  CHECK_PATTERN(a.bytes(), kRejoinSize, 810);
  ASSIGN_OR_FAIL(ObjectView c, node.get(zero_object("from2")).wait(kGetWait));
  CHECK_PATTERN(c.bytes(), kRejoinSize, 812);
  if (me == 0) {
    ReduceOptions o;
    for (int r = 0; r < kRejoinN; ++r) o.inputs.push_back(zero_object("in/" + std::to_string(r)));
    o.target = zero_object("sum");
    o.timeout = kGetWait;
    ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
    CHECK_EQ(res.used.size(), static_cast<std::size_t>(kRejoinN));
  }
  ASSIGN_OR_FAIL(ObjectView sum, node.get(zero_object("sum")).wait(kGetWait));
  CHECK_EQ(sum.size(), kMiB);
  for (std::size_t i = 0; i < kMiB / sizeof(float); ++i) {
    float f;
    std::memcpy(&f, sum.data() + i * sizeof f, sizeof f);
    if (f != 10.0f) FAIL_BODY("sum element " + std::to_string(i) + " is " + std::to_string(f));
  }
  CHECK_OK(node.barrier(milliseconds(10000)));
  CHECK_TRUE(node.failed_ranks().empty());
  b.flag[kAllDone]++;
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kAllDone] == kRejoinN; }, kGetWait));
  return 0;
}

// Rank 0 (the bootstrap and barrier leader) is SIGKILLed; rank 1 leads a
// barrier of the survivors; rank 3 dies too and rejoins while rank 0 is
// still dead (rank 0's address refuses it, rank 2 sends it on to rank 1);
// then rank 0 restarts, takes its bootstrap port back, rejoins through
// rank 3 (sent on to rank 1), and leads the barriers of all four again:
// objects cross both ways and rank 0 coordinates a reduce over everyone.
// Before: rank 0 could not rejoin (NodeOptions::validate refused it), and
// a rank rejoined only through rank 0.
TEST(RejoinTest, RankZeroRestartsAndLeadsAgain) {
  SharedBoard board;
  Board* b = &*board;
  FaultPlan plan;
  plan.n = kRejoinN;
  plan.victims = {0, kRejoiner};
  plan.cluster = fault_cluster_options();
  plan.rejoin_options = [b](NodeOptions& o) {
    skip_link_probe(o);
    // Rank 0's replacement waits until rank 3 rejoined without it.
    if (o.rank == 0) itest::wait_until([b] { return b->flag[kThreeBack] == 1; }, kGetWait);
  };
  plan.rejoin[0] = [](Node& node, Board& bd) -> int {
    CHECK_EQ(node.rank(), 0);
    // The table came from rank 1 and says nobody is dead now.
    CHECK_TRUE(node.failed_ranks().empty());
    CHECK_EQ(node.control_address(0).substr(node.control_address(0).rfind(':') + 1),
             std::to_string(bd.flag[kFlags - 1].load()));
    bd.flag[kZeroBack] = 1;
    return zero_rejoin_finish(node, bd);
  };
  plan.rejoin[kRejoiner] = [](Node& node, Board& bd) -> int {
    CHECK_TRUE(lists(node.failed_ranks(), 0));
    CHECK_EQ(node.failed_ranks().size(), 1u);
    bd.flag[kThreeBack] = 1;
    return zero_rejoin_finish(node, bd);
  };
  int rc = run_fault_cluster(plan, *board, [](Node& node, Board& bd) -> int {
    const int me = node.rank();
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == 0) {
      const std::string addr = node.control_address(0);
      bd.flag[kFlags - 1] = std::stoll(addr.substr(addr.rfind(':') + 1));
      ::raise(SIGKILL);
    }
    CHECK_TRUE(wait_failed(node, 0, milliseconds(5000)));
    CHECK_OK(node.barrier(milliseconds(10000)));  // rank 1 leads it
    if (me == kRejoiner) ::raise(SIGKILL);
    CHECK_TRUE(wait_failed(node, kRejoiner, milliseconds(5000)));
    CHECK_TRUE(itest::wait_until([&] { return bd.flag[kThreeBack] == 1; }, kGetWait));
    CHECK_TRUE(wait_failed(node, kRejoiner, milliseconds(5000), /*listed=*/false));
    return zero_rejoin_finish(node, bd);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(board->flag[kThreeBack], 1) << "rank 3 never rejoined";
  EXPECT_EQ(board->flag[kZeroBack], 1) << "rank 0 never rejoined";
  EXPECT_EQ(board->flag[kAllDone], kRejoinN);
}

// ----------------------------------------------- 8b. barrier after a death

// Rank 3 reaches a barrier and dies inside it; ranks 1 and 2 arrive after
// the death, rank 0 last. The dead rank's arrival must not stand in for
// rank 0's: nobody leaves the barrier before rank 0 has entered it.
TEST(BarrierTest, ADeadRanksArrivalDoesNotCountForALiveOne) {
  constexpr int kN = 4;
  constexpr int kVictim = 3;
  constexpr int kLateEntered = 0;  // rank 0 is about to enter the barrier
  constexpr int kLeftEarly = 1;    // ranks that left before rank 0 entered
  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {kVictim};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [](Node& node, Board& b) -> int {
    const int me = node.rank();
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == kVictim) {
      // Long enough for the Barrier message to reach rank 0 first.
      auto suicide = die_when([t0 = Clock::now()] { return Clock::now() - t0 > milliseconds(300); });
      (void)node.barrier(milliseconds(20000));
      return 0;
    }
    CHECK_TRUE(wait_failed(node, kVictim, milliseconds(10000)));
    if (me == 0) {
      // Ranks 1 and 2 are in the barrier by now.
      std::this_thread::sleep_for(milliseconds(300));
      b.flag[kLateEntered] = 1;
    }
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (b.flag[kLateEntered] != 1) b.flag[kLeftEarly]++;
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
  EXPECT_EQ(board->flag[kLeftEarly], 0) << "a barrier released without a live rank";
}

// ------------------------------------- 8c. the barrier leader (rank 0) dies

// Rank 0 leads the barriers and dies inside one (its own arrival booked,
// the others arriving around its death). Before: every later barrier waited
// for rank 0 forever. Now rank 1 leads: the barrier completes among the
// survivors, later barriers too, and a reduce and a get run on.
TEST(BarrierTest, RankZerosDeathMovesTheBarriersToRankOne) {
  constexpr int kN = 4;
  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {0};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [](Node& node, Board&) -> int {
    const int me = node.rank();
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == 0) {
      auto suicide = die_when([t0 = Clock::now()] { return Clock::now() - t0 > milliseconds(200); });
      (void)node.barrier(milliseconds(20000));
      return 0;
    }
    // Rank 1 enters at once, rank 2 around the death, rank 3 after it.
    if (me == 2) std::this_thread::sleep_for(milliseconds(200));
    if (me == 3) CHECK_TRUE(wait_failed(node, 0, milliseconds(10000)));
    CHECK_OK(node.barrier(milliseconds(20000)));
    for (int i = 0; i < 3; ++i) CHECK_OK(node.barrier(milliseconds(20000)));
    // Collectives among the survivors.
    const ObjectID in = ObjectID::from_name("fault/leader/in/" + std::to_string(me));
    std::vector<std::int64_t> v(1024, me);
    CHECK_OK(node.put(in, v.data(), v.size() * sizeof v[0]));
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == 1) {
      ReduceOptions o;
      for (int r = 1; r < kN; ++r)
        o.inputs.push_back(ObjectID::from_name("fault/leader/in/" + std::to_string(r)));
      o.target = ObjectID::from_name("fault/leader/sum");
      o.dtype = DataType::kInt64;
      o.timeout = milliseconds(20000);
      ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
      CHECK_EQ(res.used.size(), static_cast<std::size_t>(kN - 1));
    }
    CHECK_OK(node.barrier(milliseconds(20000)));
    ASSIGN_OR_FAIL(ObjectView sum,
                   node.get(ObjectID::from_name("fault/leader/sum")).wait(milliseconds(20000)));
    CHECK_EQ(sum.size(), 1024 * sizeof(std::int64_t));
    std::int64_t first = 0;
    std::memcpy(&first, sum.data(), sizeof first);
    CHECK_EQ(first, 1 + 2 + 3);
    CHECK_OK(node.barrier(milliseconds(20000)));
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[0], 0) << "rank 0 was never killed";
}

// ------------------------------------------------- 9. blocking calls end

constexpr int kStopN = 5;
constexpr int kFrozenSource = 1;
constexpr int kReader = 2;
constexpr int kStopper = 4;
constexpr std::uint64_t kStopSize = 32 * kMiB;
constexpr std::uint64_t kInputSize = 4 * kMiB;

// Board flags of the stop test.
constexpr int kHalfServed = 0;       // the reader holds half of the frozen source's object
constexpr int kPhaseOneChecked = 1;  // ranks done with their own phase-1 calls
constexpr int kPhaseOneDone = 2;     // ranks past the phase-1 barrier
constexpr int kRankZeroStopped = 3;
constexpr int kPhaseTwoDone = 4;

ObjectID stop_object() {
  return ObjectID::from_name("fault/stop/object");
}
ObjectID stop_input(int rank) {
  return ObjectID::from_name("fault/stop/in/" + std::to_string(rank));
}

// `call` returns within `limit`, or the body fails naming `what`.
#define CHECK_RETURNS_WITHIN(limit, what, call)                                                          \
  do {                                                                                                   \
    const auto hoplite_t0 = Clock::now();                                                                \
    call;                                                                                                \
    const auto hoplite_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - hoplite_t0).count(); \
    if (hoplite_ms > (limit).count()) {                                                                  \
      FAIL_BODY(std::string(what) + " took " + std::to_string(hoplite_ms) + " ms (limit " +              \
                std::to_string((limit).count()) + " ms)");                                               \
    }                                                                                                    \
  } while (0)

// Slack for a bounded call to return after its own timeout on two busy
// cores.
constexpr milliseconds kSlack{1000};

// Phase 1: rank 1 streams an object to rank 2 and is frozen once rank 2
// holds half of it; rank 1 also holds a reduce input nobody else has.
//   rank 2: get(...).wait(2 s) returns kTimeout, before and after rank 1 is
//           declared failed (no complete copy exists anywhere);
//   rank 3: a reduce that needs rank 1's input, with timeout 3 s, returns
//           within it with kTimeout or kPeerFailure;
//   ranks 0, 2, 3, 4: barrier(3 s) completes once rank 1 is declared
//           failed (barriers count live ranks).
// Phase 2: rank 4 freezes rank 0, which leads the barriers, and ranks 2-4
// call barrier(2 s): rank 0 is declared failed, rank 2 takes the barriers
// over and the barrier completes within the 2 s (it timed out while
// barriers lived on rank 0 alone). At the end rank 4 SIGKILLs both frozen
// ranks.
TEST(StoppedPeerTest, BlockingCallsReturnAStatus) {
  SharedBoard board;
  FaultPlan plan;
  plan.n = kStopN;
  plan.victims = {0, kFrozenSource};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [](Node& node, Board& b) -> int {
    const int me = node.rank();
    std::vector<std::byte> input(kInputSize, std::byte{1});
    CHECK_OK(node.put(stop_input(me), input));
    CHECK_OK(node.barrier(milliseconds(20000)));

    // ---- phase 1: rank 1 frozen
    if (me == kFrozenSource) {
      StreamPlan p{kStopSize, 900, 32, milliseconds(10000), nullptr};
      p.ready = [&](std::uint64_t published) {
        const bool caught_up = b.progress[kReader] >= published;
        if (published >= kStopSize / 2 && caught_up) b.flag[kHalfServed] = 1;
        return caught_up && published < kStopSize / 2;
      };
      // Frozen inside this call; only SIGKILL ends it.
      (void)stream_put(node, stop_object(), p);
      FAIL_BODY("rank 1 was never frozen");
    }
    if (me == kStopper) {
      CHECK_TRUE(itest::wait_until([&] { return b.flag[kHalfServed] == 1; }, kGetWait));
      signal_rank(b, kFrozenSource, SIGSTOP);
    }
    if (me == kReader) {
      ProgressMirror mirror(node, stop_object(), &b.progress[me]);
      ObjectFuture f = node.get(stop_object());
      CHECK_TRUE(itest::wait_until([&] { return b.stopped_ns[kFrozenSource] != 0; }, kGetWait));
      CHECK_RETURNS_WITHIN(milliseconds(2000) + kSlack, "wait(2 s) on a frozen sender",
                           CHECK_CODE(f.wait(milliseconds(2000)), StatusCode::kTimeout));
      CHECK_TRUE(wait_failed(node, kFrozenSource, milliseconds(5000)));
      CHECK_RETURNS_WITHIN(milliseconds(2000) + kSlack, "wait(2 s) with no copy left",
                           CHECK_CODE(f.wait(milliseconds(2000)), StatusCode::kTimeout));
      CHECK_EQ(node.local_progress(stop_object()), kStopSize / 2);
    }
    if (me == 3) {
      CHECK_TRUE(itest::wait_until([&] { return b.stopped_ns[kFrozenSource] != 0; }, kGetWait));
      ReduceOptions o;
      for (int r = 0; r < kStopN; ++r) o.inputs.push_back(stop_input(r));
      o.target = ObjectID::from_name("fault/stop/out");
      o.dtype = DataType::kInt32;
      o.timeout = milliseconds(3000);
      Result<ReduceResult> res = Status(StatusCode::kInternal, "not run");
      CHECK_RETURNS_WITHIN(o.timeout + kSlack, "reduce with timeout 3 s", res = node.reduce(o));
      if (res.is_ok()) FAIL_BODY("reduce succeeded without rank 1's input");
      if (res.status().code() != StatusCode::kTimeout && res.status().code() != StatusCode::kPeerFailure) {
        FAIL_BODY("reduce ended with " + res.status().to_string());
      }
    }
    CHECK_TRUE(itest::wait_until([&] { return b.stopped_ns[kFrozenSource] != 0; }, kGetWait));
    CHECK_TRUE(wait_failed(node, kFrozenSource, milliseconds(5000)));
    // Everyone enters together, so only the frozen rank can hold it up.
    b.flag[kPhaseOneChecked]++;
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kPhaseOneChecked] == kStopN - 1; }, kGetWait));
    CHECK_RETURNS_WITHIN(milliseconds(3000) + kSlack, "barrier(3 s) without rank 1",
                         CHECK_OK(node.barrier(milliseconds(3000))));
    b.flag[kPhaseOneDone]++;

    // ---- phase 2: rank 0 frozen too
    if (me == 0) {
      // Frozen here by rank 4; it never returns.
      itest::wait_until([] { return false; }, kGetWait);
      FAIL_BODY("rank 0 was never frozen");
    }
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kPhaseOneDone] == kStopN - 1; }, kGetWait));
    if (me == kStopper) {
      signal_rank(b, 0, SIGSTOP);
      b.flag[kRankZeroStopped] = 1;
    }
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kRankZeroStopped] == 1; }, kGetWait));
    CHECK_RETURNS_WITHIN(milliseconds(2000) + kSlack, "barrier(2 s) with rank 0 frozen",
                         CHECK_OK(node.barrier(milliseconds(2000))));
    b.flag[kPhaseTwoDone]++;
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kPhaseTwoDone] == 3; }, kGetWait));
    if (me == kStopper) {
      signal_rank(b, 0, SIGKILL);
      signal_rank(b, kFrozenSource, SIGKILL);
    }
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[0], 0);
  EXPECT_NE(board->died_ns[kFrozenSource], 0);
}

// Rank 1 freezes rank 2 and at once puts an object whose directory shard is
// rank 2, so the put's publish goes to a rank that will never answer. Once
// rank 2 is declared failed, its shard moves to rank 3 and rank 1
// re-reports its copy there, so the put has done its job and must return
// (the object then being findable), within the failure timeout and a
// little.
TEST(StoppedPeerTest, PutReturnsWhenItsShardOwnerFreezes) {
  constexpr int kN = 4;
  constexpr int kShardOwner = 2;
  constexpr int kPutter = 1;
  constexpr int kPutDone = 0;  // flag: the put returned (either way)
  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {kShardOwner};
  plan.cluster = fault_cluster_options();
  // Also how long a put waits for the directory's answer: if the answer is
  // lost, the put fails after 10 s instead of the default 30.
  plan.cluster.bootstrap_timeout = std::chrono::seconds(10);
  int rc = run_fault_cluster(plan, *board, [](Node& node, Board& b) -> int {
    const int me = node.rank();
    const ObjectID id = id_with_shard("fault/stop/put", kN, kShardOwner);
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == kShardOwner) {
      // Frozen here; only SIGKILL ends it.
      itest::wait_until([] { return false; }, kGetWait);
      FAIL_BODY("the shard owner was never frozen");
    }
    Status put_status;
    std::int64_t put_ms = 0;
    if (me == kPutter) {
      signal_rank(b, kShardOwner, SIGSTOP);
      const auto t0 = Clock::now();
      put_status = node.put(id, itest::make_pattern(kMiB, 902));
      put_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
      b.flag[kPutDone] = 1;
    }
    if (me == 3) {
      // Whatever the put said, the copy must be findable through the new
      // shard owner; the putter stays up until this is checked.
      CHECK_TRUE(itest::wait_until([&] { return b.flag[kPutDone] == 1; }, kGetWait));
      ASSIGN_OR_FAIL(ObjectView v, node.get(id).wait(milliseconds(5000)));
      CHECK_PATTERN(v.bytes(), kMiB, 902);
    }
    CHECK_TRUE(wait_failed(node, kShardOwner, milliseconds(5000)));
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == kPutter) {
      signal_rank(b, kShardOwner, SIGKILL);
      CHECK_OK(put_status);
      if (put_ms > (kFailureTimeout + kSlack).count()) {
        FAIL_BODY("put took " + std::to_string(put_ms) + " ms with its shard owner frozen");
      }
    }
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kShardOwner], 0);
}

}  // namespace
}  // namespace hoplite::ftest
