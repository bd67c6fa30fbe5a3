// Reduces that lose an input holder half way: k = n (the coordinator
// restarts, and the lost input is re-put by a survivor, as a re-executed
// task would), k < n (the restart uses other inputs, never the dead one's),
// and a striped allreduce that every rank is reading while it runs.
//
// Rank r's input holds, as int64 element i, value(r, i) below: small enough
// that sums of eight never overflow, different for every rank and index, so
// a result that misses, doubles or shifts one input shows at once.

#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fault_cluster.h"
#include "hoplite/reduce.h"

namespace hoplite::ftest {
namespace {

using std::chrono::seconds;

constexpr std::uint64_t kMiB = 1u << 20;
// Big enough that a reduce on loopback takes tens of milliseconds, so a
// kill at half of it lands while the tree-chain is busy.
constexpr std::uint64_t kSize = 32 * kMiB;
constexpr std::uint64_t kElems = kSize / sizeof(std::int64_t);
constexpr milliseconds kReduceTimeout{30000};
constexpr milliseconds kGetWait{30000};

std::int64_t value(int rank, std::uint64_t i) {
  return static_cast<std::int64_t>((i * 7 + static_cast<std::uint64_t>(rank) * 104729) % 1000003) + rank;
}

// Tags starting with "shardS/" (S a digit) name objects whose directory
// shard is rank S of a cluster of kShardWorld, found by salting the name.
// With every input on one shard the coordinator gets the answers to its
// locates in the order it asked, which fixes the tree-chain without sleeps.
constexpr int kShardWorld = 6;

ObjectID shard_salted(const std::string& tag, const std::string& name) {
  if (tag.size() < 7 || tag.rfind("shard", 0) != 0 || tag[6] != '/') return ObjectID::from_name(name);
  const auto shard = static_cast<std::uint64_t>(tag[5] - '0');
  for (int salt = 0;; ++salt) {
    ObjectID id = ObjectID::from_name(name + "#" + std::to_string(salt));
    if (id.hash() % kShardWorld == shard) return id;
  }
}

ObjectID input_id(const std::string& tag, int rank) {
  return shard_salted(tag, "fault/" + tag + "/in/" + std::to_string(rank));
}

ObjectID target_id(const std::string& tag) {
  return shard_salted(tag, "fault/" + tag + "/out");
}

Status put_input(Node& node, const std::string& tag, int rank) {
  std::vector<std::int64_t> v(kElems);
  for (std::uint64_t i = 0; i < kElems; ++i) v[i] = value(rank, i);
  return node.put(input_id(tag, rank), v.data(), kSize);
}

// The ranks whose inputs `used` names, or an empty vector if one is not an
// input of this test.
std::vector<int> ranks_of(const std::string& tag, int n, const std::vector<ObjectID>& used) {
  std::vector<int> out;
  for (const auto& id : used) {
    int found = -1;
    for (int r = 0; r < n; ++r) {
      if (input_id(tag, r) == id) found = r;
    }
    if (found < 0) return {};
    out.push_back(found);
  }
  return out;
}

std::string to_text(const std::vector<int>& ranks) {
  std::string s = "{";
  for (int r : ranks) {
    if (s.size() > 1) s.push_back(',');
    s.append(std::to_string(r));
  }
  s.push_back('}');
  return s;
}

// Empty when `bytes` is exactly the sum of the inputs of `ranks`.
std::string sum_mismatch(std::span<const std::byte> bytes, const std::vector<int>& ranks) {
  if (bytes.size() != kSize) return "size " + std::to_string(bytes.size());
  for (std::uint64_t i = 0; i < kElems; ++i) {
    std::int64_t want = 0;
    for (int r : ranks) want += value(r, i);
    std::int64_t got;
    std::memcpy(&got, bytes.data() + i * sizeof got, sizeof got);
    if (got != want) {
      return "element " + std::to_string(i) + " is " + std::to_string(got) + ", the sum of " +
             to_text(ranks) + " is " + std::to_string(want);
    }
  }
  return {};
}

#define CHECK_SUM(bytes, ranks)                                       \
  do {                                                                \
    const std::string hoplite_why = sum_mismatch((bytes), (ranks));   \
    if (!hoplite_why.empty()) FAIL_BODY("CHECK_SUM: " + hoplite_why); \
  } while (0)

// Board flags shared by the reduce tests.
constexpr int kReduceDone = 0;   // the coordinator has its result
constexpr int kUsedMask = 1;     // bit r: input r is in the result
constexpr int kKilledAt = 2;     // target bytes at the coordinator when it killed
constexpr int kReadersDone = 3;  // ranks that have read and checked the target

std::int64_t mask_of(const std::vector<int>& ranks) {
  std::int64_t m = 0;
  for (int r : ranks) m |= std::int64_t{1} << r;
  return m;
}

std::vector<int> ranks_in(std::int64_t mask) {
  std::vector<int> out;
  for (int r = 0; r < kMaxRanks; ++r) {
    if (mask & (std::int64_t{1} << r)) out.push_back(r);
  }
  return out;
}

// Survivors read the target once the coordinator is done and check it is
// the sum it reported; then everyone leaves together.
int read_target_and_leave(Node& node, Board& b, const std::string& tag, int survivors) {
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kReduceDone] == 1; }, kGetWait));
  ASSIGN_OR_FAIL(ObjectView view, node.get(target_id(tag)).wait(kGetWait));
  CHECK_SUM(view.bytes(), ranks_in(b.flag[kUsedMask]));
  b.flag[kReadersDone]++;
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kReadersDone] == survivors; }, kGetWait));
  CHECK_OK(node.barrier(milliseconds(20000)));
  return 0;
}

