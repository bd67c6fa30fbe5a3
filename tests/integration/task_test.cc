// The task runtime on a loopback cluster of real processes: the seed's main
// test (many concurrent tasks, half of them on the futures of the other
// half, every result fetched concurrently and checked, every object
// removed and then not found), both transfer policies, reduce through the
// node, error propagation and get timeouts.
#include <gtest/gtest.h>

#include <future>
#include <random>
#include <set>
#include <thread>

#include "apps/seed_tasks.h"
#include "cluster.h"
#include "hoplite/task.h"

namespace hoplite {
namespace {

using apps::List;
using itest::kWait;
using std::chrono::milliseconds;

// Rank 0 drives; every rank runs tasks until rank 0 is done.
int with_runtime(Node& node, TaskFunctions fns, TaskRuntimeOptions opts,
                 const std::function<int(TaskRuntime&)>& driver) {
  auto rt = TaskRuntime::create(node, std::move(fns), opts);
  CHECK_OK(rt);
  int rc = 0;
  if (node.rank() == 0) rc = driver(**rt);
  CHECK_OK(node.barrier(kWait));
  return rc;
}

TaskFunctions test_tasks() {
  auto f = apps::seed_tasks();
  f["fail"] = [](TaskContext&) -> Status { return invalid_argument("the input was rejected on purpose"); };
  f["throw"] = [](TaskContext&) -> Status { throw std::runtime_error("a bad_alloc of sorts"); };
  f["sleep"] = [](TaskContext& ctx) -> Status {
    std::this_thread::sleep_for(milliseconds(1500));
    const char x[] = "awake";
    return ctx.set_result(std::as_bytes(std::span(x)));
  };
  f["no_result"] = [](TaskContext&) -> Status { return Status::ok(); };
  f["sum_f32"] = [](TaskContext& ctx) -> Status {
    auto r = ctx.reduce_args(ReduceOp::kSum, DataType::kFloat32, ctx.arg_count() - 2);
    return r.status();
  };
  return f;
}

int seed_main(TaskRuntime& rt) {
  std::mt19937_64 rng(42);
  constexpr int kLists = 40;
  std::vector<List> lists;
  std::vector<ObjectRef> firsts, seconds;
  std::vector<List> want_first, want_second;
  // Half Task 1 on put lists, half Task 2 on the futures of Task 1.
  for (int i = 0; i < kLists; ++i) {
    lists.push_back(apps::seed_list(rng, 4999963));
    auto in = rt.put(apps::bytes_of(lists.back()));
    CHECK_OK(in);
    auto r = rt.schedule("primes", {TaskArg::ref(*in)});
    CHECK_OK(r);
    firsts.push_back(*r);
    want_first.push_back(apps::primes_of(lists.back()));
  }
  for (int i = 0; i < kLists; ++i) {
    int j = (i + 7) % kLists;
    auto r = rt.schedule("multiply", {TaskArg::ref(firsts[i]), TaskArg::ref(firsts[j])});
    CHECK_OK(r);
    seconds.push_back(*r);
    want_second.push_back(apps::multiply(want_first[i], want_first[j]));
  }
  // Task 3 over every Task 1 result, scheduled while they still run.
  std::vector<TaskArg> all;
  List want_product = want_first[0];
  for (int i = 0; i < kLists; ++i) {
    all.push_back(TaskArg::ref(firsts[i]));
    if (i) want_product = apps::multiply(want_product, want_first[i]);
  }
  auto product = rt.schedule("product", all);
  CHECK_OK(product);

  // Every answer, fetched concurrently.
  std::vector<ObjectRef> refs = firsts;
  refs.insert(refs.end(), seconds.begin(), seconds.end());
  refs.push_back(*product);
  std::vector<List> want = want_first;
  want.insert(want.end(), want_second.begin(), want_second.end());
  want.push_back(want_product);
  std::vector<std::future<std::string>> checks;
  for (std::size_t i = 0; i < refs.size(); ++i) {
    checks.push_back(std::async(std::launch::async, [&, i]() -> std::string {
      auto v = rt.get(refs[i], kWait);
      if (!v.is_ok()) return v.status().to_string();
      if (apps::list_of(v->bytes()) != want[i]) return "result " + std::to_string(i) + " differs";
      return "";
    }));
  }
  for (auto& c : checks) CHECK_EQ(c.get(), std::string());
  CHECK_EQ(rt.stats().scheduled, static_cast<std::uint64_t>(2 * kLists + 1));
  // Least-outstanding placement used every node.
  std::set<int> producers;
  for (const auto& r : refs) producers.insert(r.producer);
  CHECK_EQ(static_cast<int>(producers.size()), rt.node().world_size());

  // Everything deleted, then not found.
  for (const auto& r : refs) CHECK_OK(rt.remove(r));
  GetOptions must;
  must.must_exist = true;
  for (const auto& r : refs) {
    auto v = rt.get(r, kWait, must);
    CHECK_FALSE(v.is_ok());
    CHECK_EQ(v.status().code(), StatusCode::kNotFound);
  }
  return 0;
}

TEST(TaskRuntime, SeedMainTestCollective) {
  EXPECT_EQ(itest::run_cluster(4, [](Node& node) { return with_runtime(node, test_tasks(), {}, seed_main); }),
            0);
}

TEST(TaskRuntime, SeedMainTestDirect) {
  TaskRuntimeOptions o;
  o.transfer = TransferPolicy::kDirect;
  EXPECT_EQ(itest::run_cluster(3, [&](Node& node) { return with_runtime(node, test_tasks(), o, seed_main); }),
            0);
}

// Any k of n through the node's reduce, and the same folded at the task
// under kDirect: the sum of the inputs that arrived.
int reduce_body(TaskRuntime& rt) {
  constexpr int kInputs = 6;
  constexpr std::size_t kFloats = 300000;  // beyond inline: a real tree
  std::vector<TaskArg> args;
  for (int i = 0; i < kInputs; ++i) {
    std::vector<float> v(kFloats, static_cast<float>(1 << i));
    auto in = rt.put(std::as_bytes(std::span(v)));
    CHECK_OK(in);
    args.push_back(TaskArg::ref(*in));
  }
  // Two value arguments: not reduced, and k = n - 2 of the references.
  const char tag[] = "tag";
  args.push_back(TaskArg::value(std::as_bytes(std::span(tag))));
  args.push_back(TaskArg::value(std::as_bytes(std::span(tag))));
  auto r = rt.schedule("sum_f32", args);
  CHECK_OK(r);
  auto v = rt.get(*r, kWait);
  CHECK_OK(v);
  CHECK_EQ(v->size(), kFloats * sizeof(float));
  const float* f = reinterpret_cast<const float*>(v->data());
  // Six inputs, k = 6: every power of two once.
  CHECK_EQ(f[0], 63.0f);
  CHECK_EQ(f[kFloats - 1], 63.0f);

  // The runtime's own reduce, any 3 of 6, and wait() for 2 of them.
  std::vector<ObjectRef> refs;
  for (int i = 0; i < kInputs; ++i) refs.push_back(args[i].object);
  auto ready = rt.wait(refs, 2, kWait);
  CHECK_OK(ready);
  CHECK_EQ(ready->size(), 2u);
  CHECK_TRUE((*ready)[0] != (*ready)[1]);
  const ObjectID target = ObjectID::random();
  auto red = rt.reduce(refs, target, ReduceOp::kSum, DataType::kFloat32, 3, kWait);
  CHECK_OK(red);
  CHECK_EQ(red->used.size(), 3u);
  float want = 0;
  for (const auto& id : red->used) {
    for (int i = 0; i < kInputs; ++i) {
      if (refs[i].id == id) want += static_cast<float>(1 << i);
    }
  }
  auto sum = rt.get(ObjectRef{target, -1}, kWait);
  CHECK_OK(sum);
  CHECK_EQ(reinterpret_cast<const float*>(sum->data())[kFloats / 2], want);
  return 0;
}

TEST(TaskRuntime, ReduceArgsThroughTheNode) {
  EXPECT_EQ(
      itest::run_cluster(4, [](Node& node) { return with_runtime(node, test_tasks(), {}, reduce_body); }), 0);
}

TEST(TaskRuntime, ReduceArgsFoldedAtTheTaskUnderDirect) {
  TaskRuntimeOptions o;
  o.transfer = TransferPolicy::kDirect;
  EXPECT_EQ(
      itest::run_cluster(4, [&](Node& node) { return with_runtime(node, test_tasks(), o, reduce_body); }), 0);
}

int errors_body(TaskRuntime& rt) {
  List l{2, 3, 4, 5};
  auto in = rt.put(apps::bytes_of(l));
  CHECK_OK(in);
  auto bad = rt.schedule("fail", {TaskArg::ref(*in)}, {.rank = 2});
  CHECK_OK(bad);
  // A dependent on the failed task, and one on that dependent: both end
  // with the original error, not a hang.
  auto dep = rt.schedule("multiply", {TaskArg::ref(*bad), TaskArg::ref(*in)}, {.rank = 1});
  CHECK_OK(dep);
  auto dep2 = rt.schedule("product", {TaskArg::ref(*in), TaskArg::ref(*dep)}, {.rank = 0});
  CHECK_OK(dep2);
  for (const auto& r : {*bad, *dep, *dep2}) {
    auto v = rt.get(r, kWait);
    CHECK_FALSE(v.is_ok());
    CHECK_EQ(v.status().code(), StatusCode::kInvalidArgument);
    const std::string& m = v.status().message();
    CHECK_TRUE(m.find("task fail") != std::string::npos);
    CHECK_TRUE(m.find("on rank 2") != std::string::npos);
    CHECK_TRUE(m.find("rejected on purpose") != std::string::npos);
  }
  auto dm = rt.get(*dep2, kWait).status().message();
  CHECK_TRUE(dm.find("task product") != std::string::npos);
  CHECK_TRUE(dm.find("task multiply") != std::string::npos);

  auto thrown = rt.schedule("throw", {});
  CHECK_OK(thrown);
  auto t = rt.get(*thrown, kWait);
  CHECK_EQ(t.status().code(), StatusCode::kInternal);
  CHECK_TRUE(t.status().message().find("a bad_alloc of sorts") != std::string::npos);

  auto none = rt.schedule("no_result", {});
  CHECK_OK(none);
  CHECK_TRUE(rt.get(*none, kWait).status().message().find("without writing") != std::string::npos);

  auto unknown = rt.schedule("no_such_function", {});
  CHECK_OK(unknown);
  CHECK_EQ(rt.get(*unknown, kWait).status().code(), StatusCode::kNotFound);

  // A get that times out leaves the task running; a later get has it.
  auto slow = rt.schedule("sleep", {}, {.rank = 3});
  CHECK_OK(slow);
  auto early = rt.get(*slow, milliseconds(200));
  CHECK_EQ(early.status().code(), StatusCode::kTimeout);
  auto late = rt.get(*slow, kWait);
  CHECK_OK(late);
  CHECK_EQ(std::string(reinterpret_cast<const char*>(late->data())), std::string("awake"));
  return 0;
}

TEST(TaskRuntime, ErrorsReachEveryDependentAndGetsTimeOut) {
  EXPECT_EQ(
      itest::run_cluster(4, [](Node& node) { return with_runtime(node, test_tasks(), {}, errors_body); }), 0);
}

}  // namespace
}  // namespace hoplite
