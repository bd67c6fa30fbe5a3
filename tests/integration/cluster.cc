#include "cluster.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <thread>

#include "transport/factory.h"

namespace hoplite::itest {

// Meson runs every integration and fault binary once per backend with
// HOPLITE_TEST_TRANSPORT set (Gloo's parametrized transport tests, done per
// binary). Unset: the runtime's default.
std::string backend() {
  const char* t = std::getenv("HOPLITE_TEST_TRANSPORT");
  return t && *t ? t : "auto";
}

namespace {

using Clock = std::chrono::steady_clock;

// Once one rank has failed, its peers are usually blocked on a barrier that
// can no longer complete; they get this long to report their own view.
constexpr std::chrono::seconds kGraceAfterFailure{5};

int g_rank = -1;

// Skips every test of the binary, with the reason, when the backend under
// test cannot start here. The probe runs in a child so that the gtest
// process never initialises UCX before it forks the cluster.
class BackendEnvironment final : public ::testing::Environment {
 public:
  void SetUp() override {
    if (backend() == "auto" || backend() == "tcp") return;
    int pipefd[2];
    if (::pipe(pipefd) != 0) return;
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(pipefd[0]);
      boost::asio::io_context io;
      transport::TransportOptions to;
      auto t = transport::make_transport(backend(), io, to);
      std::string why = t.is_ok() ? "" : t.status().to_string();
      if (t.is_ok()) (*t)->shutdown();
      (void)!::write(pipefd[1], why.data(), why.size());
      ::_exit(0);
    }
    ::close(pipefd[1]);
    std::string why;
    char buf[512];
    for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;)
      why.append(buf, static_cast<std::size_t>(n));
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!why.empty()) GTEST_SKIP() << "backend " << backend() << " cannot start here: " << why;
  }
};
const auto* const g_backend_env = ::testing::AddGlobalTestEnvironment(new BackendEnvironment);

int thread_count() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

// A loopback port for rank 0 to listen on, reserved by a bound socket that
// the caller keeps open until the cluster is done. Closing it early would let
// the other ranks' own listeners and outgoing connections, which take kernel-
// chosen ports at the same moment, grab it first. SO_REUSEADDR on both
// sockets lets rank 0 bind and listen on it anyway, as this one never listens.
struct Reservation {
  int fd = -1;
  std::uint16_t port = 0;
};

std::optional<Reservation> reserve_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::nullopt;
  int on = 1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return std::nullopt;
  }
  return Reservation{fd, ntohs(addr.sin_port)};
}

[[noreturn]] void child_main(int rank, pid_t parent, const ProcessBody& body, const std::string& bootstrap,
                             std::chrono::milliseconds timeout) {
  g_rank = rank;
  // Two safety nets besides the parent's deadline: a child must not outlive
  // a parent that crashed, nor run forever if the parent's kill goes astray.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(kExitException);
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout).count();
  ::alarm(static_cast<unsigned>(secs + 10));

  int code = kExitException;
  try {
    code = body(rank, bootstrap);
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
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return "signal " + std::to_string(sig) + " (" + ::strsignal(sig) + ")";
  }
  return "status " + std::to_string(status);
}

}  // namespace

int this_rank() {
  return g_rank;
}

void report_failure(const char* file, int line, const std::string& what) {
  std::string msg =
      "[rank " + std::to_string(g_rank) + "] " + file + ":" + std::to_string(line) + ": " + what + "\n";
  // One write keeps the line whole when several ranks fail at once.
  ssize_t rc = ::write(STDERR_FILENO, msg.data(), msg.size());
  (void)rc;
}