// A victim waits here to be killed; if the kill never comes it leaves
// quietly, and the test's own check on died_ns reports it.
int await_death(Board& b) {
  itest::wait_until([&] { return b.flag[kReduceDone] != 0; }, kGetWait);
  return 0;
}

// A cluster of n in which `victim` may die.
FaultPlan one_victim(int n, int victim) {
  FaultPlan plan;
  plan.n = n;
  plan.victims = {victim};
  plan.cluster = fault_cluster_options();
  return plan;
}

// Kills this process once it has received `at` more bytes (reduce folds
// and gets alike): progress measured by the runtime, not by time.
std::unique_ptr<Trigger> die_after_receiving(Node& node, std::uint64_t at) {
  const std::uint64_t base = node.stats().bytes_received;
  return die_when([&node, base, at] { return node.stats().bytes_received - base >= at; });
}

// An int64 sum of the inputs of `ranks`, asked for in that order.
ReduceOptions sum_of(const std::string& tag, const std::vector<int>& ranks, std::size_t k = 0) {
  ReduceOptions o;
  for (int r : ranks) o.inputs.push_back(input_id(tag, r));
  o.target = target_id(tag);
  o.dtype = DataType::kInt64;
  o.k = k;
  o.timeout = kReduceTimeout;
  return o;
}

std::vector<int> ranks_from(int first, int n) {
  std::vector<int> out;
  for (int r = first; r < n; ++r) out.push_back(r);
  return out;
}

// A re-executed task: once this node sees `dead` fail, it puts input
// `input` again (here, where the task ran again).
int put_after_failure(Node& node, const std::string& tag, int dead, int input) {
  CHECK_TRUE(wait_failed(node, dead, milliseconds(10000)));
  CHECK_OK(put_input(node, tag, input));
  return 0;
}

// The coordinator checks the target is the sum of `used` and tells the
// survivors, which then check it too (read_target_and_leave).
int announce_result(Node& node, Board& b, const std::string& tag, const std::vector<int>& used) {
  ASSIGN_OR_FAIL(ObjectView view, node.get(target_id(tag)).wait(kGetWait));
  CHECK_SUM(view.bytes(), used);
  b.flag[kUsedMask] = mask_of(used);
  b.flag[kReduceDone] = 1;
  return 0;
}

// Kill points, as a percentage of the reduce's progress (chunk counts,
// read off the runtime, not sleeps).
class ReduceKillAt : public ::testing::TestWithParam<int> {
 protected:
  std::uint64_t threshold() const { return kSize / 100 * static_cast<std::uint64_t>(GetParam()); }
};

std::string percent_name(const ::testing::TestParamInfo<int>& info) {
  return "At" + std::to_string(info.param) + "Percent";
}

