// Chaos soak: eight ranks run a few hundred collectives of random kind and
// size (broadcast, reduce and allreduce of any 4 of 8, gather), paced by the
// clock, while one rank at a time, rank 0 included, is SIGKILLed at a random
// point and restarted as a new process that rejoins and re-runs the round
// its predecessor died in. Every result a rank gets is checked byte for
// byte; an operation may instead fail with a documented error (timeout, peer
// failure) only if a kill happened shortly before or during it, or a rank
// was late and skipped that round (a rank that waited out a timeout catches
// up by skipping rounds); nothing may take longer than its timeout; and
// after the final removes every store is empty.

#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fault_cluster.h"
#include "hoplite/reduce.h"

namespace hoplite::ftest {
namespace {

constexpr int kN = 8;
constexpr int kRounds = 300;
static_assert(kRounds <= 16 * 64, "Board::bits has a bit per round");
constexpr std::int64_t kPeriodNs = 100'000'000;  // a round starts every 100 ms
constexpr milliseconds kOpTimeout{3000};
// A rank more than this many rounds late skips ahead, so that every round's
// objects are read within kOpTimeout of its start and can be removed later.
constexpr int kMaxBehind = 5;
// Owners remove a round's objects this many rounds later (3.5 s).
constexpr int kRemoveAfter = 35;
constexpr int kKills = 12;
constexpr std::int64_t kKillGapNs = 1'500'000'000;
// The victims, in order (but every fourth kill, see Killer): every rank,
// rank 0 twice.
constexpr int kVictims[kKills] = {3, 0, 5, 1, 6, 2, 7, 4, 0, 3, 5, 1};
// An error is excused if a kill happened at most this long before the
// operation started (its objects may have died with the killed process)
// or while it ran.
constexpr std::int64_t kExcuseNs = 2 * 3'000'000'000LL;
constexpr std::uint64_t kSizes[] = {4u << 10, 64u << 10, 256u << 10, 1u << 20};

// Board::events: kill j's time at j, its round and victim at 32 + j, and
// the round each rank is playing at kPlayingAt + rank.
constexpr int kPlayingAt = 48;

// Board flags.
constexpr int kStartNs = 0;     // round 0's start
constexpr int kKillsDone = 1;   // kills so far
constexpr int kNextKillNs = 2;  // no kill before this
constexpr int kOk = 3;          // operations that returned a checked result
constexpr int kFailed = 4;      // operations that failed with a documented error (records)
constexpr int kSkipped = 5;     // rounds a late rank skipped
constexpr int kFinished = 6;    // incarnations that ran every round
constexpr int kRemoved = 7;     // ranks done with the final removes
constexpr int kChecked = 8;     // ranks whose store is empty
constexpr int kWorstMs = 9;     // the longest operation

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

enum class Kind { kBroadcast, kReduce, kAllreduce, kGather };
const char* name(Kind k) {
  switch (k) {
    case Kind::kBroadcast: return "broadcast";
    case Kind::kReduce: return "reduce";
    case Kind::kAllreduce: return "allreduce";
    case Kind::kGather: return "gather";
  }
  return "?";
}

struct Round {
  Kind kind;
  int root;
  std::uint64_t size;
};
Round round_plan(int i) {
  const std::uint64_t h = mix(static_cast<std::uint64_t>(i) + 1);
  return {static_cast<Kind>(h % 4), i % kN, kSizes[(h >> 8) % std::size(kSizes)]};
}

ObjectID object(int i, const std::string& what) {
  return ObjectID::from_name("chaos/" + std::to_string(i) + "/" + what);
}
ObjectID input(int i, int rank) {
  return object(i, "in/" + std::to_string(rank));
}
ObjectID part(int i, int rank) {
  return object(i, "part/" + std::to_string(rank));
}
ObjectID bcast(int i) {
  return object(i, "bcast");
}
ObjectID target(int i) {
  return object(i, "sum");
}
// Every object rank `r` (any of its incarnations) may have put in round i.
std::vector<ObjectID> owned(int i, int r) {
  std::vector<ObjectID> ids{input(i, r), part(i, r)};
  if (round_plan(i).root == r) {
    ids.push_back(bcast(i));
    ids.push_back(target(i));
  }
  return ids;
}

// Input r of a reduce is 2^r in every element: any sum of distinct inputs
// is exact in float and says which inputs it holds.
std::vector<float> reduce_input(std::uint64_t size, int rank) {
  return std::vector<float>(size / sizeof(float), static_cast<float>(1u << rank));
}

// Empty when `v` is a sum of exactly 4 distinct inputs in every element
// (and, with `used` non-empty, of those inputs).
std::string sum_mismatch(const ObjectView& v, std::uint64_t size, const std::vector<ObjectID>& used, int i) {
  if (v.size() != size) return "size " + std::to_string(v.size()) + ", want " + std::to_string(size);
  float first;
  std::memcpy(&first, v.data(), sizeof first);
  const auto bits = static_cast<unsigned>(first);
  if (static_cast<float>(bits) != first || bits >= (1u << kN) || std::popcount(bits) != 4) {
    return "element 0 is " + std::to_string(first) + ", not a sum of 4 inputs";
  }
  if (!used.empty()) {
    unsigned want = 0;
    for (int r = 0; r < kN; ++r) {
      if (std::find(used.begin(), used.end(), input(i, r)) != used.end()) want |= 1u << r;
    }
    if (want != bits)
      return "sum " + std::to_string(bits) + " but the used inputs make " + std::to_string(want);
  }
  for (std::size_t e = 1; e < size / sizeof(float); ++e) {
    float f;
    std::memcpy(&f, v.data() + e * sizeof f, sizeof f);
    if (f != first) return "element " + std::to_string(e) + " is " + std::to_string(f);
  }
  return {};
}

// The round this process is playing, -1 between rounds, and whether it is
// inside a reduce it coordinates (for the killer).
std::atomic<int> g_playing{-1};
std::atomic<bool> g_reducing{false};

bool documented(const Status& st) {
  return st.code() == StatusCode::kTimeout || st.code() == StatusCode::kPeerFailure;
}

// A late rank skips rounds: its part of them (a root's object, an input,
// a gather part) never comes, and whoever waits for it waits in vain.
void mark_skipped(Board& b, int i) {
  b.bits[i / 64] |= 1ull << (i % 64);
}
bool skipped(const Board& b, int i) {
  return (b.bits[i / 64] >> (i % 64)) & 1;
}

bool kill_near(const Board& b, std::int64_t start, std::int64_t end) {
  const auto n = std::min<std::int64_t>(b.flag[kKillsDone], kKills);
  for (std::int64_t j = 0; j < n; ++j) {
    const std::int64_t t = b.events[j];
    if (t >= start - kExcuseNs && t <= end) return true;
  }
  return false;
}

// One rank's part of round i. A wrong byte fails the run; an error is
// returned for the caller to excuse or not.
class Player {
 public:
  Player(Node& node, Board& b) : node_(node), b_(b), me_(node.rank()) {}

