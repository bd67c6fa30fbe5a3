// Fault injection on top of the integration harness (tests/integration/
// cluster.h): clusters in which some ranks are SIGKILLed or SIGSTOPped on
// purpose, and a killed rank may come back as a new process.
//
// run_processes() fails a run when any child dies of a signal, so here each
// of its children is only a supervisor: it forks the process that runs the
// Node (the "node process") and waits for it. A rank listed as a victim may
// end by SIGKILL without failing the run; the supervisor then, if asked,
// forks a replacement with NodeOptions::rejoin set. The supervisor never
// creates threads, so forking again from it is as safe as the first fork.
//
// Processes coordinate through a Board: shared anonymous memory mapped by
// the gtest process before the fork, so every process of the run, later
// incarnations included, sees the same pids, progress counters and flags
// without going through the runtime under test.
//
// Thread-safety: run_fault_cluster() from the gtest main thread only, like
// run_processes(). Board fields are lock-free atomics, shared across
// processes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../integration/cluster.h"
#include "hoplite/node.h"

namespace hoplite::ftest {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

inline constexpr int kMaxRanks = 8;
inline constexpr int kFlags = 16;
// Short enough that a stopped peer is noticed well within a test's budget,
// long enough that two busy cores do not starve heartbeats into false
// alarms.
inline constexpr milliseconds kFailureTimeout{500};

static_assert(std::atomic<std::int64_t>::is_always_lock_free,
              "Board atomics must not need a process-local lock");

struct Board {
  // The node process of each rank (its latest incarnation), set by that
  // process itself before it joins, so it is known before anyone can reach
  // a point where they would signal it.
  std::atomic<std::int64_t> pid[kMaxRanks];
  // Killed or stopped on purpose: pacing loops stop waiting for it.
  std::atomic<bool> gone[kMaxRanks];
  // steady_clock (CLOCK_MONOTONIC, shared by all processes) nanoseconds at
  // which the rank's supervisor reaped its killed node process, and at
  // which a sibling stopped it; 0 until then.
  std::atomic<std::int64_t> died_ns[kMaxRanks];
  std::atomic<std::int64_t> stopped_ns[kMaxRanks];
  // local_progress of the object a test watches, mirrored by each rank.
  std::atomic<std::uint64_t> progress[kMaxRanks];
  // The control port of each rank's latest incarnation (loopback), set by
  // the node process once it has joined: a rejoiner asks these members.
  std::atomic<std::int64_t> control_port[kMaxRanks];
  // Test-specific phase flags and counters.
  std::atomic<std::int64_t> flag[kFlags];
  // Test-specific timestamps (the chaos soak's kills) and bits (its
  // rounds some rank skipped).
  std::atomic<std::int64_t> events[64];
  std::atomic<std::uint64_t> bits[16];
  // Test-specific records of three fields (the chaos soak's failed
  // operations: round and rank, start, end).
  std::atomic<std::int64_t> records[128][3];
};

// A Board in shared memory for one run; unmapped on destruction.
class SharedBoard {
 public:
  SharedBoard();
  ~SharedBoard();
  SharedBoard(const SharedBoard&) = delete;
  SharedBoard& operator=(const SharedBoard&) = delete;
  Board& operator*() const { return *board_; }
  Board* operator->() const { return board_; }