// ------------------------------------------------------------ 5. k = n

constexpr int kTasksFlag = 4;  // flag[kTasksFlag + r]: reduce tasks rank r ran

// Rank 0 reduces all six inputs along one chain. The inputs arrive in rank
// order (see input_id), so the chain is fixed: 1 (leaf) -> 2 -> 3 -> 4 ->
// 5 -> 0 (root; the coordinator keeps its own input for the root). Rank 3
// dies at the kill point of what it pulls; rank 1 re-puts input 3, as a
// re-executed task would. The same input means the same bytes, so rank 4
// keeps what it folded from rank 3 and reads the rest from rank 1, which
// computes rank 3's position from that point on. The result combines all
// six inputs, byte-exact, at the coordinator and at every survivor, and no
// rank runs a task twice.
TEST_P(ReduceKillAt, AllInputsResumeOnlyTheLostPosition) {
  constexpr int kN = 6;
  constexpr int kVictim = 3;
  constexpr int kBelow = 2;
  constexpr int kRePutter = 1;
  static_assert(kN == kShardWorld);
  const std::string tag = "shard0/reduce-all-" + std::to_string(GetParam());
  const std::uint64_t at = threshold();
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kVictim);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    std::unique_ptr<Trigger> suicide;
    if (me == kVictim) {
      // It dies when it has folded the kill point's worth of its upstream
      // (rank 2's partial result): its own output, and everything above
      // it, is then at most that far.
      suicide = die_after_receiving(node, at);
    }
    std::future<Result<ReduceResult>> reduce;
    if (me == 0) {
      // All on rank 0's shard, asked for in this order: they arrive in it.
      ReduceOptions o = sum_of(tag, {1, 2, 3, 4, 5, 0});
      o.depth = 0;  // one chain
      reduce = node.reduce_async(o);
    }
    if (me == kVictim) return await_death(b);
    if (me == 0) {
      if (reduce.wait_for(kReduceTimeout) != std::future_status::ready) FAIL_BODY("reduce hangs");
      ASSIGN_OR_FAIL(ReduceResult res, reduce.get());
      const std::vector<int> used = ranks_of(tag, kN, res.used);
      CHECK_EQ(used.size(), static_cast<std::size_t>(kN));
      // Only the victim's position, resumed on rank 1 from where rank 4
      // had got to; ranks 4, 5 and 0 keep their progress.
      CHECK_EQ(res.recomputed, 1u);
      CHECK_EQ(res.restarts, 0u);
      if (int r = announce_result(node, b, tag, used)) return r;
    }
    if (me == kRePutter) {
      if (int r = put_after_failure(node, tag, kVictim, kVictim)) return r;
    }
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kReduceDone] == 1; }, kGetWait));
    b.flag[kTasksFlag + me] = static_cast<std::int64_t>(node.stats().reduce_tasks);
    return read_target_and_leave(node, b, tag, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
  // Nobody runs a task twice: below the failure nothing changes, the
  // re-putter runs the victim's position (its own is the leaf, which needs
  // no task), and above it the tasks keep going.
  EXPECT_EQ(board->flag[kTasksFlag + kBelow], 1) << "the position below the failure was recomputed";
  EXPECT_EQ(board->flag[kTasksFlag + kRePutter], 1);
  for (int r : {0, 4, 5}) EXPECT_EQ(board->flag[kTasksFlag + r], 1) << "rank " << r << " started over";
}

// ------------------------------------------------------------ 6. k < n

