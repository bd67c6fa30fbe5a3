// The pure decisions of membership and barriers: the failure detector over
// an injected clock, rank 0's barrier book, and the node's dispatch table
// and stream router.
#include <gtest/gtest.h>

#include "node/barrier_book.h"
#include "node/context.h"
#include "node/failure_detector.h"

namespace hoplite::node {
namespace {

using std::chrono::milliseconds;
using Clock = FailureDetector::Clock;

const std::vector<bool> kAll4(4, true);

TEST(FailureDetector, HeartbeatsEveryLivePeerButItself) {
  FailureDetector d(1, 4, milliseconds(800));
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  d.start(t0);
  auto tick = d.tick(t0 + milliseconds(200), kAll4);
  EXPECT_TRUE(tick.suspects.empty());
  EXPECT_EQ(tick.heartbeat, (std::vector<control::Rank>{0, 2, 3}));
  EXPECT_EQ(d.interval(), milliseconds(200));
}

TEST(FailureDetector, SuspectsOnlyPeersSilentPastTheTimeout) {
  FailureDetector d(0, 4, milliseconds(800));
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  d.start(t0);
  d.heard(1, t0 + milliseconds(700));
  d.heard(3, t0 + milliseconds(790));
  // Exactly at the timeout is not past it.
  auto at = d.tick(t0 + milliseconds(800), kAll4);
  EXPECT_TRUE(at.suspects.empty());
  auto past = d.tick(t0 + milliseconds(801), kAll4);
  EXPECT_EQ(past.suspects, (std::vector<control::Rank>{2}));
  EXPECT_EQ(past.heartbeat, (std::vector<control::Rank>{1, 3}));
  // Much later, all three fell silent.
  auto late = d.tick(t0 + milliseconds(1700), kAll4);
  EXPECT_EQ(late.suspects, (std::vector<control::Rank>{1, 2, 3}));
}

TEST(FailureDetector, DeadPeersAreNeitherSuspectedAgainNorHeartbeated) {
  FailureDetector d(0, 4, milliseconds(100));
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  d.start(t0);
  std::vector<bool> alive = {true, false, true, true};
  auto tick = d.tick(t0 + milliseconds(500), alive);
  EXPECT_EQ(tick.suspects, (std::vector<control::Rank>{2, 3}));
  EXPECT_TRUE(tick.heartbeat.empty());
}

TEST(FailureDetector, ARejoinedPeerStartsFromWhenItWasHeard) {
  FailureDetector d(0, 3, milliseconds(100));
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  d.start(t0);
  d.heard(2, t0 + milliseconds(1000));  // came back
  d.heard(1, t0 + milliseconds(1000));
  auto tick = d.tick(t0 + milliseconds(1050), std::vector<bool>(3, true));
  EXPECT_TRUE(tick.suspects.empty());
  // Unknown ranks are ignored, not stored.
  d.heard(7, t0);
  EXPECT_EQ(d.tick(t0 + milliseconds(1050), std::vector<bool>(3, true)).heartbeat.size(), 2u);
}

TEST(FailureDetector, NotStartedKnowsNobody) {
  FailureDetector d(0, 3, milliseconds(100));
  EXPECT_FALSE(d.started());
  d.heard(1, Clock::now());
  auto tick = d.tick(Clock::now() + std::chrono::hours(1), std::vector<bool>(3, true));
  EXPECT_TRUE(tick.suspects.empty());
  EXPECT_TRUE(tick.heartbeat.empty());
}

TEST(BarrierBook, ReleasesWhenEveryLiveRankArrived) {
  BarrierBook b(3);
  EXPECT_FALSE(b.arrive(1, 0, {}));
  EXPECT_FALSE(b.arrive(1, 2, {}));
  EXPECT_FALSE(b.arrive(1, 2, {}));  // twice is once
  EXPECT_TRUE(b.arrive(1, 1, {}));
  EXPECT_EQ(b.last_released(), 1u);
  EXPECT_EQ(b.open(), 0u);
}

TEST(BarrierBook, LateArrivalsForAReleasedBarrierAreIgnored) {
  BarrierBook b(2);
  EXPECT_FALSE(b.arrive(1, 0, {}));
  EXPECT_TRUE(b.arrive(1, 1, {}));
  EXPECT_FALSE(b.arrive(1, 0, {}));
  EXPECT_EQ(b.open(), 0u);
  // Numbers below the last released are late too, not a new barrier.
  EXPECT_FALSE(b.arrive(0, 0, {}));
  EXPECT_EQ(b.open(), 0u);
}

TEST(BarrierBook, ADeadRankNoLongerCountsAndItsArrivalGoes) {
  BarrierBook b(3);
  EXPECT_FALSE(b.arrive(5, 0, {}));
  EXPECT_FALSE(b.arrive(5, 1, {}));
  // Rank 1 arrived and then died; rank 2 is still to come: not released.
  std::vector<bool> alive = {true, false, true};
  EXPECT_TRUE(b.drop(1, alive).empty());
  // A process rejoined as rank 1 must arrive itself.
  alive[1] = true;
  EXPECT_FALSE(b.arrive(5, 2, alive));
  EXPECT_TRUE(b.arrive(5, 1, alive));
}

TEST(BarrierBook, AFailureReleasesTheBarriersThatWaitedOnlyForIt) {
  BarrierBook b(3);
  EXPECT_FALSE(b.arrive(7, 0, {}));
  EXPECT_FALSE(b.arrive(7, 1, {}));
  EXPECT_FALSE(b.arrive(8, 0, {}));
  std::vector<bool> alive = {true, true, false};
  EXPECT_EQ(b.drop(2, alive), (std::vector<std::uint64_t>{7}));
  EXPECT_EQ(b.last_released(), 7u);
  EXPECT_EQ(b.open(), 1u);
  EXPECT_TRUE(b.arrive(8, 1, alive));
}

TEST(BarrierBook, UnknownRanksCannotArrive) {
  BarrierBook b(2);
  EXPECT_FALSE(b.arrive(1, 5, {}));
  EXPECT_EQ(b.open(), 0u);
}

TEST(BarrierBook, ArrivalsFarAheadOrOutOfRangeAreNotAdmitted) {
  BarrierBook book(2);
  const std::vector<bool> all;
  EXPECT_TRUE(book.admissible(1).is_ok());
  EXPECT_TRUE(book.admissible(BarrierBook::kMaxAhead).is_ok());
  // A peer cannot grow the book with epochs no barrier has reached.
  EXPECT_EQ(book.admissible(BarrierBook::kMaxAhead + 1).code(), StatusCode::kCapacity);
  EXPECT_EQ(book.admissible(0).code(), StatusCode::kProtocol);
  EXPECT_EQ(book.admissible(~0ull).code(), StatusCode::kProtocol);
  // The window moves with the releases.
  EXPECT_FALSE(book.arrive(1, 0, all));
  EXPECT_TRUE(book.arrive(1, 1, all));
  EXPECT_TRUE(book.admissible(BarrierBook::kMaxAhead + 1).is_ok());
}

TEST(BarrierBook, ARankAtALaterBarrierHasPassedThisOne) {
  // The leader died after releasing barrier 4 to rank 1 only: rank 1 is at
  // 5, rank 2 still at 4. The new leader must release 4, then 5.
  BarrierBook b(3);
  std::vector<bool> alive = {false, true, true};
  b.record(5, 1);
  EXPECT_TRUE(b.release_ready(alive).empty()) << "rank 2 has not reached 5";
  b.record(4, 2);
  EXPECT_EQ(b.release_ready(alive), (std::vector<std::uint64_t>{4}));
  b.record(5, 2);
  EXPECT_EQ(b.release_ready(alive), (std::vector<std::uint64_t>{5}));
}

TEST(BarrierBook, ANewLeaderClosesWhatItSawReleased) {
  BarrierBook b(3);
  b.record(3, 1);
  b.record(3, 2);
  b.record(4, 2);
  // We saw 3 released before the old leader died: those who wait on it are
  // told, 4 stays open.
  auto told = b.close_through(3);
  EXPECT_EQ(told, (std::vector<std::pair<std::uint64_t, BarrierBook::Rank>>{{3, 1}, {3, 2}}));
  EXPECT_EQ(b.last_released(), 3u);
  EXPECT_EQ(b.open(), 1u);
  b.record(3, 1);  // late: not booked again
  EXPECT_EQ(b.open(), 1u);
}

TEST(Dispatcher, EachTypeGoesToItsHandler) {
  Dispatcher d;
  int publishes = 0, lookups = 0;
  d.on<msg::Publish>([&](const ConnPtr&, const msg::Publish& p) { publishes += static_cast<int>(p.size); });
  d.on<msg::Lookup>([&](const ConnPtr&, const msg::Lookup&) { lookups++; });
  msg::Publish p;
  p.size = 3;
  msg::Message m = p;
  EXPECT_TRUE(d.dispatch(nullptr, m));
  msg::Message l = msg::Lookup{};
  EXPECT_TRUE(d.dispatch(nullptr, l));
  msg::Message w = msg::Watch{};
  EXPECT_FALSE(d.dispatch(nullptr, w));  // nobody owns it here
  EXPECT_EQ(publishes, 3);
  EXPECT_EQ(lookups, 1);
}

TEST(StreamRouter, ProgressReachesTheOwnerOfItsStream) {
  StreamRouter r;
  std::vector<std::uint64_t> a, b;
  std::vector<Rank> from_a;
  auto oa = r.add_owner([&](const msg::Progress& p, Rank from) {
    a.push_back(p.stream);
    from_a.push_back(from);
  });
  auto ob = r.add_owner([&](const msg::Progress& p, Rank) { b.push_back(p.stream); });
  const auto s1 = r.next(oa), s2 = r.next(ob), s3 = r.next(oa);
  EXPECT_NE(s1, s3);
  Rank from = 4;
  for (auto s : {s1, s2, s3}) r.route(msg::Progress{ObjectID(), true, 0, 0, 0, s}, from++);
  // A stream nobody opened (a forged or stale Progress) goes nowhere.
  r.route(msg::Progress{ObjectID(), true, 0, 0, 0, 12345}, 1);
  r.route(msg::Progress{ObjectID(), true, 0, 0, 0, 0xff00000000000001ull}, 1);
  EXPECT_EQ(a, (std::vector<std::uint64_t>{s1, s3}));
  EXPECT_EQ(b, (std::vector<std::uint64_t>{s2}));
  // The owner learns who sent each, to check it against the rank it watches.
  EXPECT_EQ(from_a, (std::vector<Rank>{4, 6}));
}

}  // namespace
}  // namespace hoplite::node
