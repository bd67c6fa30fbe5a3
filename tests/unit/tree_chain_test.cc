// The reduce coordinator's decisions, driven by sequences of events: where
// arrivals go, which tasks start, and what a failure costs (resume under a
// parent that keeps its progress, recompute the path above for another
// input, nothing for a position already folded into a finished parent).
#include "scheduler/tree_chain.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace hoplite::scheduler {
namespace {

using Rank = TreeChain::Rank;

// Records every effect; issuing (and resuming an inner position) assigns a
// task the way the coordinator does.
struct Recorder final : TreeChain::Effects {
  TreeChain* chain = nullptr;
  std::set<Rank> dead;
  std::vector<std::string> log;
  std::uint64_t next_task = 100;

  bool alive(Rank r) const override { return !dead.count(r); }
  void issue(std::uint32_t pos) override {
    log.push_back("issue " + std::to_string(pos));
    chain->assign(pos, next_task++, out(pos));
  }
  void resume(std::uint32_t pos, const ObjectID& old_output) override {
    log.push_back("resume " + std::to_string(pos) + (old_output == chain->output(pos) ? " same" : " new"));
    if (!chain->shape().children[pos].empty()) chain->assign(pos, next_task++, out(pos), true);
  }
  void drop_task(std::uint64_t task, Rank, const ObjectID&, bool cancel) override {
    log.push_back((cancel ? "cancel " : "drop ") + std::to_string(task));
  }
  void locate_unused() override { log.push_back("locate"); }