// Rank 0 reduces the first 3 of 5 inputs; only inputs 0-2 exist at first,
// so all three are used, and rank 2 dies at the kill point of the furthest
// partial result among them (wherever the root landed). Inputs 3 and 4 are
// put after the failure; the repaired reduce must use three live inputs,
// none of them rank 2's, and the target must be exactly their sum.
TEST_P(ReduceKillAt, KOfNUsesOnlyLiveInputs) {
  constexpr int kN = 5;
  constexpr int kK = 3;
  constexpr int kVictim = 2;
  const std::string tag = "reduce-k-of-n-" + std::to_string(GetParam());
  const std::uint64_t at = threshold();
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kVictim);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    const ObjectID target = target_id(tag);
    if (me < kK) CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    // Rank 1 reads the target from the start, so it streams whatever the
    // first root writes; the repair must not leave it a prefix of that.
    std::optional<ObjectFuture> early;
    if (me == 1) early = node.get(target);
    std::unique_ptr<ProgressMirror> mirror;
    if (me < kK) mirror = std::make_unique<ProgressMirror>(node, target, &b.progress[me]);
    if (me == kVictim) {
      auto suicide = die_when([&] {
        return std::max({b.progress[0].load(), b.progress[1].load(), b.progress[2].load()}) >= at;
      });
      return await_death(b);
    }
    if (me == 0) {
      ASSIGN_OR_FAIL(ReduceResult res, node.reduce(sum_of(tag, ranks_from(0, kN), kK)));
      const std::vector<int> used = ranks_of(tag, kN, res.used);
      CHECK_EQ(used.size(), static_cast<std::size_t>(kK));
      // The dead rank's input may be in the result only if its part was
      // folded into a complete parent before it died, so nothing was
      // recomputed; otherwise its position was refilled with a live input.
      // (Even an early kill can come after the fold: over shared memory or
      // UCX's active messages a parent may pull a whole input before 10 %
      // of the target exists. The sum check below holds either way.)
      if (lists(used, kVictim)) {
        if (res.recomputed != 0) FAIL_BODY("the result uses the dead rank's input: " + to_text(used));
      } else {
        CHECK_TRUE(res.recomputed >= 1);
      }
      if (int r = announce_result(node, b, tag, used)) return r;
    }
    if (me >= kK) {
      if (int r = put_after_failure(node, tag, kVictim, me)) return r;
    }
    return read_target_and_leave(node, b, tag, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
}

// ------------------------------------ 6b. k < n, the root's holder, late

// Rank 0 holds no input and reduces the first 1 of inputs 1-3, asked for
// in that order on one shard, so the root (a copy of input 1) is made on
// rank 1. Rank 1 dies once rank 0 has a quarter of the target: the tree is
// done, but the only complete copy dies before it reaches the caller. The
// reduce must not return that lost target: it removes it and reduces again
// from a live input, and the caller and every survivor read exactly that
// input.
TEST(ReduceKillTest, RootHolderDiesBeforeTheTargetArrives) {
  constexpr int kN = 6;
  constexpr int kVictim = 1;
  static_assert(kN == kShardWorld);
  const std::string tag = "shard0/reduce-root-late";
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kVictim);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    if (me >= 1 && me <= 3) CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    std::unique_ptr<ProgressMirror> mirror;
    if (me == 0) mirror = std::make_unique<ProgressMirror>(node, target_id(tag), &b.progress[0]);
    if (me == kVictim) {
      auto suicide = die_when([&] { return b.progress[0].load() >= kSize / 4; });
      return await_death(b);
    }
    if (me == 0) {
      ASSIGN_OR_FAIL(ReduceResult res, node.reduce(sum_of(tag, {1, 2, 3}, 1)));
      const std::vector<int> used = ranks_of(tag, kN, res.used);
      CHECK_EQ(used.size(), std::size_t{1});
      if (lists(used, kVictim)) FAIL_BODY("the result names the dead rank's input");
      CHECK_EQ(res.restarts, 1u);
      if (int r = announce_result(node, b, tag, used)) return r;
    }
    return read_target_and_leave(node, b, tag, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
}

// ------------------------------------------------ 5b. k = n, shard owner

// As in 5, but every input and the target live on rank 4's directory shard,
// and rank 4, a chain position above the middle, dies half way. The shard
// moves to rank 5; survivors re-report what they hold there, the
// coordinator asks it for input 4 again, and rank 1's re-put answers.
TEST(ReduceShardKillTest, ChainSurvivesItsShardOwner) {
  constexpr int kN = 6;
  constexpr int kVictim = 4;
  constexpr int kRePutter = 1;
  static_assert(kN == kShardWorld);
  const std::string tag = "shard4/reduce-shard";
  const std::uint64_t at = kSize / 2;
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kVictim);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == kVictim) {
      auto suicide = die_after_receiving(node, at);
      return await_death(b);
    }
    if (me == 0) {
      ReduceOptions o = sum_of(tag, {1, 2, 3, 4, 5, 0});
      o.depth = 0;
      ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
      const std::vector<int> used = ranks_of(tag, kN, res.used);
      CHECK_EQ(used.size(), static_cast<std::size_t>(kN));
      CHECK_TRUE(res.recomputed >= 1);
      if (int r = announce_result(node, b, tag, used)) return r;
    }
    if (me == kRePutter) {
      if (int r = put_after_failure(node, tag, kVictim, kVictim)) return r;
    }
    return read_target_and_leave(node, b, tag, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
}

