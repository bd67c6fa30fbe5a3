// DirectoryShard and BroadcastPlanner: who answers a lookup, with which
// sender, and how chains form and split as copies complete.
//
// The expected senders follow the rule in broadcast_planner.h: a receiver is
// given the tail of the shortest chain, ties going to the earliest chain.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "control/messages.h"
#include "directory/shard.h"
#include "hoplite/object_id.h"
#include "scheduler/broadcast_planner.h"

namespace hoplite {

void PrintTo(const ObjectID& id, std::ostream* os) {
  *os << id.hex();
}

namespace {

using control::LocationState;
using control::LookupResult;
using control::Rank;
using directory::DirectoryShard;
using directory::Reply;
using scheduler::BroadcastPlanner;
using Chains = std::vector<std::vector<Rank>>;

control::Publish Pub(const ObjectID& id, Rank rank, std::uint64_t size,
                     LocationState state = LocationState::kComplete) {
  control::Publish p;
  p.id = id;
  p.rank = rank;
  p.size = size;
  p.state = state;
  return p;
}

control::Publish InlinePub(const ObjectID& id, Rank rank, std::vector<std::uint8_t> data) {
  control::Publish p = Pub(id, rank, data.size());
  p.has_inline = true;
  p.inline_data = std::move(data);
  return p;
}

control::Lookup Look(const ObjectID& id, Rank requester, std::uint64_t request = 0, bool must_exist = false) {
  return control::Lookup{id, request, requester, must_exist, false};
}

std::vector<Rank> Sorted(std::vector<Rank> v) {
  std::sort(v.begin(), v.end());
  return v;
}

bool HasDuplicates(std::vector<Rank> v) {
  std::sort(v.begin(), v.end());
  return std::adjacent_find(v.begin(), v.end()) != v.end();
}

// Looks `requester` up and expects an immediate sender reply; returns the
// sender (kNoRank on failure, which the expectations then report).
Rank SenderFor(DirectoryShard& shard, const ObjectID& id, Rank requester, std::uint64_t size) {
  auto r = shard.lookup(Look(id, requester, 1000 + requester));
  EXPECT_TRUE(r.has_value()) << "lookup from " << requester << " was parked";
  if (!r) return control::kNoRank;
  EXPECT_EQ(r->to, requester);
  EXPECT_EQ(r->reply.id, id);
  EXPECT_EQ(r->reply.request, 1000 + requester);
  EXPECT_EQ(r->reply.result, LookupResult::kSender);
  EXPECT_EQ(r->reply.size, size);
  EXPECT_NE(r->reply.sender, requester);
  return r->reply.sender;
}

// --------------------------------------------------------- DirectoryShard

TEST(DirectoryShard, LookupBeforePublishWaitsForThePublish) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("late");
  EXPECT_FALSE(shard.lookup(Look(id, 1, 7)).has_value());
  EXPECT_EQ(shard.waiting(id), 1u);
  EXPECT_FALSE(shard.knows(id));

  std::vector<Reply> replies = shard.publish(Pub(id, 0, 4096));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].to, 1u);
  EXPECT_EQ(replies[0].reply.id, id);
  EXPECT_EQ(replies[0].reply.request, 7u);
  EXPECT_EQ(replies[0].reply.result, LookupResult::kSender);
  EXPECT_EQ(replies[0].reply.size, 4096u);
  EXPECT_EQ(replies[0].reply.sender, 0u);
  EXPECT_EQ(shard.waiting(id), 0u);
  EXPECT_TRUE(shard.knows(id));
  EXPECT_EQ(Sorted(shard.locations(id)), (std::vector<Rank>{0, 1}));
}

TEST(DirectoryShard, PublishAnswersEveryWaiterAsAChain) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("waiters");
  for (Rank r : {1, 2, 3}) EXPECT_FALSE(shard.lookup(Look(id, r, 10 + r)).has_value());
  EXPECT_EQ(shard.waiting(id), 3u);

  std::vector<Reply> replies = shard.publish(Pub(id, 0, 100));
  ASSERT_EQ(replies.size(), 3u);
  // Waiters are planned in arrival order, each behind the previous one.
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(replies[i].to, i + 1);
    EXPECT_EQ(replies[i].reply.request, 10 + i + 1);
    EXPECT_EQ(replies[i].reply.sender, i);
    EXPECT_EQ(replies[i].reply.size, 100u);
  }
  EXPECT_EQ(shard.waiting(id), 0u);
}

TEST(DirectoryShard, WaitersOnOtherObjectsKeepWaiting) {
  DirectoryShard shard;
  const ObjectID a = ObjectID::from_name("a");
  const ObjectID b = ObjectID::from_name("b");
  EXPECT_FALSE(shard.lookup(Look(b, 1)).has_value());
  EXPECT_TRUE(shard.publish(Pub(a, 0, 8)).empty());
  EXPECT_EQ(shard.waiting(b), 1u);
  EXPECT_FALSE(shard.knows(b));
}

TEST(DirectoryShard, MustExistLookupOfUnknownIdIsNotFound) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("nobody");
  auto r = shard.lookup(Look(id, 5, 42, /*must_exist=*/true));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->to, 5u);
  EXPECT_EQ(r->reply.id, id);
  EXPECT_EQ(r->reply.request, 42u);
  EXPECT_EQ(r->reply.result, LookupResult::kNotFound);
  // Nothing is parked, so a later publish answers nobody.
  EXPECT_EQ(shard.waiting(id), 0u);
  EXPECT_TRUE(shard.publish(Pub(id, 0, 1)).empty());
}

TEST(DirectoryShard, MustExistLookupOfKnownIdGetsASender) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("known");
  shard.publish(Pub(id, 2, 64));
  auto r = shard.lookup(Look(id, 3, 1, /*must_exist=*/true));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reply.result, LookupResult::kSender);
  EXPECT_EQ(r->reply.sender, 2u);
}

TEST(DirectoryShard, InlineObjectsAreAnsweredWithTheirBytes) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("small");
  const std::vector<std::uint8_t> bytes = {1, 2, 3, 4, 5};
  EXPECT_FALSE(shard.lookup(Look(id, 2, 9)).has_value());

  std::vector<Reply> replies = shard.publish(InlinePub(id, 0, bytes));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].to, 2u);
  EXPECT_EQ(replies[0].reply.request, 9u);
  EXPECT_EQ(replies[0].reply.result, LookupResult::kInline);
  EXPECT_EQ(replies[0].reply.size, bytes.size());
  EXPECT_EQ(replies[0].reply.inline_data, bytes);

  auto r = shard.lookup(Look(id, 3, 10));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->to, 3u);
  EXPECT_EQ(r->reply.result, LookupResult::kInline);
  EXPECT_EQ(r->reply.inline_data, bytes);
  // Inline readers copy from the directory, not from a peer, so they join
  // no chain.
  EXPECT_EQ(shard.locations(id), (std::vector<Rank>{0}));
}