  ObjectID out(std::uint32_t pos) const {
    return ObjectID::from_name("out/" + std::to_string(pos) + "/" + std::to_string(chain->generation(pos)));
  }
  std::vector<std::string> take() { return std::exchange(log, {}); }
};

ObjectID input(char c) {
  return ObjectID::from_name(std::string("input/") + c);
}

using Log = std::vector<std::string>;

// A chain of four: positions 0 <- 1 <- 2 <- 3 (the root), inputs a..d
// held by ranks 0..3, every task issued (tasks 100, 101, 102).
struct ChainOfFour : ::testing::Test {
  TreeChain chain{plan_reduce_with_depth(4, 0), 4};
  Recorder fx;
  void SetUp() override {
    fx.chain = &chain;
    for (int i = 0; i < 4; ++i) chain.place(input(static_cast<char>('a' + i)), static_cast<Rank>(i), fx);
    ASSERT_EQ(fx.take(), (Log{"issue 1", "issue 2", "issue 3"}));
  }
};

TEST_F(ChainOfFour, EachPositionStartsOnceItsChildIsPlaced) {
  EXPECT_EQ(chain.output(0), input('a'));  // a leaf's result is its input
  EXPECT_EQ(chain.task(1), 100u);
  EXPECT_EQ(chain.task(3), 102u);
  EXPECT_EQ(chain.used(), (std::vector<ObjectID>{input('a'), input('b'), input('c'), input('d')}));
  EXPECT_TRUE(chain.uses(2));
  EXPECT_FALSE(chain.uses(7));
  EXPECT_FALSE(chain.task_done(100));
  EXPECT_FALSE(chain.task_done(101));
  EXPECT_TRUE(chain.task_done(102));
  EXPECT_EQ(chain.recomputed(), 0u);
}

TEST_F(ChainOfFour, TheSameInputBackResumesUnderItsRunningParent) {
  fx.dead.insert(1);
  EXPECT_TRUE(chain.repair(fx));
  // Position 1's task is gone with its holder; its parent keeps running.
  EXPECT_EQ(fx.take(), (Log{"drop 100", "locate"}));
  EXPECT_FALSE(chain.uses(1) && !chain.has_vacancy());
  // A copy of b on rank 4: the parent reads the same computation from there.
  chain.place(input('b'), 4, fx);
  EXPECT_EQ(fx.take(), (Log{"resume 1 same"}));
  EXPECT_EQ(chain.holder(1), 4u);
  EXPECT_EQ(chain.task(2), 101u);  // untouched
  EXPECT_EQ(chain.task(3), 102u);
  EXPECT_EQ(chain.recomputed(), 1u);
}

TEST_F(ChainOfFour, AnotherInputRecomputesOnlyThePathAbove) {
  fx.dead.insert(1);
  EXPECT_TRUE(chain.repair(fx));
  fx.take();
  // A spare (any k of n) takes the position: every partial result above
  // folded the lost input, so those tasks are cancelled and issued again;
  // position 0 (below) keeps its result.
  chain.place(input('e'), 4, fx);
  EXPECT_EQ(fx.take(), (Log{"cancel 101", "cancel 102", "issue 1", "issue 2", "issue 3"}));
  EXPECT_EQ(chain.output(0), input('a'));
  EXPECT_EQ(chain.recomputed(), 3u);
  EXPECT_TRUE(chain.task_done(chain.task(3)));
  EXPECT_EQ(chain.used(), (std::vector<ObjectID>{input('a'), input('c'), input('d'), input('e')}));
}

TEST_F(ChainOfFour, AFailureBelowAFinishedParentCostsNothing) {
  EXPECT_FALSE(chain.task_done(100));  // position 1 folded all of a
  fx.dead.insert(0);
  EXPECT_FALSE(chain.repair(fx));
  EXPECT_TRUE(fx.take().empty());
  EXPECT_FALSE(chain.has_vacancy());
}

TEST_F(ChainOfFour, AParentThatFinishesGivesBackItsVacatedChild) {
  fx.dead.insert(0);
  EXPECT_TRUE(chain.repair(fx));
  EXPECT_EQ(fx.take(), (Log{"locate"}));  // a leaf has no task to drop
  EXPECT_TRUE(chain.has_vacancy());
  // Position 1 completes before a copy of a turns up: it had folded all of
  // a before rank 0 died, so a is in the result and nothing is refilled.
  EXPECT_FALSE(chain.task_done(100));
  EXPECT_FALSE(chain.has_vacancy());
  EXPECT_TRUE(chain.has_input(input('a')));
}

TEST_F(ChainOfFour, ALostTaskIsIssuedAgainWithThePathAbove) {
  EXPECT_TRUE(chain.task_lost(101, fx));
  EXPECT_EQ(fx.take(), (Log{"drop 101", "cancel 102"}));
  chain.issue_ready(fx);
  EXPECT_EQ(fx.take(), (Log{"issue 2", "issue 3"}));
  EXPECT_FALSE(chain.task_lost(999, fx));  // not ours
}

TEST_F(ChainOfFour, TheRootsHolderDyingRecomputesTheRoot) {
  fx.dead.insert(3);
  EXPECT_TRUE(chain.repair(fx));
  EXPECT_EQ(fx.take(), (Log{"drop 102", "locate"}));
  chain.place(input('d'), 5, fx);
  EXPECT_EQ(fx.take(), (Log{"issue 3"}));
  EXPECT_EQ(chain.holder(3), 5u);
}

TEST_F(ChainOfFour, AResumedPositionIsRecomputedWholeWhenItsParentStartsOver) {
  fx.dead.insert(1);
  EXPECT_TRUE(chain.repair(fx));
  chain.place(input('b'), 4, fx);  // resumed: computes only from the parent's point
  fx.take();
  const std::uint64_t resumed = chain.task(1);
  // Now the parent's holder dies too, and a spare takes its place: the
  // parent starts from byte 0 and needs all of position 1's output.
  fx.dead.insert(2);
  EXPECT_TRUE(chain.repair(fx));
  // The root keeps its progress for now: the same c may come back.
  EXPECT_EQ(fx.take(), (Log{"drop 101", "locate"}));
  chain.place(input('e'), 6, fx);
  EXPECT_EQ(fx.take(),
            (Log{"cancel 102", "cancel " + std::to_string(resumed), "issue 1", "issue 2", "issue 3"}));
}

TEST(TreeChain, ATreeStartsItsRootWhenBothSubtreesArePlaced) {
  // Depth 1 over three inputs: two leaves under the root.
  TreeChain chain(plan_reduce_with_depth(3, 1), 3);
  Recorder fx;
  fx.chain = &chain;
  chain.place(input('a'), 0, fx);
  chain.place(input('b'), 1, fx);
  EXPECT_TRUE(fx.take().empty());
  chain.place(input('c'), 2, fx);
  EXPECT_EQ(fx.take(), (Log{"issue " + std::to_string(chain.root())}));
  // A leaf's holder dying while the root runs: the root keeps its progress
  // until the same input comes back.
  fx.dead.insert(1);
  EXPECT_TRUE(chain.repair(fx));
  EXPECT_EQ(fx.take(), (Log{"locate"}));
  chain.place(input('b'), 3, fx);
  EXPECT_EQ(fx.take(), (Log{"resume 1 same"}));
}

TEST(TreeChain, AChildLeftOnADeadRankIsNeededAgainWhenItsParentIsLost) {
  // Rank 0's death cost nothing while position 1 had folded all of a; once
  // position 1's holder dies too (its parent still running), a is needed
  // again and the whole path is recomputed from the refills.
  TreeChain chain(plan_reduce_with_depth(3, 0), 3);
  Recorder fx;
  fx.chain = &chain;
  for (int i = 0; i < 3; ++i) chain.place(input(static_cast<char>('a' + i)), static_cast<Rank>(i), fx);
  fx.take();
  chain.task_done(chain.task(1));
  fx.dead.insert(0);
  EXPECT_FALSE(chain.repair(fx));
  fx.dead.insert(1);
  EXPECT_TRUE(chain.repair(fx));
  EXPECT_EQ(fx.take(), (Log{"drop 100", "cancel 101", "locate"}));
  // Refills go to the lowest vacated position first (children before
  // parents); nothing starts until both are in.
  chain.place(input('a'), 4, fx);
  EXPECT_TRUE(fx.take().empty());
  EXPECT_EQ(chain.holder(0), 4u);
  chain.place(input('b'), 5, fx);
  EXPECT_EQ(fx.take(), (Log{"issue 1", "issue 2"}));
}

}  // namespace
}  // namespace hoplite::scheduler

namespace hoplite::scheduler {
namespace {

// The caller's input arriving first waits for the root, and is placed once
// it is the last one missing, so the target is written on the caller.
TEST(KeepForRootTest, TheCallersInputWaitsForTheRootPosition) {
  TreeChain chain{plan_reduce_with_depth(3, 0), 3};
  Recorder fx;
  fx.chain = &chain;
  EXPECT_TRUE(keep_for_root(true, false, chain));
  EXPECT_FALSE(keep_for_root(true, true, chain));
  EXPECT_FALSE(keep_for_root(false, false, chain));
  chain.place(input('a'), 1, fx);
  EXPECT_FALSE(place_kept_now(chain));
  chain.place(input('b'), 2, fx);
  EXPECT_TRUE(place_kept_now(chain));
  // As the last arrival it is not kept: it takes the root at once.
  EXPECT_FALSE(keep_for_root(true, false, chain));
  chain.place(input('c'), 0, fx);
  EXPECT_EQ(chain.holder(chain.root()), 0u);
}

}  // namespace
}  // namespace hoplite::scheduler
