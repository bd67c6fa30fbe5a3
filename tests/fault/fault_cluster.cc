#include "fault_cluster.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>

namespace hoplite::ftest {
namespace {

using itest::report_failure;

// How often pacing and trigger threads look. Fine enough that a threshold
// is caught within a chunk or two of 1 MiB, coarse enough that a handful of
// them per process cost nothing next to the transfers on two cores.
constexpr std::chrono::microseconds kPoll{100};

[[noreturn]] void node_main(int rank, pid_t supervisor, const NodeOptions& options, Board& board,
                            const FaultBody& body) {
  // The node process must not outlive its supervisor: when the run's
  // deadline kills the supervisors, this takes the node processes (stopped
  // ones included) with them.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != supervisor) ::_exit(itest::kExitException);
  board.pid[rank] = ::getpid();

  int code = itest::kExitException;
  try {
    auto created = Node::create(options);
    if (!created.is_ok()) {
      report_failure(
          __FILE__, __LINE__,
          std::string(options.rejoin ? "rejoin: " : "") + "Node::create: " + created.status().to_string());
      std::fflush(nullptr);
      ::_exit(itest::kExitCreateFailed);
    }
    std::unique_ptr<Node> node = std::move(created).value();
    const std::string addr = node->control_address(rank);
    board.control_port[rank] = std::stoll(addr.substr(addr.rfind(':') + 1));
    code = body(*node, board);
    node.reset();
  } catch (const std::exception& e) {
    report_failure(__FILE__, __LINE__, std::string("exception: ") + e.what());
  } catch (...) {
    report_failure(__FILE__, __LINE__, "unknown exception");
  }
  std::fflush(nullptr);
  ::_exit(code);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + ::strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// Waits for `pid` (with WUNTRACED in `flags`, also for it to stop).
bool wait_child(pid_t pid, int* status, int flags) {
  while (::waitpid(pid, status, flags) < 0) {
    if (errno != EINTR) {
      report_failure(__FILE__, __LINE__, std::string("waitpid: ") + std::strerror(errno));
      return false;
    }
  }
  return true;
}

// Runs in run_processes()'s child: forks the node process (and, after a
// planned kill, its replacement) and turns their fates into one exit code.
int supervise(const FaultPlan& plan, Board& board, const FaultBody& body, int rank,
              const std::string& bootstrap) {
  const FaultBody* current = &body;
  bool rejoining = false;
  int rejoins = 0;
  auto as_rejoiner = [&](NodeOptions& options) {
    options.rejoin = true;
    // First: the hook may wait for the cluster to reach a state.
    if (plan.rejoin_options) plan.rejoin_options(options);
    options.rejoin_contacts.clear();
    for (int r = plan.n - 1; r >= 0; --r) {
      if (r != rank && board.control_port[r] > 0)
        options.rejoin_contacts.push_back("127.0.0.1:" + std::to_string(board.control_port[r].load()));
    }
  };
  for (;;) {
    NodeOptions options = itest::make_options(rank, plan.n, bootstrap, plan.cluster);
    options.failure_timeout = plan.failure_timeout;
    if (rejoining) as_rejoiner(options);
    std::fflush(nullptr);
    const pid_t supervisor = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      report_failure(__FILE__, __LINE__, std::string("fork: ") + std::strerror(errno));
      return itest::kExitException;
    }
    if (pid == 0) node_main(rank, supervisor, options, board, *current);

    int status = 0;
    const bool on_stop = !rejoining && plan.rejoin_when_stopped.count(rank) && plan.rejoin.count(rank);
    if (!wait_child(pid, &status, on_stop ? WUNTRACED : 0)) return itest::kExitException;
    if (on_stop && WIFSTOPPED(status)) {
      // The replacement starts while the stopped process still holds its
      // sockets, so the others may still count the rank alive when it
      // rejoins. The stopped one is killed once the replacement is done.
      current = &plan.rejoin.at(rank);
      as_rejoiner(options);
      std::fflush(nullptr);
      const pid_t again = ::fork();
      if (again < 0) {
        report_failure(__FILE__, __LINE__, std::string("fork: ") + std::strerror(errno));
        ::kill(pid, SIGKILL);
        return itest::kExitException;
      }
      if (again == 0) node_main(rank, supervisor, options, board, *current);
      int again_status = 0;
      const bool reaped = wait_child(again, &again_status, 0);
      ::kill(pid, SIGKILL);
      if (!wait_child(pid, &status, 0) || !reaped) return itest::kExitException;
      board.died_ns[rank] = now_ns();
      if (WIFEXITED(again_status)) return WEXITSTATUS(again_status);
      report_failure(__FILE__, __LINE__, "rejoined node process ended by " + describe(again_status));
      return itest::kExitException;
    }
    if (WIFEXITED(status)) {
      // A failing body has already said why.
      return WEXITSTATUS(status);
    }
    const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (killed) {
      board.died_ns[rank] = now_ns();
      board.gone[rank] = true;
      board.control_port[rank] = 0;
    }
    if (!killed || !plan.victims.count(rank) || (rejoining && rejoins >= plan.max_rejoins)) {
      report_failure(__FILE__, __LINE__,
                     std::string(rejoining ? "rejoined " : "") + "node process ended by " + describe(status) +
                         " (not a planned victim)");
      return itest::kExitException;
    }
    auto again = plan.rejoin.find(rank);
    if (again == plan.rejoin.end()) return 0;
    current = &again->second;
    rejoining = true;
    rejoins++;
  }
}

}  // namespace

// ------------------------------------------------------------------ board

SharedBoard::SharedBoard() {
  void* p = ::mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error(std::string("mmap: ") + std::strerror(errno));
  board_ = new (p) Board{};
}

SharedBoard::~SharedBoard() {
  board_->~Board();
  ::munmap(board_, sizeof(Board));
}

// ------------------------------------------------------------------ runner

int run_fault_cluster(const FaultPlan& plan, Board& board, const FaultBody& body) {
  if (plan.n > kMaxRanks) {
    std::fprintf(stderr, "run_fault_cluster: at most %d ranks\n", kMaxRanks);
    return -1;
  }
  return itest::run_processes(
      plan.n,
      [&](int rank, const std::string& bootstrap) { return supervise(plan, board, body, rank, bootstrap); },
      plan.cluster.timeout);
}

void skip_link_probe(NodeOptions& o) {
  o.link_bandwidth = 1e9;
  o.link_latency = 50e-6;
}

itest::ClusterOptions fault_cluster_options() {
  itest::ClusterOptions o;
  o.store_capacity = 256ull << 20;
  o.chunk_size = 1u << 20;
  o.bootstrap_timeout = std::chrono::seconds(30);
  // Far above a run's healthy length (a few seconds), far below meson's
  // 300 s, so a hang is reported with every rank's fate.
  o.timeout = std::chrono::seconds(90);
  return o;
}

// -------------------------------------------------------------- node side

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

double ms_since(std::int64_t ns) {
  return static_cast<double>(now_ns() - ns) / 1e6;
}

Trigger::Trigger(std::function<bool()> cond, std::function<void()> act)
    : t_([this, cond = std::move(cond), act = std::move(act)] {
        while (!stop_.load()) {
          if (cond()) {
            fired_ = true;
            act();
            return;
          }
          std::this_thread::sleep_for(kPoll);
        }
      }) {}

Trigger::~Trigger() {
  stop();
}

void Trigger::stop() {
  stop_ = true;
  if (t_.joinable()) t_.join();
}

std::unique_ptr<Trigger> die_when(std::function<bool()> cond) {
  return std::make_unique<Trigger>(std::move(cond), [] {
    ::raise(SIGKILL);
    // Not reached: SIGKILL cannot be caught or ignored.
  });
}

ProgressMirror::ProgressMirror(Node& node, const ObjectID& id, std::atomic<std::uint64_t>* slot)
    : t_([this, &node, id, slot] {
        while (!stop_.load()) {
          *slot = node.local_progress(id);
          std::this_thread::sleep_for(kPoll);
        }
        *slot = node.local_progress(id);
      }) {}

ProgressMirror::~ProgressMirror() {
  stop_ = true;
  t_.join();
}

MembershipLog::MembershipLog(Node& node) {
  // The node's callback thread may run a callback queued before this log is
  // gone; shared state keeps that safe however the two are torn down.
  auto state = std::make_shared<std::pair<std::mutex, std::vector<MembershipEvent>>>();
  state_ = state;
  node.on_membership_change([state](const MembershipEvent& ev) {
    std::lock_guard lock(state->first);
    state->second.push_back(ev);
  });
}

bool MembershipLog::saw(int rank, bool alive, milliseconds timeout) const {
  return itest::wait_until(
      [&] {
        std::lock_guard lock(state_->first);
        return std::any_of(state_->second.begin(), state_->second.end(),
                           [&](const auto& ev) { return ev.rank == rank && ev.alive == alive; });
      },
      timeout);
}

bool lists(const std::vector<int>& ranks, int rank) {
  return std::find(ranks.begin(), ranks.end(), rank) != ranks.end();
}

bool wait_failed(const Node& node, int rank, milliseconds timeout, bool listed) {
  return itest::wait_until([&] { return lists(node.failed_ranks(), rank) == listed; }, timeout);
}

void signal_rank(Board& board, int rank, int sig) {
  if (sig == SIGSTOP) {
    board.gone[rank] = true;
    board.stopped_ns[rank] = now_ns();
  }
  ::kill(static_cast<pid_t>(board.pid[rank].load()), sig);
}

Status stream_put(Node& node, const ObjectID& id, const StreamPlan& plan) {
  auto created = node.create(id, plan.size);
  if (!created.is_ok()) return created.status();
  ObjectWriter writer = std::move(created).value();
  itest::fill_pattern(writer.data(), plan.seed);
  std::uint64_t published = 0;
  for (int s = 1; s <= plan.steps; ++s) {
    if (s > 1 && plan.ready) {
      // A receiver that never catches up only slows the run down: the
      // deadline turns pacing into a plain put, and the test's own checks
      // say what went wrong.
      itest::wait_until([&] { return plan.ready(published); }, plan.step_timeout);
    }
    const std::uint64_t upto = plan.size * static_cast<std::uint64_t>(s) / plan.steps;
    HOPLITE_RETURN_IF_ERROR(writer.publish(upto));
    published = upto;
  }
  return writer.seal();
}

std::function<bool(std::uint64_t)> paced_by(Board& board, std::vector<int> receivers) {
  return [&board, receivers = std::move(receivers)](std::uint64_t published) {
    bool all = true;
    for (int r : receivers) {
      if (board.gone[r]) return true;
      all = all && board.progress[r] >= published;
    }
    return all;
  };
}

ObjectID id_with_shard(const std::string& prefix, int n, int shard) {
  for (int i = 0;; ++i) {
    ObjectID id = ObjectID::from_name(prefix + "/" + std::to_string(i));
    if (static_cast<int>(id.hash() % static_cast<std::uint64_t>(n)) == shard) return id;
  }
}

}  // namespace hoplite::ftest