TEST(DirectoryShard, EmptyInlineObjectIsAnsweredInline) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("empty");
  shard.publish(InlinePub(id, 0, {}));
  auto r = shard.lookup(Look(id, 1));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reply.result, LookupResult::kInline);
  EXPECT_EQ(r->reply.size, 0u);
  EXPECT_TRUE(r->reply.inline_data.empty());
}

TEST(DirectoryShard, ChainsFormAndSplitOnCompletion) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("chain");
  constexpr std::uint64_t kSize = 1 << 20;
  EXPECT_TRUE(shard.publish(Pub(id, 0, kSize)).empty());

  // One chain [0]: each receiver streams from the one before it.
  EXPECT_EQ(SenderFor(shard, id, 1, kSize), 0u);  // [0 1]
  EXPECT_EQ(SenderFor(shard, id, 2, kSize), 1u);  // [0 1 2]
  EXPECT_EQ(SenderFor(shard, id, 3, kSize), 2u);  // [0 1 2 3]

  // 1 completes: [0] and [1 2 3].
  EXPECT_TRUE(shard.publish(Pub(id, 1, kSize)).empty());
  EXPECT_EQ(Sorted(shard.locations(id)), (std::vector<Rank>{0, 1, 2, 3}));
  EXPECT_EQ(SenderFor(shard, id, 4, kSize), 0u);  // shortest [0] -> [0 4], [1 2 3]
  EXPECT_EQ(SenderFor(shard, id, 5, kSize), 4u);  // shortest [0 4] -> [0 4 5], [1 2 3]
  EXPECT_EQ(SenderFor(shard, id, 6, kSize), 5u);  // tie at 3, earliest chain [0 4 5]
  EXPECT_EQ(SenderFor(shard, id, 7, kSize), 3u);  // shortest [1 2 3]
  EXPECT_FALSE(HasDuplicates(shard.locations(id)));
  EXPECT_EQ(shard.locations(id).size(), 8u);
}

TEST(DirectoryShard, PartialOriginServesReceivers) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("streaming");
  EXPECT_FALSE(shard.lookup(Look(id, 1, 3)).has_value());
  std::vector<Reply> replies = shard.publish(Pub(id, 0, 500, LocationState::kPartial));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].reply.result, LookupResult::kSender);
  EXPECT_EQ(replies[0].reply.sender, 0u);
  EXPECT_EQ(SenderFor(shard, id, 2, 500), 1u);

  // The origin finishing changes nothing: it already heads the chain.
  EXPECT_TRUE(shard.publish(Pub(id, 0, 500)).empty());
  EXPECT_EQ(SenderFor(shard, id, 3, 500), 2u);
}

TEST(DirectoryShard, RemoveReturnsEveryHolder) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("doomed");
  shard.publish(Pub(id, 0, 64));
  SenderFor(shard, id, 1, 64);
  SenderFor(shard, id, 2, 64);
  shard.publish(Pub(id, 1, 64));  // complete, now heads its own chain
  shard.publish(Pub(id, 3, 64, LocationState::kPartial));

  EXPECT_EQ(Sorted(shard.remove(id)), (std::vector<Rank>{0, 1, 2, 3}));
  EXPECT_FALSE(shard.knows(id));
  EXPECT_TRUE(shard.locations(id).empty());
  EXPECT_EQ(shard.size(), 0u);
  EXPECT_TRUE(shard.remove(id).empty());
  EXPECT_TRUE(shard.remove(ObjectID::from_name("never")).empty());

  // Gone means gone: a must_exist lookup is NotFound, a plain one waits.
  auto r = shard.lookup(Look(id, 4, 1, /*must_exist=*/true));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reply.result, LookupResult::kNotFound);
}

TEST(DirectoryShard, LookupsWaitingAcrossRemoveAreAnsweredByTheNextPublish) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("reput");
  EXPECT_FALSE(shard.lookup(Look(id, 2, 20)).has_value());
  EXPECT_TRUE(shard.remove(id).empty());
  EXPECT_EQ(shard.waiting(id), 1u);

  // A put, a delete, and a lookup that arrives after the delete.
  shard.publish(Pub(id, 0, 10));
  ASSERT_EQ(shard.waiting(id), 0u);
  EXPECT_EQ(Sorted(shard.remove(id)), (std::vector<Rank>{0, 2}));
  EXPECT_FALSE(shard.lookup(Look(id, 3, 30)).has_value());
  EXPECT_FALSE(shard.lookup(Look(id, 4, 40)).has_value());
  EXPECT_TRUE(shard.remove(id).empty());
  EXPECT_EQ(shard.waiting(id), 2u);
  EXPECT_FALSE(shard.knows(id));

  std::vector<Reply> replies = shard.publish(Pub(id, 5, 11));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].to, 3u);
  EXPECT_EQ(replies[0].reply.request, 30u);
  EXPECT_EQ(replies[0].reply.sender, 5u);
  EXPECT_EQ(replies[0].reply.size, 11u);
  EXPECT_EQ(replies[1].to, 4u);
  EXPECT_EQ(replies[1].reply.request, 40u);
  EXPECT_EQ(replies[1].reply.sender, 3u);
  EXPECT_EQ(shard.waiting(id), 0u);
}

TEST(DirectoryShard, RemoveForgetsInlineBytes) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("inline-doomed");
  shard.publish(InlinePub(id, 0, {7, 7}));
  EXPECT_EQ(shard.remove(id), (std::vector<Rank>{0}));
  EXPECT_FALSE(shard.lookup(Look(id, 1)).has_value());
  EXPECT_EQ(shard.waiting(id), 1u);
}