// ------------------------------------------- 5c. k = n, two failures

// The chain of 5, then a second death right above the first: rank 2 dies a
// third of the way in and rank 1 re-puts input 2 (rank 3 resumes it); then
// rank 3 dies once it has pulled two thirds, and rank 1 re-puts input 3.
// Rank 3's position cannot resume from rank 4's point, because its child
// (rank 2's position) was itself computed only from a resume point: both
// are computed again whole. The result is still exactly the sum of all six.
TEST(ReduceKillTest, SecondFailureAboveAResumedPosition) {
  constexpr int kN = 6;
  constexpr int kFirst = 2;
  constexpr int kSecond = 3;
  constexpr int kRePutter = 1;
  static_assert(kN == kShardWorld);
  const std::string tag = "shard0/reduce-twice";
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kFirst);
  plan.victims.insert(kSecond);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    std::unique_ptr<Trigger> suicide;
    if (me == kFirst) suicide = die_after_receiving(node, kSize / 3);
    if (me == kSecond) {
      // Only after the first death, so that it dies above a resumed position.
      const std::uint64_t base = node.stats().bytes_received;
      suicide = die_when([&node, base] {
        return !node.failed_ranks().empty() && node.stats().bytes_received - base >= kSize * 2 / 3;
      });
    }
    if (me == kFirst || me == kSecond) return await_death(b);
    if (me == 0) {
      ReduceOptions o = sum_of(tag, {1, 2, 3, 4, 5, 0});
      o.depth = 0;
      ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
      const std::vector<int> used = ranks_of(tag, kN, res.used);
      CHECK_EQ(used.size(), static_cast<std::size_t>(kN));
      if (int r = announce_result(node, b, tag, used)) return r;
    }
    if (me == kRePutter) {
      if (int r = put_after_failure(node, tag, kFirst, kFirst)) return r;
      CHECK_TRUE(wait_failed(node, kSecond, milliseconds(20000)));
      CHECK_OK(put_input(node, tag, kSecond));
    }
    return read_target_and_leave(node, b, tag, kN - 2);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kFirst], 0) << "the first victim was never killed";
  EXPECT_NE(board->died_ns[kSecond], 0) << "the second victim was never killed";
}

// ------------------------------------------------------- 6b. k < n, stop

// Rank 0 reduces the first 4 of the inputs of ranks 1-5, asked for in rank
// order on rank 0's shard, so the chain is 1 -> 2 -> 3 -> 4 and input 5 is
// the spare. Rank 2 freezes itself (SIGSTOP: its sockets stay open, only
// the heartbeat timeout can tell) at the kill point of what it pulls. The
// reduce must finish with four live inputs, exactly summed, the spare
// filling rank 2's position; then rank 2 is killed.
TEST_P(ReduceKillAt, KOfNRefillsAStoppedRanksPosition) {
  constexpr int kN = 6;
  constexpr int kK = 4;
  constexpr int kVictim = 2;
  static_assert(kN == kShardWorld);
  const std::string tag = "shard0/reduce-stop-" + std::to_string(GetParam());
  const std::uint64_t at = threshold();
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kVictim);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    const ObjectID target = target_id(tag);
    if (me > 0) CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == kVictim) {
      const std::uint64_t base = node.stats().bytes_received;
      Trigger freeze([&node, base, at] { return node.stats().bytes_received - base >= at; },
                     [&b] { signal_rank(b, 2, SIGSTOP); });
      return await_death(b);
    }
    if (me == 0) {
      const auto t0 = Clock::now();
      ASSIGN_OR_FAIL(ReduceResult res, node.reduce(sum_of(tag, ranks_from(1, kN), kK)));
      const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
      const std::vector<int> used = ranks_of(tag, kN, res.used);
      CHECK_EQ(used.size(), static_cast<std::size_t>(kK));
      if (lists(used, kVictim)) FAIL_BODY("the result uses the stopped rank's input: " + to_text(used));
      if (!lists(used, 5)) FAIL_BODY("the spare did not fill the stopped rank's position: " + to_text(used));
      CHECK_TRUE(res.recomputed >= 1);
      // Detection (the heartbeat timeout) plus a second pass over 32 MiB.
      if (ms > 10000) FAIL_BODY("the reduce took " + std::to_string(ms) + " ms");
      ASSIGN_OR_FAIL(ObjectView view, node.get(target).wait(kGetWait));
      CHECK_SUM(view.bytes(), used);
      b.flag[kUsedMask] = mask_of(used);
      signal_rank(b, kVictim, SIGKILL);
      b.flag[kReduceDone] = 1;
    }
    return read_target_and_leave(node, b, tag, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->stopped_ns[kVictim], 0) << "the victim was never stopped";
}