  // 0, or the body's failure code (a wrong result, an unexcused error).
  // A late rank's part of a round it skips: only what others wait for (the
  // root's object, its input, its gather part), so that skipping does not
  // make others late in turn; no gets, no reduce.
  void produce(int i) {
    const Round r = round_plan(i);
    b_.events[kPlayingAt + me_] = i;
    switch (r.kind) {
      case Kind::kBroadcast:
        if (me_ == r.root) (void)node_.put(bcast(i), itest::make_pattern(r.size, mix(i)));
        break;
      case Kind::kReduce:
      case Kind::kAllreduce: {
        auto in = reduce_input(r.size, me_);
        (void)node_.put(input(i, me_), in.data(), r.size);
        break;
      }
      case Kind::kGather:
        if (me_ != r.root) (void)node_.put(part(i, me_), itest::make_pattern(r.size, mix(i) + me_));
        break;
    }
    remove_old(i);
  }

  int play(int i) {
    const Round r = round_plan(i);
    const std::int64_t t0 = now_ns();
    g_playing = i;
    b_.events[kPlayingAt + me_] = i;
    Status st;
    std::string wrong;
    switch (r.kind) {
      case Kind::kBroadcast: st = broadcast(i, r, wrong); break;
      case Kind::kReduce:
      case Kind::kAllreduce: st = reduce(i, r, wrong); break;
      case Kind::kGather: st = gather(i, r, wrong); break;
    }
    g_playing = -1;
    const std::int64_t t1 = now_ns();
    const auto ms = (t1 - t0) / 1'000'000;
    std::int64_t worst = b_.flag[kWorstMs];
    while (ms > worst && !b_.flag[kWorstMs].compare_exchange_weak(worst, ms)) {
    }
    const std::string what = "round " + std::to_string(i) + " (" + name(r.kind) + " of " +
                             std::to_string(r.size) + " B, root " + std::to_string(r.root) + ") at rank " +
                             std::to_string(me_);
    if (!wrong.empty()) FAIL_BODY(what + ": wrong result: " + wrong);
    // Nothing hangs: every call gives up by its timeout (a reduce's root
    // makes two calls: the reduce and the get of its target), plus 2 s for
    // the put before them on a loaded machine.
    const bool root_reduces = me_ == r.root && (r.kind == Kind::kReduce || r.kind == Kind::kAllreduce);
    const std::int64_t bound = (root_reduces ? 2 : 1) * kOpTimeout.count() + 2000;
    if (ms > bound) FAIL_BODY(what + " took " + std::to_string(ms) + " ms");
    b_.progress[me_]++;  // rounds this rank finished, over its incarnations
    // Only what read something counts as a checked result (a reduce's
    // other ranks and a gather's senders only put).
    const bool reads = r.kind == Kind::kAllreduce || (r.kind == Kind::kBroadcast) == (me_ != r.root);
    if (st.is_ok()) {
      if (reads) b_.flag[kOk]++;
    } else if (documented(st)) {
      // Judged once every rank is done (a late rank may mark the round
      // skipped only after this): see excused().
      const std::int64_t n = b_.flag[kFailed]++;
      if (n >= static_cast<std::int64_t>(std::size(b_.records))) FAIL_BODY(what + ": too many failures");
      b_.records[n][0] = i * kN + me_;
      b_.records[n][1] = t0;
      b_.records[n][2] = t1;
      if (n < 8) std::fprintf(stderr, "chaos: %s: %s\n", what.c_str(), st.to_string().c_str());
    } else {
      FAIL_BODY(what + " failed: " + st.to_string());
    }
    remove_old(i);
    return 0;
  }