TEST(DirectoryShard, UnpublishedReceiverLeavesItsChain) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("leaver");
  shard.publish(Pub(id, 0, 64));
  SenderFor(shard, id, 1, 64);
  SenderFor(shard, id, 2, 64);
  SenderFor(shard, id, 3, 64);  // [0 1 2 3]

  shard.unpublish(id, 2);
  EXPECT_EQ(Sorted(shard.locations(id)), (std::vector<Rank>{0, 1, 3}));
  EXPECT_EQ(SenderFor(shard, id, 4, 64), 3u);  // [0 1 3 4]
  shard.unpublish(id, 4);
  EXPECT_EQ(SenderFor(shard, id, 5, 64), 3u);  // the tail is 3 again

  // Unknown ranks and ids are ignored.
  shard.unpublish(id, 99);
  shard.unpublish(ObjectID::from_name("unknown"), 0);
  EXPECT_EQ(Sorted(shard.locations(id)), (std::vector<Rank>{0, 1, 3, 5}));
}

TEST(DirectoryShard, UnpublishingTheLastCopyForgetsTheObject) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("last");
  shard.publish(Pub(id, 0, 64));
  shard.unpublish(id, 0);
  EXPECT_FALSE(shard.knows(id));
  EXPECT_EQ(shard.size(), 0u);
  auto r = shard.lookup(Look(id, 1, 1, /*must_exist=*/true));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reply.result, LookupResult::kNotFound);
}

TEST(DirectoryShard, InlineObjectOutlivesItsLastCopy) {
  // Its bytes live in the directory, so holders leaving does not lose it.
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("inline-kept");
  shard.publish(InlinePub(id, 0, {1, 2, 3}));
  shard.unpublish(id, 0);
  EXPECT_TRUE(shard.knows(id));
  auto r = shard.lookup(Look(id, 1));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reply.result, LookupResult::kInline);
  EXPECT_EQ(r->reply.inline_data, (std::vector<std::uint8_t>{1, 2, 3}));
}

TEST(DirectoryShard, RepeatedLookupIsReplannedNotDuplicated) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("again");
  shard.publish(Pub(id, 0, 64));
  EXPECT_EQ(SenderFor(shard, id, 1, 64), 0u);  // [0 1]
  EXPECT_EQ(SenderFor(shard, id, 2, 64), 1u);  // [0 1 2]
  // 1 asks again (its transfer failed): it leaves its place and joins the
  // tail, behind 2.
  EXPECT_EQ(SenderFor(shard, id, 1, 64), 2u);  // [0 2 1]
  EXPECT_EQ(Sorted(shard.locations(id)), (std::vector<Rank>{0, 1, 2}));
  EXPECT_EQ(SenderFor(shard, id, 1, 64), 2u);  // asking twice in a row is stable
  EXPECT_EQ(Sorted(shard.locations(id)), (std::vector<Rank>{0, 1, 2}));
  EXPECT_EQ(SenderFor(shard, id, 3, 64), 1u);
}

TEST(DirectoryShard, RepeatedPublishDoesNotDuplicateAHolder) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("twice");
  shard.publish(Pub(id, 0, 64, LocationState::kPartial));
  shard.publish(Pub(id, 0, 64));
  shard.publish(Pub(id, 0, 64));
  EXPECT_EQ(shard.locations(id), (std::vector<Rank>{0}));
}

// A get() parks a lookup, then the same rank puts the object itself (the
// node drops the late reply because it has a local copy). The put must still
// make the rank a holder other ranks can fetch from.
TEST(DirectoryShard, PublisherWhoseOwnLookupIsParkedStaysAHolder) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("self-put");
  EXPECT_FALSE(shard.lookup(Look(id, 1, 5)).has_value());
  auto self = shard.publish(Pub(id, 1, 64));
  ASSERT_EQ(self.size(), 1u) << "the publisher's parked lookup is answered";
  EXPECT_EQ(self[0].to, 1u);
  EXPECT_EQ(self[0].reply.sender, 1u);
  EXPECT_EQ(shard.locations(id), (std::vector<Rank>{1}));

  auto r = shard.lookup(Look(id, 2, 6));
  ASSERT_TRUE(r.has_value()) << "rank 2 waits although rank 1 holds a complete copy";
  EXPECT_EQ(r->reply.result, LookupResult::kSender);
  EXPECT_EQ(r->reply.sender, 1u);

  auto m = shard.lookup(Look(id, 3, 7, /*must_exist=*/true));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->reply.result, LookupResult::kSender) << "an existing object reported NotFound";
}

TEST(DirectoryShard, ObjectsAreIndependent) {
  DirectoryShard shard;
  const ObjectID a = ObjectID::from_name("obj-a");
  const ObjectID b = ObjectID::from_name("obj-b");
  shard.publish(Pub(a, 0, 10));
  shard.publish(Pub(b, 5, 20));
  EXPECT_EQ(SenderFor(shard, a, 1, 10), 0u);
  EXPECT_EQ(SenderFor(shard, b, 1, 20), 5u);
  EXPECT_EQ(shard.size(), 2u);
  EXPECT_EQ(Sorted(shard.remove(a)), (std::vector<Rank>{0, 1}));
  EXPECT_EQ(Sorted(shard.locations(b)), (std::vector<Rank>{1, 5}));
}

// -------------------------------------------------------- BroadcastPlanner

TEST(BroadcastPlanner, NoSenderBeforeACopyExists) {
  BroadcastPlanner p;
  EXPECT_TRUE(p.empty());
  EXPECT_FALSE(p.assign(1).has_value());
  EXPECT_TRUE(p.empty());  // the receiver is not planned without a sender
}

TEST(BroadcastPlanner, AddSourceIsIdempotent) {
  BroadcastPlanner p;
  p.add_source(0);
  p.add_source(0);
  p.complete(0);
  EXPECT_EQ(p.chains(), (Chains{{0}}));
}

TEST(BroadcastPlanner, ShortestChainTailWithTiesToTheEarliest) {
  BroadcastPlanner p;
  p.add_source(0);
  p.add_source(10);
  EXPECT_EQ(p.assign(1), 0u);   // tie [0] vs [10]: earliest
  EXPECT_EQ(p.assign(2), 10u);  // [0 1] vs [10]
  EXPECT_EQ(p.assign(3), 1u);   // tie again
  EXPECT_EQ(p.chains(), (Chains{{0, 1, 3}, {10, 2}}));
  p.complete(1);  // [0] [10 2] [1 3]
  EXPECT_EQ(p.chains(), (Chains{{0}, {10, 2}, {1, 3}}));
  EXPECT_EQ(p.assign(4), 0u);  // [0 4] [10 2] [1 3]
  EXPECT_EQ(p.assign(5), 4u);  // three-way tie at 2: earliest
  EXPECT_EQ(p.chains(), (Chains{{0, 4, 5}, {10, 2}, {1, 3}}));
}