int run_processes(int n, const ProcessBody& body, std::chrono::milliseconds timeout) {
  if (int threads = thread_count(); threads != 1) {
    std::fprintf(stderr, "run_processes: the test process has %d threads; fork needs exactly 1\n", threads);
    return -1;
  }
  auto reservation = reserve_port();
  if (!reservation) {
    std::fprintf(stderr, "run_processes: no free port: %s\n", std::strerror(errno));
    return -1;
  }
  const std::string bootstrap = "127.0.0.1:" + std::to_string(reservation->port);
  // Buffered gtest output would otherwise be printed once more by each child.
  std::fflush(nullptr);

  const pid_t parent = ::getpid();
  const auto start = Clock::now();
  std::vector<pid_t> pids(n, -1);
  for (int rank = 0; rank < n; ++rank) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(reservation->fd);  // the parent's copy keeps the port reserved
      child_main(rank, parent, body, bootstrap, timeout);
    }
    if (pid < 0) {
      std::fprintf(stderr, "run_processes: fork: %s\n", std::strerror(errno));
      for (int r = 0; r < rank; ++r) ::kill(pids[r], SIGKILL);
      for (int r = 0; r < rank; ++r) ::waitpid(pids[r], nullptr, 0);
      ::close(reservation->fd);
      return -1;
    }
    pids[rank] = pid;
  }

  std::vector<std::optional<int>> status(n);
  std::vector<std::string> note(n);
  std::optional<Clock::time_point> kill_at;
  std::string kill_reason;
  const auto deadline = start + timeout;
  int alive = n;
  while (alive > 0) {
    for (int r = 0; r < n; ++r) {
      if (status[r]) continue;
      int st = 0;
      pid_t got = ::waitpid(pids[r], &st, WNOHANG);
      if (got != pids[r]) continue;
      status[r] = st;
      --alive;
      bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
      if (!ok && !kill_at) {
        kill_at = Clock::now() + kGraceAfterFailure;
        kill_reason = "killed " + std::to_string(kGraceAfterFailure.count()) + " s after rank " +
                      std::to_string(r) + " failed";
      }
    }
    if (alive == 0) break;
    auto now = Clock::now();
    bool expired = now >= deadline;
    if (expired || (kill_at && now >= *kill_at)) {
      std::string why =
          expired ? "hung: killed at the " + std::to_string(timeout.count()) + " ms deadline" : kill_reason;
      for (int r = 0; r < n; ++r) {
        if (status[r]) continue;
        ::kill(pids[r], SIGKILL);
        int st = 0;
        ::waitpid(pids[r], &st, 0);
        status[r] = st;
        note[r] = why;
        --alive;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  ::close(reservation->fd);

  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  bool all_ok = true;
  std::string summary = "cluster of " + std::to_string(n) + " (" + std::to_string(elapsed) + " ms):";
  for (int r = 0; r < n; ++r) {
    bool ok = WIFEXITED(*status[r]) && WEXITSTATUS(*status[r]) == 0;
    all_ok = all_ok && ok;
    summary += " rank " + std::to_string(r) + " " + describe(*status[r]);
    if (!note[r].empty()) summary += " [" + note[r] + "]";
    summary += r + 1 < n ? ";" : "\n";
  }
  std::fputs(summary.c_str(), stderr);
  return all_ok ? 0 : 1;
}

NodeOptions make_options(int rank, int n, const std::string& bootstrap, const ClusterOptions& opts) {
  NodeOptions o;
  o.rank = rank;
  o.world_size = n;
  o.bootstrap_address = bootstrap;
  o.listen_host = "127.0.0.1";
  o.token = "test-token";
  o.transport = backend();
  o.store_capacity = opts.store_capacity;
  o.chunk_size = opts.chunk_size;
  o.inline_threshold = opts.inline_threshold;
  o.bootstrap_timeout = opts.bootstrap_timeout;
  return o;
}

int run_cluster(int n, const std::function<int(Node&)>& body, const ClusterOptions& opts) {
  return run_processes(
      n,
      [&](int rank, const std::string& bootstrap) {
        auto created = Node::create(make_options(rank, n, bootstrap, opts));
        if (!created.is_ok()) {
          report_failure(__FILE__, __LINE__, "Node::create: " + created.status().to_string());
          return kExitCreateFailed;
        }
        std::unique_ptr<Node> node = std::move(created).value();
        int code = body(*node);
        node.reset();
        return code;
      },
      opts.timeout);
}

// ------------------------------------------------------------------ patterns

namespace {

// splitmix64 of the word index: cheap enough to fill 64 MiB in tens of ms,
// and every 8-byte word differs from its neighbours and from other seeds.
std::uint64_t pattern_word(std::uint64_t seed, std::uint64_t word) {
  std::uint64_t x = word + seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

void fill_pattern(std::span<std::byte> out, std::uint64_t seed, std::uint64_t offset) {
  std::size_t i = 0;
  while (i < out.size()) {
    std::uint64_t at = offset + i;
    std::uint64_t w = pattern_word(seed, at / 8);
    std::size_t skip = at % 8;
    std::size_t n = std::min<std::size_t>(8 - skip, out.size() - i);
    std::memcpy(out.data() + i, reinterpret_cast<const std::byte*>(&w) + skip, n);
    i += n;
  }
}

std::vector<std::byte> make_pattern(std::size_t size, std::uint64_t seed) {
  std::vector<std::byte> v(size);
  fill_pattern(v, seed);
  return v;
}

std::string pattern_mismatch(std::span<const std::byte> bytes, std::uint64_t size, std::uint64_t seed) {
  if (bytes.size() != size) {
    return "size " + std::to_string(bytes.size()) + ", expected " + std::to_string(size);
  }
  constexpr std::size_t kBlock = 1u << 20;
  std::vector<std::byte> want(kBlock);
  for (std::size_t off = 0; off < size; off += kBlock) {
    std::size_t n = std::min<std::size_t>(kBlock, size - off);
    fill_pattern({want.data(), n}, seed, off);
    if (std::memcmp(want.data(), bytes.data() + off, n) == 0) continue;
    std::size_t i = 0;
    while (want[i] == bytes[off + i]) ++i;
    return "first difference at byte " + std::to_string(off + i) + " of " + std::to_string(size) + ": got " +
           std::to_string(static_cast<int>(bytes[off + i])) + ", expected " +
           std::to_string(static_cast<int>(want[i]));
  }
  return {};
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace hoplite::itest