// ---------------------------------------------------------- 7. allreduce

// A reader of an allreduce of inputs 0-3 checks the sum, then leaves with
// the other `readers`.
int read_sum_of_four_and_leave(Node& node, Board& b, ObjectFuture& got, int readers) {
  auto t0 = Clock::now();
  auto view = got.wait(kGetWait);
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  if (!view.is_ok()) {
    FAIL_BODY("get of the target after " + std::to_string(ms) + " ms: " + view.status().to_string());
  }
  CHECK_SUM(view->bytes(), (std::vector<int>{0, 1, 2, 3}));
  b.flag[kReadersDone]++;
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kReadersDone] == readers; }, kGetWait));
  CHECK_OK(node.barrier(milliseconds(20000)));
  return 0;
}

// Rank 0 runs a striped allreduce of four inputs while every rank gets the
// target. Rank 2 dies once it has received the kill point's share of an
// object's worth of bytes (its stripe work and its reads of the target); rank 3 re-puts its input. The reduce
// restarts; every survivor's get and the coordinator's reduce must end within their timeouts, with the
// byte-exact sum of all four inputs.
TEST_P(ReduceKillAt, AllreduceSurvivorsGetTheSumAfterARePut) {
  constexpr int kN = 4;
  constexpr int kVictim = 2;
  constexpr int kRePutter = 3;
  const std::string tag = "allreduce-" + std::to_string(GetParam());
  const std::uint64_t at = threshold();
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kVictim);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    const ObjectID target = target_id(tag);
    CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    std::unique_ptr<Trigger> suicide;
    if (me == kVictim) {
      // Stripe and chain names are the runtime's business; received bytes
      // are a progress measure that does not depend on them.
      suicide = die_after_receiving(node, at);
    }
    std::future<Result<ReduceResult>> reduce;
    if (me == 0) {
      ReduceOptions o = sum_of(tag, ranks_from(0, kN));
      o.allow_stripes = true;
      reduce = node.reduce_async(o);
    }
    ObjectFuture got = node.get(target);
    if (me == kVictim) return await_death(b);
    if (me == kRePutter) {
      if (int r = put_after_failure(node, tag, kVictim, kVictim)) return r;
    }
    if (me == 0) {
      if (reduce.wait_for(kReduceTimeout) != std::future_status::ready) FAIL_BODY("reduce hangs");
      ASSIGN_OR_FAIL(ReduceResult res, reduce.get());
      CHECK_EQ(ranks_of(tag, kN, res.used).size(), static_cast<std::size_t>(kN));
      b.flag[kReduceDone] = 1;
    }
    return read_sum_of_four_and_leave(node, b, got, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
}

// ------------------------------------------------- 8. coordinator death

constexpr int kLeftFlag = 8;  // flag[kLeftFlag]: survivors that checked their stores

// Waits until this node's store holds `objects` objects (the user's own),
// so that nothing a dead coordinator's reduce made is left.
int expect_only_user_objects(Node& node, std::uint64_t objects) {
  if (!itest::wait_until([&] { return node.stats().objects == objects; }, milliseconds(10000))) {
    FAIL_BODY("rank " + std::to_string(node.rank()) + " holds " + std::to_string(node.stats().objects) +
              " objects, " + std::to_string(objects) + " of them the user's");
  }
  return 0;
}