TEST(BroadcastPlanner, CompletingTheTailMakesItAChainOfItsOwn) {
  BroadcastPlanner p;
  p.add_source(0);
  p.assign(1);
  p.assign(2);
  p.complete(2);
  EXPECT_EQ(p.chains(), (Chains{{0, 1}, {2}}));
  EXPECT_EQ(p.assign(3), 2u);
}

TEST(BroadcastPlanner, CompletingAnUnplannedRankAddsASource) {
  BroadcastPlanner p;
  p.add_source(0);
  p.complete(7);  // e.g. it put the same object itself
  EXPECT_EQ(p.chains(), (Chains{{0}, {7}}));
}

TEST(BroadcastPlanner, RemoveDropsEmptyChains) {
  BroadcastPlanner p;
  p.add_source(0);
  p.add_source(1);
  p.remove(0);
  EXPECT_EQ(p.chains(), (Chains{{1}}));
  p.remove(42);
  EXPECT_EQ(p.chains(), (Chains{{1}}));
  p.remove(1);
  EXPECT_TRUE(p.empty());
  EXPECT_FALSE(p.assign(2).has_value());
}

TEST(BroadcastPlanner, RemovingAMiddleReceiverKeepsTheRestOfTheChain) {
  BroadcastPlanner p;
  p.add_source(0);
  p.assign(1);
  p.assign(2);
  p.assign(3);
  p.remove(2);
  EXPECT_EQ(p.chains(), (Chains{{0, 1, 3}}));
}

TEST(BroadcastPlanner, PredecessorClosesTheGapOfARemovedSender) {
  BroadcastPlanner p;
  p.add_source(0);
  p.assign(1);
  p.assign(2);
  p.assign(3);
  EXPECT_EQ(p.predecessor(3), std::optional<Rank>(2));
  p.remove(2);
  EXPECT_EQ(p.predecessor(3), std::optional<Rank>(1));
  EXPECT_EQ(p.predecessor(0), std::nullopt);  // a head
  EXPECT_EQ(p.predecessor(7), std::nullopt);  // not planned
}

TEST(DirectoryShard, ResumeIsAnsweredWithTheDeadSendersSender) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("resume");
  shard.publish(Pub(id, 0, 4096, LocationState::kPartial));
  EXPECT_EQ(SenderFor(shard, id, 1, 4096), 0u);
  EXPECT_EQ(SenderFor(shard, id, 2, 4096), 1u);
  EXPECT_EQ(SenderFor(shard, id, 3, 4096), 2u);
  shard.forget_rank(2);
  auto r = shard.lookup(control::Lookup{id, 9, 3, false, true});
  ASSERT_TRUE(r.has_value()) << "a resume with a live predecessor was parked";
  EXPECT_EQ(r->reply.sender, 1u);
  // The head has no predecessor: it waits for a complete copy.
  EXPECT_FALSE(shard.lookup(control::Lookup{id, 10, 0, false, true}).has_value());
}

// ------------------------------------------------------- arrival sequences

// Random publish / lookup / complete / receiver-unpublish sequences over 8
// ranks, checked after every step. Lookups come only from ranks without a
// copy of their own: a node that holds the object reads it locally.
TEST(BroadcastPlannerProperty, RandomArrivalSequencesKeepInvariants) {
  constexpr Rank kRanks = 8;
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    std::uniform_int_distribution<Rank> rank(0, kRanks - 1);
    std::uniform_int_distribution<int> percent(0, 99);
    BroadcastPlanner p;
    std::set<Rank> sources;  // origins and completed receivers

    for (int step = 0; step < 300; ++step) {
      SCOPED_TRACE("step " + std::to_string(step));
      const Rank r = rank(rng);
      const int what = percent(rng);
      const std::vector<Rank> before = p.members();
      const bool planned = std::find(before.begin(), before.end(), r) != before.end();

      if (what < 10) {  // publish by an origin (partial or complete)
        p.add_source(r);
        sources.insert(r);
      } else if (what < 75) {  // lookup
        if (sources.count(r)) continue;
        // The rule, applied to the chains as they are without r.
        std::optional<Rank> expected;
        Chains without = p.chains();
        for (auto& c : without) c.erase(std::remove(c.begin(), c.end(), r), c.end());
        std::erase_if(without, [](const auto& c) { return c.empty(); });
        std::size_t best = 0;
        for (std::size_t c = 0; c < without.size(); ++c) {
          if (without[c].size() < without[best].size()) best = c;
        }
        if (!without.empty()) expected = without[best].back();

        std::optional<Rank> sender = p.assign(r);
        ASSERT_EQ(sender, expected);
        if (sender) {
          ASSERT_NE(*sender, r);
          ASSERT_NE(std::find(before.begin(), before.end(), *sender), before.end())
              << "sender " << *sender << " was not a member";
          bool is_tail = false;
          for (const auto& c : p.chains()) is_tail = is_tail || c.back() == r;
          ASSERT_TRUE(is_tail) << r << " was not appended to a chain";
        }
      } else if (what < 90) {  // a receiver completes
        if (!planned) continue;
        p.complete(r);
        sources.insert(r);
      } else {  // a receiver gives up its partial copy
        if (!planned || sources.count(r)) continue;
        p.remove(r);
      }

      const std::vector<Rank> members = p.members();
      ASSERT_FALSE(HasDuplicates(members));
      for (const auto& c : p.chains()) {
        ASSERT_FALSE(c.empty());
        ASSERT_TRUE(sources.count(c.front())) << "chain head " << c.front() << " is no source";
      }
      // Every source heads a chain: no copy is lost from the plan.
      std::size_t heads = 0;
      for (const auto& c : p.chains()) heads += sources.count(c.front());
      ASSERT_EQ(heads, sources.size());
      ASSERT_EQ(p.empty(), members.empty());
    }
  }
}

