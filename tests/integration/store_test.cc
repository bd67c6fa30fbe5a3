// The store's life cycle across real processes: a global remove reaches
// every copy and frees the id for a new put, and a full store refuses puts
// and gets cleanly without disturbing what it already holds or serves.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "cluster.h"
#include "hoplite/node.h"

namespace hoplite::itest {
namespace {

using std::chrono::milliseconds;

constexpr std::uint64_t kMiB = 1u << 20;

// One object the directory carries inline and one that moves by chunks: a
// remove has to reach the copies of both kinds.
class RemoveTest : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(RemoveTest, GlobalRemoveForgetsEveryCopyAndFreesTheId) {
  constexpr int kRanks = 4;
  const std::uint64_t size = GetParam();
  const ObjectID id = ObjectID::from_name("remove/" + std::to_string(size));

  int rc = run_cluster(kRanks, [&](Node& node) -> int {
    if (node.rank() == 0) CHECK_OK(node.put(id, make_pattern(size, 1)));
    CHECK_OK(node.barrier(kWait));
    if (node.rank() != 0) {
      ASSIGN_OR_FAIL(ObjectView view, node.get(id).wait(kWait));
      CHECK_PATTERN(view.bytes(), size, 1);
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) {
      CHECK_OK(node.remove(id));
      CHECK_FALSE(node.contains(id));
    }
    CHECK_OK(node.barrier(kWait));

    // remove() returns once the directory has forgotten the object; the
    // holders' Delete messages travel on other connections, so a remote copy
    // may outlive the barrier by a moment, but not by seconds.
    if (!wait_until([&] { return !node.contains(id); }, milliseconds(5000))) {
      FAIL_BODY("the local copy outlived the global remove by 5 s");
    }
    CHECK_CODE(node.get(id, {.must_exist = true}).wait(kWait), StatusCode::kNotFound);
    ObjectFuture parked;
    if (node.rank() != 0) {
      parked = node.get(id);
      CHECK_CODE(parked.wait(milliseconds(300)), StatusCode::kTimeout);
    }
    NodeStats stats = node.stats();
    CHECK_EQ(stats.objects, 0u);
    CHECK_EQ(stats.store_used, 0u);
    CHECK_OK(node.barrier(kWait));

    // The id is free: a new put with other contents answers the parked gets.
    if (node.rank() == 0) {
      CHECK_OK(node.put(id, make_pattern(size, 2)));
    } else {
      ASSIGN_OR_FAIL(ObjectView view, parked.wait(kWait));
      CHECK_PATTERN(view.bytes(), size, 2);
      ASSIGN_OR_FAIL(ObjectView again, node.get(id).wait(kWait));
      CHECK_TRUE(again.data() == view.data());
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

INSTANTIATE_TEST_SUITE_P(Objects, RemoveTest, ::testing::Values(2 * kMiB + 7, 100), [](const auto& info) {
  return std::string(info.param <= (64u << 10) ? "Inline" : "Chunked");
});

TEST(CapacityTest, FullStoreRefusesCleanlyAndKeepsServing) {
  constexpr int kRanks = 3;
  ClusterOptions opts;
  opts.store_capacity = 64 * kMiB;
  const ObjectID huge = ObjectID::from_name("full/huge");
  const ObjectID first = ObjectID::from_name("full/first");
  const ObjectID second = ObjectID::from_name("full/second");
  const ObjectID filler = ObjectID::from_name("full/filler");
  const ObjectID after = ObjectID::from_name("full/after");
  constexpr std::uint64_t k40 = 40 * kMiB;

  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        if (node.rank() == 0) {
          NodeStats before = node.stats();
          CHECK_EQ(before.store_capacity, 64 * kMiB);
          CHECK_CODE(node.put(huge, make_pattern(100 * kMiB, 1)), StatusCode::kCapacity);
          CHECK_FALSE(node.contains(huge));
          NodeStats now = node.stats();
          CHECK_EQ(now.store_used, before.store_used);
          CHECK_EQ(now.objects, before.objects);

          CHECK_OK(node.put(first, make_pattern(k40, 2)));
          NodeStats one = node.stats();
          CHECK_CODE(node.put(second, make_pattern(k40, 3)), StatusCode::kCapacity);
          CHECK_CODE(node.create(second, k40), StatusCode::kCapacity);
          CHECK_FALSE(node.contains(second));
          CHECK_TRUE(node.contains(first));
          CHECK_EQ(node.stats().store_used, one.store_used);
        }
        CHECK_OK(node.barrier(kWait));
        if (node.rank() == 1) {
          CHECK_OK(node.put(filler, make_pattern(k40, 4)));
          std::uint64_t used = node.stats().store_used;
          CHECK_CODE(node.get(first).wait(kWait), StatusCode::kCapacity);
          CHECK_FALSE(node.contains(first));
          CHECK_EQ(node.local_progress(first), 0u);
          CHECK_EQ(node.stats().store_used, used);
          // Room made, the same get succeeds: the failed one left nothing
          // behind in the directory that would stop it.
          CHECK_OK(node.remove(filler, RemoveScope::kLocal));
          ASSIGN_OR_FAIL(ObjectView view, node.get(first).wait(kWait));
          CHECK_PATTERN(view.bytes(), k40, 2);
        }
        CHECK_OK(node.barrier(kWait));
        if (node.rank() == 0) CHECK_OK(node.put(after, make_pattern(kMiB, 5)));
        CHECK_OK(node.barrier(kWait));
        if (node.rank() != 0) {
          ASSIGN_OR_FAIL(ObjectView view, node.get(after).wait(kWait));
          CHECK_PATTERN(view.bytes(), kMiB, 5);
          ASSIGN_OR_FAIL(ObjectView f, node.get(first).wait(kWait));
          CHECK_PATTERN(f.bytes(), k40, 2);
        }
        CHECK_OK(node.barrier(kWait));
        return 0;
      },
      opts);
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace hoplite::itest