 private:
  Status broadcast(int i, const Round& r, std::string& wrong) {
    if (me_ == r.root) return node_.put(bcast(i), itest::make_pattern(r.size, mix(i)));
    auto v = node_.get(bcast(i)).wait(kOpTimeout);
    if (!v.is_ok()) return v.status();
    wrong = itest::pattern_mismatch(v->bytes(), r.size, mix(i));
    return {};
  }

  Status reduce(int i, const Round& r, std::string& wrong) {
    auto in = reduce_input(r.size, me_);
    HOPLITE_RETURN_IF_ERROR(node_.put(input(i, me_), in.data(), r.size));
    if (me_ == r.root) {
      ReduceOptions o;
      for (int x = 0; x < kN; ++x) o.inputs.push_back(input(i, x));
      o.target = target(i);
      o.k = 4;
      o.timeout = kOpTimeout;
      g_reducing = true;
      auto res = node_.reduce(o);
      g_reducing = false;
      if (!res.is_ok()) return res.status();
      auto v = node_.get(target(i)).wait(kOpTimeout);
      if (!v.is_ok()) return v.status();
      wrong = sum_mismatch(v.value(), r.size, res->used, i);
      return {};
    }
    if (r.kind != Kind::kAllreduce) return {};
    auto v = node_.get(target(i)).wait(kOpTimeout);
    if (!v.is_ok()) return v.status();
    wrong = sum_mismatch(v.value(), r.size, {}, i);
    return {};
  }

  Status gather(int i, const Round& r, std::string& wrong) {
    if (me_ != r.root) return node_.put(part(i, me_), itest::make_pattern(r.size, mix(i) + me_));
    std::vector<ObjectFuture> gets;
    for (int x = 0; x < kN; ++x) {
      if (x != me_) gets.push_back(node_.get(part(i, x)));
    }
    const auto deadline = Clock::now() + kOpTimeout;
    Status first;
    std::size_t g = 0;
    for (int x = 0; x < kN; ++x) {
      if (x == me_) continue;
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      auto v = gets[g++].wait(std::max(left, milliseconds(1)));
      if (!v.is_ok()) {
        if (first.is_ok()) first = v.status();
        continue;
      }
      std::string w = itest::pattern_mismatch(v->bytes(), r.size, mix(i) + x);
      if (!w.empty() && wrong.empty()) wrong = "part of rank " + std::to_string(x) + ": " + w;
    }
    return first;
  }