// A get that ends in an error, and soon: the coordinator's death is told,
// not left to the get's own timeout.
int expect_told(ObjectFuture& got, milliseconds within) {
  const auto t0 = Clock::now();
  auto v = got.wait(kGetWait);
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  if (v.is_ok()) FAIL_BODY("the get of the target succeeded, of " + std::to_string(v->size()) + " bytes");
  if (ms > within.count()) {
    FAIL_BODY("the get of the target failed only after " + std::to_string(ms) +
              " ms: " + v.status().to_string());
  }
  return 0;
}

// Survivors leave together (the barrier's leader may be the dead one).
int leave_together(Board& b, int survivors) {
  b.flag[kLeftFlag]++;
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kLeftFlag] == survivors; }, kGetWait));
  return 0;
}

// Rank 5 reduces inputs 0-4 (it holds none) along one chain, asked for in
// rank order on rank 0's shard: 0 (leaf) -> 1 -> 2 -> 3 -> 4 (root). Input 4
// is never put, so the root never starts, while positions 1, 2 and 3 run to
// completion: finished intermediates on three nodes. Rank 5 dies once they
// are all done. Rank 2 is waiting on the target. Afterwards no survivor's
// store holds anything but its input, and rank 2's get fails within a few
// failure timeouts, not at its own.
TEST(ReduceCoordinatorKillTest, FinishedIntermediatesAreWithdrawn) {
  constexpr int kN = 6;
  constexpr int kCoordinator = 5;
  constexpr int kReader = 2;
  static_assert(kN == kShardWorld);
  const std::string tag = "shard0/reduce-coordinator";
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kCoordinator);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    const bool has_input = me < 4;
    if (has_input) CHECK_OK(put_input(node, tag, me));
    // Before the barrier: the reduce starts right after it, so a later
    // reading could miss its first chunks.
    const std::uint64_t base = node.stats().bytes_received;
    CHECK_OK(node.barrier(milliseconds(20000)));
    std::unique_ptr<Trigger> done;
    if (me >= 1 && me <= 3) {
      // Its position folded the whole of its upstream: its task is done.
      done = std::make_unique<Trigger>([&node, base] { return node.stats().bytes_received - base >= kSize; },
                                       [&b] { b.flag[kTasksFlag]++; });
    }
    if (me == kCoordinator) {
      ReduceOptions o = sum_of(tag, ranks_from(0, 5));
      o.depth = 0;
      auto reduce = node.reduce_async(o);
      auto suicide = die_when([&b] { return b.flag[kTasksFlag].load() == 3; });
      return await_death(b);
    }
    std::optional<ObjectFuture> got;
    if (me == kReader) got = node.get(target_id(tag));
    CHECK_TRUE(wait_failed(node, kCoordinator, milliseconds(20000)));
    CHECK_TRUE(b.flag[kTasksFlag] == 3);
    if (got) {
      if (int r = expect_told(*got, milliseconds(5000))) return r;
    }
    if (int r = expect_only_user_objects(node, has_input ? 1 : 0)) return r;
    return leave_together(b, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kCoordinator], 0) << "the coordinator was never killed";
}

// Rank 3 runs a striped allreduce of all four inputs (its own among them,
// as rank 0 does in Collectives::allreduce) while every rank gets the
// target, and dies half way. Every survivor's get fails soon, and no store
// keeps a stripe, an intermediate or a piece of the target.
TEST(ReduceCoordinatorKillTest, StripedAllreduceCoordinatorDies) {
  constexpr int kN = 4;
  constexpr int kCoordinator = 3;
  const std::string tag = "allreduce-coordinator";
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kCoordinator);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    std::unique_ptr<Trigger> suicide;
    std::future<Result<ReduceResult>> reduce;
    if (me == kCoordinator) {
      suicide = die_after_receiving(node, kSize / 2);
      ReduceOptions o = sum_of(tag, ranks_from(0, kN));
      o.allow_stripes = true;
      reduce = node.reduce_async(o);
    }
    ObjectFuture got = node.get(target_id(tag));
    if (me == kCoordinator) return await_death(b);
    CHECK_TRUE(wait_failed(node, kCoordinator, milliseconds(20000)));
    if (int r = expect_told(got, milliseconds(5000))) return r;
    if (int r = expect_only_user_objects(node, 1)) return r;
    return leave_together(b, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kCoordinator], 0) << "the coordinator was never killed";
}