// The same kind of sequences through the shard, observed only through what
// it exposes: replies and locations. Ranks behave as nodes do: one holding a
// copy reads it locally instead of looking it up, but a rank may put an
// object while its own earlier lookup of it is still parked.
void RunShardSequence(std::uint32_t seed, bool allow_put_while_parked) {
  constexpr Rank kRanks = 8;
  constexpr std::uint64_t kSize = 12345;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<Rank> rank(0, kRanks - 1);
  std::uniform_int_distribution<int> percent(0, 99);
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("property-" + std::to_string(seed));
  std::map<std::uint64_t, Rank> parked;  // request -> requester
  std::set<Rank> holders;                // published a copy, not unpublished
  std::uint64_t next_request = 1;

  auto check_reply = [&](const Reply& reply, const std::vector<Rank>& members) {
    ASSERT_EQ(reply.reply.id, id);
    ASSERT_EQ(reply.reply.result, LookupResult::kSender);
    ASSERT_EQ(reply.reply.size, kSize);
    // A publisher whose own lookup was parked is answered with itself: it
    // reads its own copy.
    if (!holders.count(reply.to)) {
      ASSERT_NE(reply.reply.sender, reply.to);
    }
    ASSERT_NE(std::find(members.begin(), members.end(), reply.reply.sender), members.end())
        << "sender " << reply.reply.sender << " holds no copy";
    ASSERT_NE(std::find(members.begin(), members.end(), reply.to), members.end())
        << "receiver " << reply.to << " was not planned";
  };
  auto is_parked = [&](Rank r) {
    return std::any_of(parked.begin(), parked.end(), [r](const auto& e) { return e.second == r; });
  };

  for (int step = 0; step < 300; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const Rank r = rank(rng);
    const int what = percent(rng);
    if (what < 15) {
      if (!allow_put_while_parked && is_parked(r)) continue;
      const auto state = percent(rng) < 50 ? LocationState::kPartial : LocationState::kComplete;
      std::vector<Reply> replies = shard.publish(Pub(id, r, kSize, state));
      holders.insert(r);
      const std::vector<Rank> members = shard.locations(id);
      for (const auto& reply : replies) {
        ASSERT_NO_FATAL_FAILURE(check_reply(reply, members));
        auto it = parked.find(reply.reply.request);
        ASSERT_NE(it, parked.end()) << "reply to a lookup that was not waiting";
        ASSERT_EQ(it->second, reply.to);
        parked.erase(it);
      }
      for (const auto& [request, requester] : parked) {
        // The publisher's own lookup may stay parked; it reads its own copy.
        ASSERT_EQ(requester, r) << "rank " << requester << " waits although " << r << " published a copy";
      }
    } else if (what < 80) {
      if (holders.count(r)) continue;
      const std::uint64_t request = next_request++;
      auto reply = shard.lookup(Look(id, r, request));
      const std::vector<Rank> members = shard.locations(id);
      if (reply) {
        ASSERT_EQ(reply->to, r);
        ASSERT_EQ(reply->reply.request, request);
        ASSERT_NO_FATAL_FAILURE(check_reply(*reply, members));
      } else {
        ASSERT_TRUE(holders.empty()) << "lookup parked although " << *holders.begin() << " holds a copy";
        // A repeat from the same rank replaces its parked lookup.
        std::erase_if(parked, [r](const auto& e) { return e.second == r; });
        parked.emplace(request, r);
      }
    } else {
      shard.unpublish(id, r);
      holders.erase(r);
    }
    const std::vector<Rank> members = shard.locations(id);
    ASSERT_FALSE(HasDuplicates(members));
    for (Rank h : holders) {
      ASSERT_NE(std::find(members.begin(), members.end(), h), members.end())
          << "holder " << h << " dropped out of the directory";
    }
    ASSERT_EQ(shard.waiting(id), parked.size());
  }
}

TEST(DirectoryShardBounds, ARepeatedLookupReplacesTheParkedOne) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("repeat");
  for (std::uint64_t i = 1; i <= 1000; ++i) EXPECT_FALSE(shard.lookup(Look(id, 3, i)).has_value());
  EXPECT_EQ(shard.waiting(id), 1u);
  EXPECT_EQ(shard.parked(), 1u);
  // The newest is the one answered.
  auto replies = shard.publish(Pub(id, 1, 100, LocationState::kComplete));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].reply.request, 1000u);
  EXPECT_EQ(shard.parked(), 0u);
}

TEST(DirectoryShardBounds, PastTheParkedLimitALookupIsRefused) {
  DirectoryShard shard(0, {.parked = 4});
  for (const char* name : {"p0", "p1", "p2", "p3"})
    EXPECT_FALSE(shard.lookup(Look(ObjectID::from_name(name), 2, 1)));
  EXPECT_EQ(shard.parked(), 4u);
  const ObjectID extra = ObjectID::from_name("p-extra");
  auto r = shard.lookup(Look(extra, 2, 9));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reply.result, LookupResult::kRefused);
  EXPECT_EQ(r->reply.request, 9u);
  EXPECT_EQ(r->reply.size, 4u) << "the answer names the limit";
  EXPECT_EQ(shard.refusals(), 1u);
  EXPECT_FALSE(shard.knows(extra));
  EXPECT_EQ(shard.size(), 4u) << "a refused lookup must not leave a record behind";
  // Answers free room again.
  (void)shard.publish(Pub(ObjectID::from_name("p0"), 1, 10, LocationState::kComplete));
  EXPECT_EQ(shard.parked(), 3u);
  EXPECT_FALSE(shard.lookup(Look(extra, 2, 10)).has_value());
  // A failed rank's parked lookups go, and with them their count.
  shard.forget_rank(2);
  EXPECT_EQ(shard.parked(), 0u);
}

// One rank parks lookups of ids nobody puts, past its own limit. Before:
// only the shard's total (2^20) bounded them, so one rank could fill the
// shard and have everyone else's lookups refused; now that rank alone is
// refused, and the others' lookups keep waiting and are answered.
TEST(DirectoryShardBounds, OneRanksParkedLookupsDoNotCrowdOutOthers) {
  DirectoryShard shard;
  constexpr std::size_t kLimit = DirectoryShard::kMaxParkedPerRank;
  for (std::size_t i = 0; i < kLimit; ++i) {
    ASSERT_FALSE(shard.lookup(Look(ObjectID::from_name("never/" + std::to_string(i)), 2, i + 1)));
  }
  EXPECT_EQ(shard.parked_by(2), kLimit);
  const ObjectID more = ObjectID::from_name("never/more");
  auto r = shard.lookup(Look(more, 2, 999));
  ASSERT_TRUE(r.has_value()) << "rank 2 parked past its limit";
  EXPECT_EQ(r->reply.result, LookupResult::kRefused);
  EXPECT_EQ(r->reply.size, kLimit);
  EXPECT_EQ(shard.parked(), kLimit);
  EXPECT_FALSE(shard.knows(more));
  EXPECT_EQ(shard.refusals(), 1u);
  // Everyone else is served as before.
  const ObjectID honest = ObjectID::from_name("honest");
  EXPECT_FALSE(shard.lookup(Look(honest, 3, 1)).has_value());
  EXPECT_EQ(shard.parked_by(3), 1u);
  auto replies = shard.publish(Pub(honest, 1, 100, LocationState::kComplete));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].to, 3u);
  EXPECT_EQ(replies[0].reply.result, LookupResult::kSender);
  EXPECT_EQ(shard.parked_by(3), 0u);
  // Rank 2's lookups answered or forgotten give it room again.
  (void)shard.publish(Pub(ObjectID::from_name("never/0"), 1, 10, LocationState::kComplete));
  EXPECT_EQ(shard.parked_by(2), kLimit - 1);
  EXPECT_FALSE(shard.lookup(Look(more, 2, 1000)).has_value());
  shard.forget_rank(2);
  EXPECT_EQ(shard.parked_by(2), 0u);
  EXPECT_EQ(shard.parked(), 0u);
}