  // This rank's objects of an old round: everyone is done with them.
  void remove_old(int i) {
    if (i < kRemoveAfter) return;
    for (const auto& id : owned(i - kRemoveAfter, me_)) (void)node_.remove(id);
  }

  Node& node_;
  Board& b_;
  const int me_;
};

// Kill j takes the rank kVictims[j] in the middle of whatever collective it
// plays; every fourth kill instead takes whichever rank is coordinating an
// allreduce at that moment (its readers then wait for a target that never
// comes). Only once every rank is up and sees every other (one death at a
// time), and not in the last seconds of the soak. The kill comes from a
// thread of the victim itself, so it lands exactly in that state.
class Killer {
 public:
  Killer(Node& node, Board& b) : node_(node), b_(b), t_([this] { run(); }) {}
  ~Killer() {
    stop_ = true;
    t_.join();
  }
  Killer(const Killer&) = delete;
  Killer& operator=(const Killer&) = delete;

 private:
  bool due(std::int64_t j) const {
    const int me = node_.rank();
    if (j >= kKills || b_.flag[kStartNs] == 0) return false;
    const std::int64_t now = now_ns();
    if (now < b_.flag[kNextKillNs] || now > b_.flag[kStartNs] + (kRounds - 40) * kPeriodNs) return false;
    const int playing = g_playing;
    if (playing < 0) return false;
    if (j % 4 == 1) {
      if (!g_reducing || round_plan(playing).kind != Kind::kAllreduce) return false;
    } else if (kVictims[j] != me) {
      return false;
    }
    for (int r = 0; r < kN; ++r) {
      if (b_.control_port[r] <= 0) return false;
    }
    return node_.failed_ranks().empty();
  }

  void run() {
    while (!stop_) {
      std::int64_t j = b_.flag[kKillsDone];
      // The claim makes the kill this rank's alone.
      if (due(j) && b_.flag[kKillsDone].compare_exchange_strong(j, j + 1)) {
        const std::int64_t now = now_ns();
        b_.events[j] = now;
        b_.events[32 + j] = g_playing * 8 + node_.rank();
        b_.flag[kNextKillNs] = now + kKillGapNs + static_cast<std::int64_t>(mix(j) % 500'000'000);
        ::raise(SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  Node& node_;
  Board& b_;
  std::atomic<bool> stop_{false};
  std::thread t_;
};

int soak(Node& node, Board& b) {
  const int me = node.rank();
  if (b.flag[kStartNs] == 0) {
    // The first incarnations start together.
    CHECK_OK(node.barrier(milliseconds(20000)));
    if (me == 0) {
      b.flag[kNextKillNs] = now_ns() + 1'000'000'000;
      b.flag[kStartNs] = now_ns() + 300'000'000;
    }
    CHECK_TRUE(itest::wait_until([&] { return b.flag[kStartNs] != 0; }, milliseconds(5000)));
  }
  auto killer = std::make_unique<Killer>(node, b);
  Player player(node, b);
  const std::int64_t start = b.flag[kStartNs];
  int i = static_cast<int>(std::max<std::int64_t>(0, (now_ns() - start) / kPeriodNs));
  // A restarted rank starts again from the round its predecessor died in, as
  // a task runtime re-runs lost work: the readers still waiting for that
  // round's objects get them (late rounds are only produced, see below).
  if (b.events[kPlayingAt + me] > 0) i = std::min<int>(i, static_cast<int>(b.events[kPlayingAt + me]));
  for (; i < kRounds; ++i) {
    const int due = static_cast<int>((now_ns() - start) / kPeriodNs);
    if (due - i > kMaxBehind) {
      const int to = std::min(due - kMaxBehind, kRounds);
      b.flag[kSkipped] += to - i;
      for (int x = i; x < to; ++x) {
        mark_skipped(b, x);
        player.produce(x);
      }
      i = to;
      if (i == kRounds) break;
    }
    const std::int64_t at = start + i * kPeriodNs;
    if (const std::int64_t wait = at - now_ns(); wait > 0)
      std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
    if (int rc = player.play(i)) return rc;
  }
  killer.reset();
  // Every rank is up and sees every other.
  b.flag[kFinished]++;
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kFinished] == kN; }, milliseconds(30000)));
  CHECK_TRUE(itest::wait_until([&] { return node.failed_ranks().empty(); }, milliseconds(5000)));
  // The final removes: each rank removes whatever it or its earlier
  // incarnations put (the copies others hold go with it).
  for (int r = 0; r < kRounds; ++r) {
    for (const auto& id : owned(r, me)) {
      Status st = node.remove(id);
      if (!st.is_ok() && st.code() != StatusCode::kNotFound) {
        FAIL_BODY("final remove of round " + std::to_string(r) + ": " + st.to_string());
      }
    }
  }
  b.flag[kRemoved]++;
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kRemoved] == kN; }, milliseconds(30000)));
  if (!itest::wait_until(
          [&] {
            const NodeStats s = node.stats();
            return s.objects == 0 && s.store_used == 0;
          },
          milliseconds(10000))) {
    const NodeStats s = node.stats();
    FAIL_BODY("store not empty after the final removes: " + std::to_string(s.objects) + " objects, " +
              std::to_string(s.store_used) + " bytes");
  }
  b.flag[kChecked]++;
  // Nobody leaves while another may still be removing through it.
  CHECK_TRUE(itest::wait_until([&] { return b.flag[kChecked] == kN; }, milliseconds(30000)));
  return 0;
}