// ------------------------------------------------ 9. stripe repair

// Stripe j of the first striped reduce a node coordinates: the runtime's
// name for it (ReduceCoordinator::run_striped), which only this test
// relies on, to pace a kill on its transfer.
ObjectID first_stripe_part(const ObjectID& target, int j) {
  return ObjectID::from_name(target.hex() + "/stripe/1/" + std::to_string(j));
}

// Rank 4 (which holds no input) runs a striped allreduce of inputs 0-3
// while ranks 0-3 get the target. Its own get of the target starts only
// when every stripe reported done (it lands the result before it
// returns); rank 2 dies once rank 4 has the first bytes of rank 2's
// stripe (the rest of it keeps rank 4's landing from finishing). The other
// three stripes are done on live holders and are kept; only rank 2's is
// computed again, over the survivors and the re-put of input 2 (on rank
// 3). The survivors' reduce-task counts show it: three each for the first
// plan and three for the redone stripe (a chain through four inputs), not
// twelve more for a restart. Every reader gets the byte-exact sum.
TEST(ReduceStripeRepairTest, OnlyTheLostStripesAreRedone) {
  constexpr int kN = 5;
  constexpr int kHolders = 4;
  constexpr int kVictim = 2;
  constexpr int kRePutter = 3;
  constexpr int kCoordinator = 4;
  const std::string tag = "allreduce-repair";
  const ObjectID target = target_id(tag);
  SharedBoard board;
  FaultPlan plan = one_victim(kN, kVictim);
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    if (me < kHolders) CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    std::unique_ptr<ProgressMirror> mirror;
    if (me == kCoordinator) {
      mirror = std::make_unique<ProgressMirror>(node, first_stripe_part(target, kVictim), &b.progress[me]);
    }
    std::unique_ptr<Trigger> suicide;
    if (me == kVictim) {
      suicide = die_when([&b, at = kCoordinator] { return b.progress[at].load() > 0; });
    }
    std::future<Result<ReduceResult>> reduce;
    std::optional<ObjectFuture> got;
    if (me == kCoordinator) {
      ReduceOptions o = sum_of(tag, ranks_from(0, kHolders));
      o.allow_stripes = true;
      reduce = node.reduce_async(o);
    } else {
      got = node.get(target);
    }
    if (me == kVictim) return await_death(b);
    if (me == kRePutter) {
      if (int r = put_after_failure(node, tag, kVictim, kVictim)) return r;
    }
    if (me == kCoordinator) {
      if (reduce.wait_for(kReduceTimeout) != std::future_status::ready) FAIL_BODY("reduce hangs");
      ASSIGN_OR_FAIL(ReduceResult res, reduce.get());
      CHECK_TRUE(res.striped);
      CHECK_EQ(ranks_of(tag, kN, res.used).size(), static_cast<std::size_t>(kHolders));
      CHECK_EQ(res.restarts, 0u);
      CHECK_EQ(res.stripes_kept, 3u);
      CHECK_EQ(res.stripes_redone, 1u);
      got = node.get(target);
      b.flag[kReduceDone] = 1;
    }
    const int r = read_sum_of_four_and_leave(node, b, *got, kN - 1);
    b.flag[kTasksFlag + me] = static_cast<std::int64_t>(node.stats().reduce_tasks);
    return r;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
  std::int64_t tasks = 0;
  for (int r : {0, 1, 3}) tasks += board->flag[kTasksFlag + r];
  EXPECT_EQ(tasks, 9 + 3) << "survivors' reduce tasks: the first plan's, and one stripe's again";
}

INSTANTIATE_TEST_SUITE_P(Thresholds, ReduceKillAt, ::testing::Values(10, 50, 90), percent_name);

}  // namespace
}  // namespace hoplite::ftest