// Locates share the per-rank limit: one rank's, past it, are refused (the
// requester is told, with the limit) and counted; another rank's still wait
// and are answered by the publish.
TEST(DirectoryShardBounds, OneRanksParkedLocatesAreBounded) {
  DirectoryShard shard;
  constexpr std::size_t kLimit = DirectoryShard::kMaxParkedPerRank;
  // Of one object, a rank parks kMaxLocatesPerObject.
  const ObjectID id = ObjectID::from_name("locate/later");
  constexpr std::size_t kPerObject = DirectoryShard::kMaxLocatesPerObject;
  auto expect_refused = [&](const std::optional<directory::LocateAnswer>& a, std::uint64_t request,
                            std::uint64_t limit) {
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->to, 2u);
    EXPECT_TRUE(a->reply.refused);
    EXPECT_FALSE(a->reply.has_inline);
    EXPECT_EQ(a->reply.request, request);
    EXPECT_EQ(a->reply.size, limit);
  };
  for (std::uint64_t i = 1; i <= kPerObject + 10; ++i) {
    auto a = shard.locate(control::Locate{id, i, 2, 0});
    if (i <= kPerObject) {
      ASSERT_FALSE(a.has_value());
    } else {
      expect_refused(a, i, kPerObject);
    }
  }
  EXPECT_EQ(shard.parked_by(2), kPerObject);
  EXPECT_EQ(shard.refusals(), 10u);
  // In all, kMaxParkedPerRank.
  for (std::uint64_t i = 0; i < kLimit; ++i) {
    auto a = shard.locate(control::Locate{ObjectID::from_name("locate/" + std::to_string(i)), i, 2, 0});
    if (i < kLimit - kPerObject) {
      ASSERT_FALSE(a.has_value()) << i;
    } else {
      expect_refused(a, i, kLimit);
    }
  }
  EXPECT_EQ(shard.parked_by(2), kLimit) << "rank 2 parked past its limit";
  EXPECT_EQ(shard.refusals(), 10u + kPerObject);
  EXPECT_FALSE(shard.knows(ObjectID::from_name("locate/" + std::to_string(kLimit - 1))));
  // Another rank's locate still waits, and is answered.
  EXPECT_FALSE(shard.locate(control::Locate{id, 1, 3, 0}).has_value());
  EXPECT_EQ(shard.parked_by(3), 1u);
  (void)shard.publish(Pub(id, 1, 100, LocationState::kComplete));
  auto located = shard.take_located();
  EXPECT_EQ(located.size(), kPerObject + 1);
  EXPECT_EQ(std::count_if(located.begin(), located.end(), [](const auto& a) { return a.to == 3; }), 1);
  EXPECT_EQ(shard.parked_by(3), 0u);
  EXPECT_EQ(shard.parked_by(2), kLimit - kPerObject);
  shard.forget_rank(2);
  EXPECT_EQ(shard.parked(), 0u);
}

// One rank publishes inline objects past its own budget. Before: only the
// shard's 512 MiB bounded them, so one rank could spend it all and every
// other rank's small objects lost their one-hop answer; now the first
// rank's extra objects are kept without their bytes (read from the holder,
// nothing lost) and others' still go inline.
TEST(DirectoryShardBounds, OneRanksInlineBytesDoNotCrowdOutOthers) {
  DirectoryShard shard;
  constexpr std::size_t kObject = 64u << 10;
  constexpr std::size_t kFit = DirectoryShard::kMaxInlineBytesPerRank / kObject;
  const std::vector<std::uint8_t> bytes(kObject, 5);
  for (std::size_t i = 0; i <= kFit; ++i)
    (void)shard.publish(InlinePub(ObjectID::from_name("small/" + std::to_string(i)), 1, bytes));
  EXPECT_EQ(shard.inline_bytes_of(1), DirectoryShard::kMaxInlineBytesPerRank);
  auto over = shard.lookup(Look(ObjectID::from_name("small/" + std::to_string(kFit)), 2, 1));
  ASSERT_TRUE(over.has_value());
  EXPECT_EQ(over->reply.result, LookupResult::kSender) << "rank 1 went past its inline budget";
  EXPECT_EQ(over->reply.sender, 1u);
  const ObjectID other = ObjectID::from_name("small/other");
  (void)shard.publish(InlinePub(other, 3, bytes));
  auto in = shard.lookup(Look(other, 2, 2));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(in->reply.result, LookupResult::kInline);
  EXPECT_EQ(in->reply.inline_data, bytes);
  // A remove gives the budget back to the rank that spent it.
  (void)shard.remove(ObjectID::from_name("small/0"));
  EXPECT_EQ(shard.inline_bytes_of(1), DirectoryShard::kMaxInlineBytesPerRank - kObject);
  EXPECT_EQ(shard.inline_bytes(), DirectoryShard::kMaxInlineBytesPerRank);
}

TEST(DirectoryShardBounds, PastTheInlineBudgetObjectsAreServedByTheirHolder) {
  DirectoryShard shard(0, {.inline_bytes = 1000});
  auto inline_pub = [](const ObjectID& id, Rank r, std::size_t n) {
    control::Publish p = Pub(id, r, n, LocationState::kComplete);
    p.has_inline = true;
    p.inline_data.assign(n, 7);
    return p;
  };
  const ObjectID a = ObjectID::from_name("a"), b = ObjectID::from_name("b");
  (void)shard.publish(inline_pub(a, 1, 600));
  (void)shard.publish(inline_pub(b, 1, 600));  // over budget: no bytes kept
  EXPECT_EQ(shard.inline_bytes(), 600u);
  auto ra = shard.lookup(Look(a, 2, 1));
  auto rb = shard.lookup(Look(b, 2, 2));
  ASSERT_TRUE(ra && rb);
  EXPECT_EQ(ra->reply.result, LookupResult::kInline);
  EXPECT_EQ(rb->reply.result, LookupResult::kSender);
  EXPECT_EQ(rb->reply.sender, 1u);
  (void)shard.remove(a);
  EXPECT_EQ(shard.inline_bytes(), 0u);
}

