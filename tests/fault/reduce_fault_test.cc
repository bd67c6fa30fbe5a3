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

ObjectID input_id(const std::string& tag, int rank) {
  return ObjectID::from_name("fault/" + tag + "/in/" + std::to_string(rank));
}

ObjectID target_id(const std::string& tag) {
  return ObjectID::from_name("fault/" + tag + "/out");
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

// ------------------------------------------------------------ 5. k = n

// Rank 0 reduces all five inputs; the coordinator kills rank 2, a
// non-coordinator input holder, once half the target has streamed in. The
// reduce restarts from the surviving copies and waits for input 2, which
// rank 3 re-puts once it sees rank 2 failed. The result combines all five
// inputs, byte-exact, at the coordinator and at every survivor.
TEST(ReduceKillTest, AllInputsWithLostInputRePut) {
  constexpr int kN = 5;
  constexpr int kVictim = 2;
  constexpr int kRePutter = 3;
  const std::string tag = "reduce-all";
  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {kVictim};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == kVictim) return await_death(b);
    if (me == 0) {
      // With every input needed, the coordinator keeps its own input for
      // the root, so the target grows here.
      Trigger kill([&] { return node.local_progress(target_id(tag)) >= kSize / 2; },
                   [&] {
                     b.flag[kKilledAt] = static_cast<std::int64_t>(node.local_progress(target_id(tag)));
                     signal_rank(b, kVictim, SIGKILL);
                   });
      ReduceOptions o;
      for (int r = 0; r < kN; ++r) o.inputs.push_back(input_id(tag, r));
      o.target = target_id(tag);
      o.dtype = DataType::kInt64;
      o.timeout = kReduceTimeout;
      ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
      const std::vector<int> used = ranks_of(tag, kN, res.used);
      CHECK_EQ(used.size(), static_cast<std::size_t>(kN));
      CHECK_TRUE(kill.fired());
      ASSIGN_OR_FAIL(ObjectView view, node.get(o.target).wait(kGetWait));
      CHECK_SUM(view.bytes(), used);
      b.flag[kUsedMask] = mask_of(used);
      b.flag[kReduceDone] = 1;
    }
    if (me == kRePutter) {
      CHECK_TRUE(wait_failed(node, kVictim, milliseconds(10000)));
      CHECK_OK(put_input(node, tag, kVictim));
    }
    return read_target_and_leave(node, b, tag, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
  EXPECT_LT(board->flag[kKilledAt], static_cast<std::int64_t>(kSize)) << "killed after the reduce";
}

// ------------------------------------------------------------ 6. k < n

// Rank 0 reduces the first 3 of 5 inputs; only inputs 0-2 exist at first,
// so all three are used, and rank 2 dies once half the target exists
// (wherever the root landed). Inputs 3 and 4 are put after the failure; the
// restarted reduce must use three live inputs, none of them rank 2's, and
// the target must be exactly their sum.
TEST(ReduceKillTest, KOfNUsesOnlyLiveInputs) {
  constexpr int kN = 5;
  constexpr int kK = 3;
  constexpr int kVictim = 2;
  const std::string tag = "reduce-k-of-n";
  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {kVictim};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    const ObjectID target = target_id(tag);
    if (me < kK) CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    std::unique_ptr<ProgressMirror> mirror;
    if (me < kK) mirror = std::make_unique<ProgressMirror>(node, target, &b.progress[me]);
    if (me == kVictim) {
      auto suicide = die_when([&] {
        return std::max({b.progress[0].load(), b.progress[1].load(), b.progress[2].load()}) >= kSize / 2;
      });
      return await_death(b);
    }
    if (me == 0) {
      ReduceOptions o;
      for (int r = 0; r < kN; ++r) o.inputs.push_back(input_id(tag, r));
      o.target = target;
      o.dtype = DataType::kInt64;
      o.k = kK;
      o.timeout = kReduceTimeout;
      ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
      const std::vector<int> used = ranks_of(tag, kN, res.used);
      CHECK_EQ(used.size(), static_cast<std::size_t>(kK));
      if (lists(used, kVictim)) FAIL_BODY("the result uses the dead rank's input: " + to_text(used));
      ASSIGN_OR_FAIL(ObjectView view, node.get(target).wait(kGetWait));
      CHECK_SUM(view.bytes(), used);
      b.flag[kUsedMask] = mask_of(used);
      b.flag[kReduceDone] = 1;
    }
    if (me >= kK) {
      CHECK_TRUE(wait_failed(node, kVictim, milliseconds(10000)));
      CHECK_OK(put_input(node, tag, me));
    }
    return read_target_and_leave(node, b, tag, kN - 1);
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
}

// ---------------------------------------------------------- 7. allreduce

// Rank 0 runs a striped allreduce of four inputs while every rank gets the
// target. Rank 2 dies once it has received half an object's worth of bytes
// for the reduce; rank 3 re-puts its input. The reduce restarts; every
// survivor's get and the coordinator's reduce must end within their
// timeouts, with the byte-exact sum of all four inputs.
TEST(AllreduceKillTest, SurvivorsGetTheSumAfterARePut) {
  constexpr int kN = 4;
  constexpr int kVictim = 2;
  constexpr int kRePutter = 3;
  const std::string tag = "allreduce";
  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {kVictim};
  plan.cluster = fault_cluster_options();
  int rc = run_fault_cluster(plan, *board, [&](Node& node, Board& b) -> int {
    const int me = node.rank();
    const ObjectID target = target_id(tag);
    CHECK_OK(put_input(node, tag, me));
    CHECK_OK(node.barrier(milliseconds(20000)));
    std::unique_ptr<Trigger> suicide;
    if (me == kVictim) {
      // Stripe and chain names are the runtime's business; received bytes
      // are a progress measure that does not depend on them.
      const std::uint64_t base = node.stats().bytes_received;
      suicide = die_when([&node, base] { return node.stats().bytes_received - base >= kSize / 2; });
    }
    std::future<Result<ReduceResult>> reduce;
    if (me == 0) {
      ReduceOptions o;
      for (int r = 0; r < kN; ++r) o.inputs.push_back(input_id(tag, r));
      o.target = target;
      o.dtype = DataType::kInt64;
      o.timeout = kReduceTimeout;
      o.allow_stripes = true;
      reduce = node.reduce_async(o);
    }
    ObjectFuture got = node.get(target);
    if (me == kVictim) return await_death(b);
    if (me == kRePutter) {
      CHECK_TRUE(wait_failed(node, kVictim, milliseconds(10000)));
      CHECK_OK(put_input(node, tag, kVictim));
    }
    if (me == 0) {
      if (reduce.wait_for(kReduceTimeout) != std::future_status::ready) FAIL_BODY("reduce hangs");
      ASSIGN_OR_FAIL(ReduceResult res, reduce.get());
      CHECK_EQ(ranks_of(tag, kN, res.used).size(), static_cast<std::size_t>(kN));
      b.flag[kReduceDone] = 1;
    }
    auto t0 = Clock::now();
    auto view = got.wait(kGetWait);
    const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
    if (!view.is_ok()) {
      FAIL_BODY("get of the target after " + std::to_string(ms) + " ms: " + view.status().to_string());
    }
    CHECK_SUM(view->bytes(), (std::vector<int>{0, 1, 2, 3}));
    b.flag[kReadersDone]++;
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kReadersDone] == kN - 1; }, kGetWait));
    CHECK_OK(node.barrier(milliseconds(20000)));
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "the victim was never killed";
}

}  // namespace
}  // namespace hoplite::ftest