TEST(ChaosSoak, RandomCollectivesWhileRanksDieAndRejoin) {
  SharedBoard board;
  FaultPlan plan;
  plan.n = kN;
  plan.cluster = fault_cluster_options();
  plan.cluster.timeout = std::chrono::seconds(200);
  plan.max_rejoins = 4;
  plan.rejoin_options = skip_link_probe;
  for (int r = 0; r < kN; ++r) {
    plan.victims.insert(r);
    plan.rejoin[r] = soak;
  }
  int rc = run_fault_cluster(plan, *board, soak);
  std::printf(
      "chaos soak: %d rounds, %lld kills, %lld results checked, %lld documented errors, %lld rounds "
      "skipped by late ranks, longest operation %lld ms\n",
      kRounds, static_cast<long long>(board->flag[kKillsDone].load()),
      static_cast<long long>(board->flag[kOk].load()), static_cast<long long>(board->flag[kFailed].load()),
      static_cast<long long>(board->flag[kSkipped].load()),
      static_cast<long long>(board->flag[kWorstMs].load()));
  for (int j = 0; j < board->flag[kKillsDone]; ++j) {
    const int i = static_cast<int>(board->events[32 + j] / 8);
    const int v = static_cast<int>(board->events[32 + j] % 8);
    std::printf("  kill %d: rank %d in round %d (%s of %llu B, root %d)\n", j, v, i, name(round_plan(i).kind),
                static_cast<unsigned long long>(round_plan(i).size), round_plan(i).root);
  }
  std::printf("  rounds finished by rank:");
  for (int r = 0; r < kN; ++r)
    std::printf(" %llu", static_cast<unsigned long long>(board->progress[r].load()));
  std::printf("\n");
  EXPECT_EQ(rc, 0);
  // A kill waits for a full cluster and, every fourth, for an allreduce to
  // coordinate: on a loaded machine the last ones may not fit in.
  EXPECT_GE(board->flag[kKillsDone], kKills - 4) << "too few kills happened";
  EXPECT_EQ(board->flag[kChecked], kN);
  // Most operations see no kill at all.
  EXPECT_GT(board->flag[kOk], 4 * board->flag[kFailed]);
  // Every failure came near a kill or in a round a late rank skipped.
  const auto failed = std::min<std::int64_t>(board->flag[kFailed], std::size(board->records));
  for (std::int64_t n = 0; n < failed; ++n) {
    const auto& rec = board->records[n];
    const int i = static_cast<int>(rec[0] / kN);
    EXPECT_TRUE(kill_near(*board, rec[1], rec[2]) || skipped(*board, i))
        << "round " << i << " (" << name(round_plan(i).kind) << ", root " << round_plan(i).root
        << ") at rank " << rec[0] % kN << " failed with no kill near it and nobody late";
  }
}

}  // namespace
}  // namespace hoplite::ftest