TEST(DirectoryShardProperty, RandomArrivalSequencesKeepInvariants) {
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ASSERT_NO_FATAL_FAILURE(RunShardSequence(seed, /*allow_put_while_parked=*/false));
  }
}

TEST(DirectoryShardProperty, RandomSequencesWithPutWhileOwnLookupIsParked) {
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ASSERT_NO_FATAL_FAILURE(RunShardSequence(seed, /*allow_put_while_parked=*/true));
  }
}

// Locate: a holder of a complete copy, now or at the publish; the bytes of
// an inline object come along only up to the size the coordinator asked for.
TEST(DirectoryShardLocate, AnswersWithAHolderAndSmallInlineBytes) {
  DirectoryShard shard;
  const ObjectID small = ObjectID::from_name("locate/small");
  const ObjectID big = ObjectID::from_name("locate/big");
  // Parked until the first complete copy.
  EXPECT_FALSE(shard.locate(control::Locate{small, 1, 5, 64}).has_value());
  EXPECT_TRUE(shard.publish(InlinePub(small, 2, {1, 2, 3})).empty());
  auto located = shard.take_located();
  ASSERT_EQ(located.size(), 1u);
  EXPECT_EQ(located[0].to, 5u);
  EXPECT_EQ(located[0].reply.holder, 2u);
  EXPECT_TRUE(located[0].reply.has_inline);
  EXPECT_EQ(located[0].reply.inline_data, (std::vector<std::uint8_t>{1, 2, 3}));
  // Asked with a smaller bound, or none: the holder only.
  auto bounded = shard.locate(control::Locate{small, 2, 6, 2});
  ASSERT_TRUE(bounded.has_value());
  EXPECT_FALSE(bounded->reply.has_inline);
  EXPECT_TRUE(bounded->reply.inline_data.empty());
  EXPECT_FALSE(shard.locate(control::Locate{small, 3, 6, 0})->reply.has_inline);
  // Not held inline: never bytes.
  shard.publish(Pub(big, 3, 1 << 20));
  auto b = shard.locate(control::Locate{big, 4, 6, 0xffffffffu});
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->reply.holder, 3u);
  EXPECT_FALSE(b->reply.has_inline);
}

// A lookup that names `after` reads from that rank: it waits until the rank
// is in a chain, and then the chain is the ring order whatever order the
// lookups came in. A dead `after` leaves the choice to the shard.
control::Lookup After(const ObjectID& id, Rank requester, Rank after) {
  control::Lookup l = Look(id, requester);
  l.after = after;
  return l;
}

TEST(DirectoryShardAfter, LookupsFormTheRingOrderWhateverTheirArrival) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("after/ring");
  shard.publish(Pub(id, 0, 1 << 20, LocationState::kPartial));  // the origin, still writing
  EXPECT_FALSE(shard.lookup(After(id, 3, 2)).has_value());
  EXPECT_FALSE(shard.lookup(After(id, 2, 1)).has_value());
  EXPECT_TRUE(shard.take_answered().empty());
  auto first = shard.lookup(After(id, 1, 0));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->reply.sender, 0u);
  auto rest = shard.take_answered();
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].to, 2u);
  EXPECT_EQ(rest[0].reply.sender, 1u);
  EXPECT_EQ(rest[1].to, 3u);
  EXPECT_EQ(rest[1].reply.sender, 2u);
  EXPECT_EQ(shard.locations(id), (std::vector<Rank>{0, 1, 2, 3}));
}

TEST(DirectoryShardAfter, AFollowedOrDeadAfterLeavesTheChoiceToTheShard) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("after/fallback");
  shard.publish(Pub(id, 0, 1 << 20));
  ASSERT_EQ(shard.lookup(Look(id, 1))->reply.sender, 0u);
  ASSERT_EQ(shard.lookup(Look(id, 2))->reply.sender, 1u);
  // Rank 1 is followed already: a plain assignment (the tail).
  EXPECT_EQ(shard.lookup(After(id, 3, 1))->reply.sender, 2u);
  // Waiting for rank 5, which then dies: answered by the shard's rule.
  EXPECT_FALSE(shard.lookup(After(id, 4, 5)).has_value());
  shard.forget_rank(5);
  auto freed = shard.take_answered();
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].to, 4u);
  EXPECT_EQ(freed[0].reply.sender, 3u);
}

TEST(DirectoryShardAfter, WaitersBeforeTheFirstCopyAreAnsweredInRingOrder) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("after/early");
  EXPECT_FALSE(shard.lookup(After(id, 2, 1)).has_value());
  EXPECT_FALSE(shard.lookup(After(id, 1, 0)).has_value());
  auto replies = shard.publish(Pub(id, 0, 1 << 20, LocationState::kPartial));
  ASSERT_EQ(replies.size(), 2u);
  std::map<Rank, Rank> sender_of;
  for (const auto& r : replies) sender_of[r.to] = r.reply.sender;
  EXPECT_EQ(sender_of[1], 0u);
  EXPECT_EQ(sender_of[2], 1u);
}

// Small objects being written: lookups wait for the sealed copy, which
// answers them with the bytes; a must_exist lookup counts the copy being
// written as existing and waits too.
TEST(DirectoryShardSmall, LookupsOfASmallObjectBeingWrittenWaitForItsBytes) {
  DirectoryShard shard(64u << 10);
  const ObjectID id = ObjectID::from_name("small/streaming");
  const ObjectID big = ObjectID::from_name("small/big");
  EXPECT_TRUE(shard.publish(Pub(id, 0, 1024, LocationState::kPartial)).empty());
  EXPECT_FALSE(shard.lookup(Look(id, 1)).has_value());
  EXPECT_FALSE(shard.lookup(Look(id, 2, 7, /*must_exist=*/true)).has_value());
  auto replies = shard.publish(InlinePub(id, 0, std::vector<std::uint8_t>(1024, 9)));
  ASSERT_EQ(replies.size(), 2u);
  for (const auto& r : replies) {
    EXPECT_EQ(r.reply.result, LookupResult::kInline);
    EXPECT_EQ(r.reply.inline_data.size(), 1024u);
  }
  // Larger than that: streamed from the copy being written, as before.
  shard.publish(Pub(big, 0, (64u << 10) + 1, LocationState::kPartial));
  auto r = shard.lookup(Look(big, 1));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->reply.result, LookupResult::kSender);
  EXPECT_EQ(r->reply.sender, 0u);
  // must_exist of something nobody is writing: not found at once.
  auto none = shard.lookup(Look(ObjectID::from_name("small/none"), 3, 8, true));
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->reply.result, LookupResult::kNotFound);
}

