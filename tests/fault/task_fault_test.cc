// The task runtime when a worker dies: rank 3 is SIGKILLed in the middle of
// writing a task's result, while other tasks depend on it. The owner
// re-runs what rank 3 had not finished, and what it had finished but left
// no copy of, elsewhere under the same ObjectIDs; the graph ends with
// correct results; the restarted rank 3 rejoins and runs tasks again.
#include <signal.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <future>
#include <thread>

#include "fault_cluster.h"
#include "hoplite/task.h"

namespace hoplite::ftest {
namespace {

constexpr int kN = 4;
constexpr int kVictim = 3;
constexpr int kTasks = 16;
constexpr std::uint64_t kExpandSize = 256u << 10;  // beyond inline: lost with its node
constexpr milliseconds kWait{60000};

// Board flags.
constexpr int kVictimRuns = 0;  // tasks the first rank 3 started
constexpr int kDone = 1;        // the driver checked everything

std::uint64_t u64_of(std::span<const std::byte> b) {
  std::uint64_t v = 0;
  if (b.size() == sizeof v) std::memcpy(&v, b.data(), sizeof v);
  return v;
}
std::span<const std::byte> bytes_of(const std::uint64_t& v) {
  return std::as_bytes(std::span(&v, 1));
}

// expand(seed): a 256 KiB pattern object, written in two halves. The
// first incarnation of rank 3 dies half way through its third one.
// digest(expand, seed): checks the pattern, returns 3 * seed + 1.
// total(digests...): their sum, through the node's reduce.
TaskFunctions fault_tasks(Board& b, bool may_die) {
  TaskFunctions f;
  f["expand"] = [&b, may_die](TaskContext& ctx) -> Status {
    auto seed = u64_of(ctx.arg(0)->bytes());
    const bool victim = may_die && ctx.rank() == kVictim;
    const auto run = victim ? ++b.flag[kVictimRuns] : 0;
    std::this_thread::sleep_for(milliseconds(150));
    auto w = ctx.create_result(kExpandSize);
    if (!w.is_ok()) return w.status();
    itest::fill_pattern(w->data(), seed);
    HOPLITE_RETURN_IF_ERROR(w->publish(kExpandSize / 2));
    if (victim && run == 3) {
      std::this_thread::sleep_for(milliseconds(50));
      ::raise(SIGKILL);
    }
    std::this_thread::sleep_for(milliseconds(50));
    return w->seal();
  };
  f["digest"] = [](TaskContext& ctx) -> Status {
    auto obj = ctx.arg(0);
    if (!obj.is_ok()) return obj.status();
    auto seed = u64_of(ctx.arg(1)->bytes());
    auto bad = itest::pattern_mismatch(obj->bytes(), kExpandSize, seed);
    if (!bad.empty()) return internal_error("expand(" + std::to_string(seed) + "): " + bad);
    std::uint64_t out = 3 * seed + 1;
    return ctx.set_result(bytes_of(out));
  };
  f["total"] = [](TaskContext& ctx) -> Status {
    return ctx.reduce_args(ReduceOp::kSum, DataType::kInt64).status();
  };
  return f;
}

int driver(TaskRuntime& rt, Board& b, MembershipLog& events) {
  std::vector<ObjectRef> expands, digests;
  std::vector<TaskArg> all;
  std::uint64_t want_total = 0;
  for (std::uint64_t s = 1; s <= kTasks; ++s) {
    auto e = rt.schedule("expand", {TaskArg::value(bytes_of(s))});
    CHECK_OK(e);
    expands.push_back(*e);
  }
  for (std::uint64_t s = 1; s <= kTasks; ++s) {
    auto d = rt.schedule("digest", {TaskArg::ref(expands[s - 1]), TaskArg::value(bytes_of(s))});
    CHECK_OK(d);
    digests.push_back(*d);
    all.push_back(TaskArg::ref(*d));
    want_total += 3 * s + 1;
  }
  auto total = rt.schedule("total", all);
  CHECK_OK(total);

  std::vector<std::future<std::string>> checks;
  for (std::uint64_t s = 1; s <= kTasks; ++s) {
    checks.push_back(std::async(std::launch::async, [&, s]() -> std::string {
      auto v = rt.get(digests[s - 1], kWait);
      if (!v.is_ok()) return v.status().to_string();
      if (u64_of(v->bytes()) != 3 * s + 1) return "digest " + std::to_string(s) + " is wrong";
      auto e = rt.get(expands[s - 1], kWait);
      if (!e.is_ok()) return e.status().to_string();
      return itest::pattern_mismatch(e->bytes(), kExpandSize, s);
    }));
  }
  for (auto& c : checks) CHECK_EQ(c.get(), std::string());
  ASSIGN_OR_FAIL(ObjectView t, rt.get(*total, kWait));
  CHECK_EQ(u64_of(t.bytes()), want_total);

  CHECK_TRUE(b.died_ns[kVictim] != 0);
  CHECK_TRUE(events.saw(kVictim, /*alive=*/false, milliseconds(1000)));
  // At least the task it died in, and whatever it had not started.
  CHECK_TRUE(rt.stats().reexecuted >= 1);

  // The restarted rank 3 takes tasks again.
  CHECK_TRUE(events.saw(kVictim, /*alive=*/true, kWait));
  for (std::uint64_t s = 100; s < 103; ++s) {
    auto e = rt.schedule("expand", {TaskArg::value(bytes_of(s))}, {.rank = kVictim});
    CHECK_OK(e);
    CHECK_EQ(e->producer, kVictim);
    ASSIGN_OR_FAIL(ObjectView v, rt.get(*e, kWait));
    CHECK_EQ(v.source(), kVictim);
    CHECK_EQ(itest::pattern_mismatch(v.bytes(), kExpandSize, s), std::string());
  }
  return 0;
}

int member(Node& node, Board& b, bool may_die) {
  auto rt = TaskRuntime::create(node, fault_tasks(b, may_die));
  CHECK_OK(rt);
  MembershipLog events(node);
  int rc = 0;
  if (node.rank() == 0) {
    rc = driver(**rt, b, events);
    b.flag[kDone] = 1;
  }
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kDone] == 1; }, kWait));
  return rc;
}

TEST(TaskFault, AWorkerKilledMidGraphIsReplacedAndRejoins) {
  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.victims = {kVictim};
  plan.cluster = fault_cluster_options();
  plan.rejoin_options = skip_link_probe;
  plan.rejoin[kVictim] = [](Node& node, Board& b) { return member(node, b, false); };
  int rc = run_fault_cluster(plan, *board, [](Node& node, Board& b) { return member(node, b, true); });
  EXPECT_EQ(rc, 0);
  EXPECT_NE(board->died_ns[kVictim], 0) << "rank 3 was never killed";
  EXPECT_GE(board->flag[kVictimRuns], 3);
}

}  // namespace
}  // namespace hoplite::ftest