 private:
  Board* board_;
};

using FaultBody = std::function<int(Node& node, Board& board)>;

struct FaultPlan {
  int n = 4;
  // Ranks whose node process may die of SIGKILL; any other end but exit 0
  // fails the run. Victims that exit 0 are fine too.
  std::set<int> victims;
  // Ranks that come back, as a new process with rejoin set, after their
  // first node process died of SIGKILL; the replacement runs this body and
  // must exit 0 (or, within max_rejoins, die of SIGKILL and come back
  // again). A rejoiner asks the bootstrap address (unless it is rank 0) and
  // then every other rank's latest control address, highest rank first, so
  // that it usually reaches a member that does not lead first.
  std::map<int, FaultBody> rejoin;
  // How many times each rank of `rejoin` may come back.
  int max_rejoins = 1;
  // Ranks of `rejoin` whose replacement starts as soon as their first node
  // process is stopped (SIGSTOP), not once it is dead: the stopped process
  // keeps its sockets open, so the others may still count it alive when the
  // replacement dials rank 0. The stopped process is SIGKILLed once the
  // replacement has exited, whose exit code is the rank's.
  std::set<int> rejoin_when_stopped;
  // Extra adjustments to the rejoiner's options (for example to skip the
  // start-up link probe).
  std::function<void(NodeOptions&)> rejoin_options;
  itest::ClusterOptions cluster;
  milliseconds failure_timeout = kFailureTimeout;
};

// Runs body in every rank's node process. Returns 0 when every survivor
// (and every rejoiner) exited 0 and every victim either exited 0 or died of
// SIGKILL.
int run_fault_cluster(const FaultPlan& plan, Board& board, const FaultBody& body);

// For FaultPlan::rejoin_options: a fixed link model, so the rejoiner skips
// the start-up link probe, which needs every member in a barrier (see
// RejoinTest.DefaultOptionsJoinPromptly).
void skip_link_probe(NodeOptions& o);

// The cluster options every fault test starts from: stores sized for a few
// objects of up to 64 MiB, and 1 MiB chunks so progress moves in steps that
// thresholds can be placed between.
itest::ClusterOptions fault_cluster_options();

// ------------------------------------------------------------ node side

std::int64_t now_ns();
// Milliseconds since a Board timestamp.
double ms_since(std::int64_t ns);

// A thread that polls `cond` and calls `act` once, the first time it holds.
// Stopping it (or destroying it) before that skips `act`.
class Trigger {
 public:
  Trigger(std::function<bool()> cond, std::function<void()> act);
  ~Trigger();
  Trigger(const Trigger&) = delete;
  Trigger& operator=(const Trigger&) = delete;
  void stop();
  bool fired() const { return fired_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<bool> fired_{false};
  std::thread t_;
};

// A Trigger that kills its own process. The kill comes from inside the
// victim, so it lands at exactly the progress the condition names, with no
// delay from another process's polling.
std::unique_ptr<Trigger> die_when(std::function<bool()> cond);

// Copies node.local_progress(id) into *slot every 100 us while it lives, so
// other processes can pace themselves on this rank's progress.
class ProgressMirror {
 public:
  ProgressMirror(Node& node, const ObjectID& id, std::atomic<std::uint64_t>* slot);
  ~ProgressMirror();
  ProgressMirror(const ProgressMirror&) = delete;
  ProgressMirror& operator=(const ProgressMirror&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread t_;
};

// Records membership events as this node sees them (install before the
// events happen).
class MembershipLog {
 public:
  explicit MembershipLog(Node& node);
  // An event saying `rank` failed (alive = false) or rejoined (true) has
  // arrived within `timeout`.
  bool saw(int rank, bool alive, milliseconds timeout) const;

 private:
  std::shared_ptr<std::pair<std::mutex, std::vector<MembershipEvent>>> state_;
};

bool lists(const std::vector<int>& ranks, int rank);

// Waits until node.failed_ranks() lists `rank` (or, with listed = false,
// no longer lists it). Returns false on timeout.
bool wait_failed(const Node& node, int rank, milliseconds timeout, bool listed = true);

// Sends `sig` to rank's node process and records it on the board: SIGSTOP
// marks it gone and stamps stopped_ns.
void signal_rank(Board& board, int rank, int sig);

// A streaming put of the pattern object (size, seed) in `steps` equal
// publishes, each issued once `ready(published_so_far)` holds or after
// `step_timeout`; the first step goes out at once; seals after the last.
// The object is written in full before the first publish, so pacing only
// decides what receivers may see, never what the bytes are.
struct StreamPlan {
  std::uint64_t size = 0;
  std::uint64_t seed = 0;
  int steps = 32;
  milliseconds step_timeout{5000};
  std::function<bool(std::uint64_t published)> ready;
};
Status stream_put(Node& node, const ObjectID& id, const StreamPlan& plan);

// ready() for stream_put: every listed receiver has mirrored at least the
// published bytes, or some receiver is gone (after a failure, pacing would
// only stall the survivors that wait for the complete copy).
std::function<bool(std::uint64_t)> paced_by(Board& board, std::vector<int> receivers);

// An ObjectID from `prefix` + a counter whose directory shard (hash % n) is
// `shard`.
ObjectID id_with_shard(const std::string& prefix, int n, int shard);

}  // namespace hoplite::ftest
