// Moving objects between real processes over loopback TCP: broadcast of
// every size class, gets that arrive before the put, chains that stream
// through a receiver that is itself mid-transfer, streaming puts (and their
// abort), and several transfers into one node at once.
//
// Phases across ranks are ordered with barriers only; where a test needs a
// transfer to be provably in flight, the origin is a streaming put that has
// published part of the object, so the receiver cannot finish early.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "cluster.h"
#include "hoplite/node.h"

namespace hoplite::itest {
namespace {

using std::chrono::milliseconds;

constexpr std::uint64_t kMiB = 1u << 20;
constexpr std::uint64_t kInline = 64u << 10;  // NodeOptions default
constexpr std::uint64_t kChunk = 1u << 20;    // NodeOptions default

// How long a receiver may take to reach a byte count it is sure to reach.
constexpr milliseconds kProgressWait{30000};

// ------------------------------------------------------------- broadcast

class BroadcastTest : public ::testing::TestWithParam<int> {};

TEST_P(BroadcastTest, PutOnOneRankGetOnAllOthers) {
  const int n = GetParam();
  // The sizes straddle both thresholds that change the path an object takes:
  // inline in the directory or not, one chunk or several.
  std::vector<std::uint64_t> sizes = {0,           1,          kInline - 1, kInline,
                                      kInline + 1, kChunk - 1, kChunk,      kChunk + 1};
  if (n <= 4) sizes.push_back(64 * kMiB + 3);

  int rc = run_cluster(n, [&](Node& node) -> int {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::uint64_t size = sizes[i];
      const std::uint64_t seed = 100 + i;
      // Rotating the origin makes every rank a sender and spreads the
      // objects over different directory shards.
      const int origin = static_cast<int>(i % n);
      const ObjectID id = ObjectID::from_name("broadcast/" + std::to_string(size));
      if (node.rank() == origin) {
        CHECK_OK(node.put(id, make_pattern(size, seed)));
        // Complete locally once put returns: the get must not need the
        // progress thread, let alone a peer.
        ObjectFuture local = node.get(id);
        CHECK_TRUE(local.ready());
        ASSIGN_OR_FAIL(ObjectView view, local.wait(milliseconds(0)));
        CHECK_EQ(view.size(), size);
        CHECK_EQ(view.source(), -1);
        CHECK_PATTERN(view.bytes(), size, seed);
      }
      CHECK_OK(node.barrier(kWait));
      if (node.rank() != origin) {
        CHECK_FALSE(node.contains(id));
        ASSIGN_OR_FAIL(ObjectView view, node.get(id).wait(kWait));
        CHECK_EQ(view.size(), size);
        CHECK_TRUE(view.id() == id);
        CHECK_PATTERN(view.bytes(), size, seed);
        if (size <= kInline) {
          CHECK_EQ(view.source(), -1);  // the directory carried the bytes
        } else {
          CHECK_TRUE(view.source() >= 0 && view.source() < n && view.source() != node.rank());
        }
        CHECK_TRUE(node.contains(id));
        CHECK_EQ(node.local_progress(id), size);
        ObjectFuture again = node.get(id);
        CHECK_TRUE(again.ready());
      }
      CHECK_OK(node.barrier(kWait));
    }
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

INSTANTIATE_TEST_SUITE_P(Ranks, BroadcastTest, ::testing::Values(2, 4, 6), [](const auto& info) {
  std::string name = "n";
  name += std::to_string(info.param);
  return name;
});

// ------------------------------------------------------------- start-up

// Ranks receive the bootstrap table at slightly different moments, so a
// request from a rank that has it may reach one that does not yet. Every
// rank therefore queries every other rank's shard the moment create()
// returns; each answer must arrive. The race is narrow, hence the rounds.
TEST(StartupTest, RequestsRightAfterJoiningAreAnswered) {
  constexpr int kRanks = 6;
  constexpr int kRounds = 8;
  // Names whose directory shard is each rank in turn.
  std::vector<ObjectID> ids;
  for (int i = 0; static_cast<int>(ids.size()) < kRanks; ++i) {
    ObjectID id = ObjectID::from_name("startup/" + std::to_string(i));
    if (id.hash() % kRanks == ids.size()) ids.push_back(id);
  }
  for (int round = 0; round < kRounds; ++round) {
    int rc = run_cluster(kRanks, [&](Node& node) -> int {
      std::vector<ObjectFuture> answers;
      for (const ObjectID& id : ids) answers.push_back(node.get(id, {.must_exist = true}));
      for (auto& a : answers) CHECK_CODE(a.wait(milliseconds(5000)), StatusCode::kNotFound);
      CHECK_OK(node.barrier(kWait));
      return 0;
    });
    ASSERT_EQ(rc, 0) << "round " << round;
  }
}

// ---------------------------------------------------------- get before put

TEST(TransferTest, GetBeforePutIsAnsweredByThePut) {
  constexpr int kRanks = 4;
  const ObjectID small = ObjectID::from_name("early/small");
  const ObjectID large = ObjectID::from_name("early/large");
  constexpr std::uint64_t kSmall = 1000;
  constexpr std::uint64_t kLarge = 3 * kMiB + 5;

  int rc = run_cluster(kRanks, [&](Node& node) -> int {
    ObjectFuture f_small, f_large;
    if (node.rank() != 0) {
      f_small = node.get(small);
      f_large = node.get(large);
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() != 0) {
      // Nothing exists yet, so the gets must be parked, not failed.
      CHECK_CODE(f_small.wait(milliseconds(200)), StatusCode::kTimeout);
      CHECK_CODE(f_large.wait(milliseconds(0)), StatusCode::kTimeout);
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) {
      CHECK_OK(node.put(small, make_pattern(kSmall, 1)));
      CHECK_OK(node.put(large, make_pattern(kLarge, 2)));
    } else {
      ASSIGN_OR_FAIL(ObjectView s, f_small.wait(kWait));
      CHECK_PATTERN(s.bytes(), kSmall, 1);
      ASSIGN_OR_FAIL(ObjectView l, f_large.wait(kWait));
      CHECK_PATTERN(l.bytes(), kLarge, 2);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// ------------------------------------------------------------------ chains

// A -> B -> C where C joins while B holds only half: the directory must give
// C the tail of the chain (B), and B must forward bytes as they arrive.
TEST(TransferTest, ChainStreamsThroughReceiverMidTransfer) {
  const ObjectID id = ObjectID::from_name("chain");
  constexpr std::uint64_t kSize = 64 * kMiB;
  constexpr std::uint64_t kHalf = kSize / 2;
  constexpr std::uint64_t kSeed = 7;

  int rc = run_cluster(3, [&](Node& node) -> int {
    ObjectWriter writer;
    ObjectFuture got;
    if (node.rank() == 0) {
      ASSIGN_OR_FAIL(writer, node.create(id, kSize));
      fill_pattern(writer.data().subspan(0, kHalf), kSeed, 0);
      CHECK_OK(writer.publish(kHalf));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 1) {
      got = node.get(id);
      CHECK_TRUE(wait_until([&] { return node.local_progress(id) >= kHalf; }, kProgressWait));
      // Never past what the writer declared.
      CHECK_EQ(node.local_progress(id), kHalf);
      CHECK_FALSE(got.ready());
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 2) {
      got = node.get(id);
      // Reaching the half proves the lookup was answered, and it can only
      // have come from rank 1 while rank 0 is stuck at the half too.
      CHECK_TRUE(wait_until([&] { return node.local_progress(id) >= kHalf; }, kProgressWait));
      CHECK_EQ(node.local_progress(id), kHalf);
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) {
      fill_pattern(writer.data().subspan(kHalf), kSeed, kHalf);
      CHECK_OK(writer.seal());
    } else {
      ASSIGN_OR_FAIL(ObjectView view, got.wait(kWait));
      CHECK_PATTERN(view.bytes(), kSize, kSeed);
      CHECK_EQ(view.source(), node.rank() - 1);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// ------------------------------------------------------------- streaming

TEST(StreamingTest, ReaderReceivesEveryPublishedStep) {
  const ObjectID id = ObjectID::from_name("stream");
  constexpr std::uint64_t kSize = 8 * kMiB + 123;
  constexpr int kSteps = 8;
  constexpr std::uint64_t kSeed = 11;

  int rc = run_cluster(2, [&](Node& node) -> int {
    ObjectWriter writer;
    if (node.rank() == 0) {
      ASSIGN_OR_FAIL(writer, node.create(id, kSize));
      CHECK_EQ(writer.data().size(), kSize);
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) {
      std::uint64_t done = 0;
      for (int step = 1; step <= kSteps; ++step) {
        std::uint64_t end = kSize * step / kSteps;
        fill_pattern(writer.data().subspan(done, end - done), kSeed, done);
        CHECK_OK(writer.publish(end));
        done = end;
        std::this_thread::sleep_for(milliseconds(20));
      }
      CHECK_OK(writer.seal());
      CHECK_CODE(writer.publish(kSize), StatusCode::kInvalidArgument);  // sealed: empty
    } else {
      ObjectFuture got = node.get(id);
      std::uint64_t last = 0;
      while (!got.ready()) {
        std::uint64_t now = node.local_progress(id);
        CHECK_TRUE(now >= last);  // a partial copy only grows
        last = now;
        std::this_thread::sleep_for(milliseconds(1));
      }
      ASSIGN_OR_FAIL(ObjectView view, got.wait(kWait));
      CHECK_PATTERN(view.bytes(), kSize, kSeed);
      CHECK_EQ(view.source(), 0);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// An unsealed writer that goes away aborts the object: "removed locally and
// from the directory" (object_writer.h).
TEST(StreamingTest, AbortedWriterWithoutReadersIsForgotten) {
  const ObjectID id = ObjectID::from_name("abort/quiet");
  constexpr std::uint64_t kSize = 4 * kMiB;

  int rc = run_cluster(2, [&](Node& node) -> int {
    if (node.rank() == 0) {
      {
        ASSIGN_OR_FAIL(ObjectWriter writer, node.create(id, kSize));
        fill_pattern(writer.data().subspan(0, kSize / 2), 1, 0);
        CHECK_OK(writer.publish(kSize / 2));
      }
      // The abort is handed to the progress thread; it drops the copy soon.
      CHECK_TRUE(wait_until([&] { return node.local_progress(id) == 0; }, milliseconds(5000)));
      CHECK_FALSE(node.contains(id));
    }
    CHECK_OK(node.barrier(kWait));
    ObjectFuture later;
    if (node.rank() == 1) {
      CHECK_CODE(node.get(id, {.must_exist = true}).wait(kWait), StatusCode::kNotFound);
      later = node.get(id);
      CHECK_CODE(later.wait(milliseconds(300)), StatusCode::kTimeout);
    }
    CHECK_OK(node.barrier(kWait));
    // The id is free again: a new put of it answers the parked get.
    if (node.rank() == 0) CHECK_OK(node.put(id, make_pattern(kSize, 2)));
    if (node.rank() == 1) {
      ASSIGN_OR_FAIL(ObjectView view, later.wait(kWait));
      CHECK_PATTERN(view.bytes(), kSize, 2);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// The writer aborts while a reader holds half of the object. Per the wire
// protocol a sender that lost its copy answers Progress(present = 0) and the
// receiver looks up again, so the reader's get must neither complete with
// the stale half nor stay tied to the dead sender: the reader drops the half,
// the directory then knows no copy, and a new put completes the old get.
TEST(StreamingTest, AbortedWriterMidStreamDoesNotStrandReaders) {
  const ObjectID id = ObjectID::from_name("abort/busy");
  constexpr std::uint64_t kSize = 8 * kMiB;
  constexpr std::uint64_t kHalf = kSize / 2;

  int rc = run_cluster(3, [&](Node& node) -> int {
    ObjectWriter writer;
    ObjectFuture got;
    if (node.rank() == 0) {
      ASSIGN_OR_FAIL(writer, node.create(id, kSize));
      fill_pattern(writer.data().subspan(0, kHalf), 1, 0);
      CHECK_OK(writer.publish(kHalf));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 1) {
      got = node.get(id);
      CHECK_TRUE(wait_until([&] { return node.local_progress(id) >= kHalf; }, kProgressWait));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) writer = ObjectWriter();  // aborts the old one
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 1) {
      // The reader hears of the abort from the writer, not from the barrier,
      // so it gets a moment to drop its half copy.
      CHECK_TRUE(wait_until([&] { return node.local_progress(id) == 0; }, milliseconds(5000)));
      CHECK_CODE(got.wait(milliseconds(500)), StatusCode::kTimeout);
    }
    // Only now is the directory sure to have lost every copy; a lookup sent
    // earlier may still be pointed at the reader's doomed half.
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 2) {
      CHECK_CODE(node.get(id, {.must_exist = true}).wait(milliseconds(5000)), StatusCode::kNotFound);
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) CHECK_OK(node.put(id, make_pattern(kSize, 2)));
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 1) {
      ASSIGN_OR_FAIL(ObjectView view, got.wait(kWait));
      CHECK_PATTERN(view.bytes(), kSize, 2);
    }
    if (node.rank() == 2) {
      ASSIGN_OR_FAIL(ObjectView view, node.get(id).wait(kWait));
      CHECK_PATTERN(view.bytes(), kSize, 2);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// A must_exist get was told the object exists and is streaming it (through a
// chain) when the writer aborts. When it looks up again no copy is known, and
// must_exist means "answer NotFound instead of waiting for a put": the get
// must end with an error, not wait for a put that may never come.
TEST(StreamingTest, MustExistGetEndsWhenItsObjectIsAbortedMidTransfer) {
  const ObjectID id = ObjectID::from_name("abort/must-exist");
  constexpr std::uint64_t kSize = 8 * kMiB;
  constexpr std::uint64_t kHalf = kSize / 2;

  int rc = run_cluster(3, [&](Node& node) -> int {
    ObjectWriter writer;
    ObjectFuture got;
    if (node.rank() == 0) {
      ASSIGN_OR_FAIL(writer, node.create(id, kSize));
      fill_pattern(writer.data().subspan(0, kHalf), 1, 0);
      CHECK_OK(writer.publish(kHalf));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 1) {
      got = node.get(id);
      CHECK_TRUE(wait_until([&] { return node.local_progress(id) >= kHalf; }, kProgressWait));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 2) {
      got = node.get(id, {.must_exist = true});
      CHECK_TRUE(wait_until([&] { return node.local_progress(id) >= kHalf; }, kProgressWait));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) writer = ObjectWriter();
    if (node.rank() == 2) {
      auto result = got.wait(milliseconds(5000));
      if (result.is_ok()) FAIL_BODY("a get of an aborted object succeeded");
      if (result.status().code() == StatusCode::kTimeout) {
        FAIL_BODY("must_exist get still waiting 5 s after the abort: " + result.status().to_string());
      }
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// -------------------------------------------------------------- fan-in

// Three senders stream into rank 0 at once; each writer holds back its second
// half until rank 0 has received every first half, so the transfers overlap.
TEST(FanInTest, ObjectsFromDifferentRanksArriveTogether) {
  constexpr int kRanks = 4;
  constexpr std::uint64_t kSize = 24 * kMiB + 9;
  constexpr std::uint64_t kHalf = kSize / 2;
  auto id_of = [](int rank) { return ObjectID::from_name("fanin/" + std::to_string(rank)); };

  int rc = run_cluster(kRanks, [&](Node& node) -> int {
    ObjectWriter writer;
    std::vector<ObjectFuture> got(kRanks);
    const std::uint64_t my_seed = 50 + node.rank();
    if (node.rank() != 0) {
      ASSIGN_OR_FAIL(writer, node.create(id_of(node.rank()), kSize));
      fill_pattern(writer.data().subspan(0, kHalf), my_seed, 0);
      CHECK_OK(writer.publish(kHalf));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 0) {
      for (int r = 1; r < kRanks; ++r) got[r] = node.get(id_of(r));
      CHECK_TRUE(wait_until(
          [&] {
            for (int r = 1; r < kRanks; ++r) {
              if (node.local_progress(id_of(r)) < kHalf) return false;
            }
            return true;
          },
          kProgressWait));
    }
    CHECK_OK(node.barrier(kWait));
    if (node.rank() != 0) {
      fill_pattern(writer.data().subspan(kHalf), my_seed, kHalf);
      CHECK_OK(writer.seal());
    } else {
      for (int r = 1; r < kRanks; ++r) {
        ASSIGN_OR_FAIL(ObjectView view, got[r].wait(kWait));
        CHECK_PATTERN(view.bytes(), kSize, static_cast<std::uint64_t>(50 + r));
        CHECK_EQ(view.source(), r);
      }
      CHECK_TRUE(node.stats().bytes_received >= (kRanks - 1) * kSize);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// The same with plain puts: both gets are issued before either is waited on.
TEST(FanInTest, TwoPutsFetchedConcurrently) {
  constexpr std::uint64_t kSize = 32 * kMiB + 1;
  const ObjectID a = ObjectID::from_name("fanin/put/a");
  const ObjectID b = ObjectID::from_name("fanin/put/b");

  int rc = run_cluster(3, [&](Node& node) -> int {
    if (node.rank() == 0) CHECK_OK(node.put(a, make_pattern(kSize, 61)));
    if (node.rank() == 1) CHECK_OK(node.put(b, make_pattern(kSize, 62)));
    CHECK_OK(node.barrier(kWait));
    if (node.rank() == 2) {
      ObjectFuture fa = node.get(a);
      ObjectFuture fb = node.get(b);
      ASSIGN_OR_FAIL(ObjectView vb, fb.wait(kWait));
      ASSIGN_OR_FAIL(ObjectView va, fa.wait(kWait));
      CHECK_PATTERN(va.bytes(), kSize, 61);
      CHECK_PATTERN(vb.bytes(), kSize, 62);
      CHECK_EQ(va.source(), 0);
      CHECK_EQ(vb.source(), 1);
    }
    CHECK_OK(node.barrier(kWait));
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace hoplite::itest