TEST(DirectoryShardAfter, ARingBehindADeadRankIsAnsweredWhole) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("after/dead-ring");
  shard.publish(Pub(id, 0, 1 << 20, LocationState::kPartial));
  // 3 reads from 2, which reads from 5; 5 dies before asking.
  EXPECT_FALSE(shard.lookup(After(id, 3, 2)).has_value());
  EXPECT_FALSE(shard.lookup(After(id, 2, 5)).has_value());
  shard.forget_rank(5);
  auto answered = shard.take_answered();
  ASSERT_EQ(answered.size(), 2u);
  EXPECT_EQ(answered[0].to, 2u);
  EXPECT_EQ(answered[0].reply.sender, 0u);
  EXPECT_EQ(answered[1].to, 3u);
  EXPECT_EQ(answered[1].reply.sender, 2u);
}

TEST(DirectoryShardSmall, AMustExistLookupIsNotFoundWhenTheWriterGoesAway) {
  DirectoryShard shard(64u << 10);
  const ObjectID id = ObjectID::from_name("small/aborted");
  const ObjectID other = ObjectID::from_name("small/died");
  shard.publish(Pub(id, 0, 1024, LocationState::kPartial));
  shard.publish(Pub(other, 4, 1024, LocationState::kPartial));
  EXPECT_FALSE(shard.lookup(Look(id, 1, 7, true)).has_value());
  EXPECT_FALSE(shard.lookup(Look(id, 2, 8, false)).has_value());
  EXPECT_FALSE(shard.lookup(Look(other, 1, 9, true)).has_value());
  // The writer aborts: the must_exist get is told, the plain one waits on.
  shard.unpublish(id, 0);
  auto answered = shard.take_answered();
  ASSERT_EQ(answered.size(), 1u);
  EXPECT_EQ(answered[0].to, 1u);
  EXPECT_EQ(answered[0].reply.request, 7u);
  EXPECT_EQ(answered[0].reply.result, LookupResult::kNotFound);
  EXPECT_EQ(shard.waiting(id), 1u);
  // The other writer's node dies: the same.
  shard.forget_rank(4);
  answered = shard.take_answered();
  ASSERT_EQ(answered.size(), 1u);
  EXPECT_EQ(answered[0].reply.request, 9u);
  EXPECT_EQ(answered[0].reply.result, LookupResult::kNotFound);
}

}  // namespace
}  // namespace hoplite

namespace hoplite::directory {
namespace {

control::Lookup Direct(const ObjectID& id, Rank requester, Rank from) {
  control::Lookup l{id, 0, requester, false, false};
  l.after = from;
  l.direct = true;
  return l;
}

// The baseline transfer: every reader from the producer, none in a chain,
// even once some have completed; a reader before the first copy waits.
TEST(DirectoryShardDirect, EveryReaderIsSentToTheProducerAlone) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("direct/star");
  EXPECT_FALSE(shard.lookup(Direct(id, 1, 0)).has_value());
  auto first = shard.publish(Pub(id, 0, 1 << 20, LocationState::kPartial));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].to, 1u);
  EXPECT_EQ(first[0].reply.sender, 0u);
  for (Rank r = 2; r < 6; ++r) {
    auto a = shard.lookup(Direct(id, r, 0));
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->reply.sender, 0u);
  }
  shard.publish(Pub(id, 1, 1 << 20));  // a reader completed: still not a sender for direct readers
  auto late = shard.lookup(Direct(id, 6, 0));
  ASSERT_TRUE(late.has_value());
  EXPECT_EQ(late->reply.sender, 0u);
  auto w = shard.where(control::Where{id, 1, 6});
  EXPECT_TRUE(w.known);
  EXPECT_EQ(w.holders, (std::vector<Rank>{0, 1}));
}

// A partial_ok locate (a reduce that starts on inputs still being written)
// is answered by the object's producer at once, or by its first partial
// publish; a plain locate still waits for a complete copy. A producer that
// unpublishes or dies is no longer named.
TEST(DirectoryShardLocate, PartialOkIsAnsweredByTheProducer) {
  DirectoryShard shard;
  const ObjectID id = ObjectID::from_name("locate/partial");
  control::Locate partial{id, 1, 5, 0, true};
  control::Locate plain{id, 2, 5, 0, false};
  EXPECT_FALSE(shard.locate(partial).has_value());
  EXPECT_FALSE(shard.locate(plain).has_value());
  (void)shard.publish(Pub(id, 3, 4096, LocationState::kPartial));
  auto located = shard.take_located();
  ASSERT_EQ(located.size(), 1u);
  EXPECT_EQ(located[0].to, 5u);
  EXPECT_EQ(located[0].reply.request, 1u);
  EXPECT_EQ(located[0].reply.holder, 3u);
  EXPECT_EQ(located[0].reply.size, 4096u);
  // Asked again now: at once.
  auto now = shard.locate(control::Locate{id, 3, 6, 0, true});
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->reply.holder, 3u);
  // The plain one waits for the seal, and is then answered with the holder.
  (void)shard.publish(Pub(id, 3, 4096, LocationState::kComplete));
  located = shard.take_located();
  ASSERT_EQ(located.size(), 1u);
  EXPECT_EQ(located[0].reply.request, 2u);
  EXPECT_EQ(located[0].reply.holder, 3u);

  // A producer that goes is not named.
  const ObjectID other = ObjectID::from_name("locate/partial/gone");
  (void)shard.publish(Pub(other, 4, 64, LocationState::kPartial));
  shard.unpublish(other, 4);
  EXPECT_FALSE(shard.locate(control::Locate{other, 4, 5, 0, true}).has_value());
  (void)shard.publish(Pub(other, 7, 64, LocationState::kPartial));
  located = shard.take_located();
  ASSERT_EQ(located.size(), 1u);
  EXPECT_EQ(located[0].reply.holder, 7u);
  shard.forget_rank(7);
  EXPECT_FALSE(shard.locate(control::Locate{other, 5, 5, 0, true}).has_value());
}

}  // namespace
}  // namespace hoplite::directory
