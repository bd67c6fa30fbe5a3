// hoplite-run: starts N ranks of a program on this machine and multiplexes their output.
//
// Deliberately self-contained (no hoplite library dependency) so the launcher keeps working while
// the runtime it launches is broken, and so tests can use it to drive any program.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

extern char** environ;

namespace {

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

// Exit statuses follow GNU timeout(1) and shell conventions so scripts can tell causes apart.
constexpr int kExitRankFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitTimeout = 124;
constexpr int kExitSignalBase = 128;

constexpr auto kKillGrace = std::chrono::seconds(3);
// A rank's grandchildren may hold its pipes open after the rank exits; don't wait on them forever.
constexpr auto kDrainGrace = std::chrono::seconds(1);
// Bounds memory for a rank that writes without newlines; such output is split into lines.
constexpr size_t kMaxLineBytes = 64 * 1024;
constexpr size_t kReadChunk = 64 * 1024;

// The launcher owns these per rank; letting --env override them would desynchronize the ranks.
constexpr std::array<std::string_view, 7> kReservedVars = {
    "RANK",        "WORLD_SIZE",  "LOCAL_RANK",   "LOCAL_WORLD_SIZE",
    "MASTER_ADDR", "MASTER_PORT", "HOPLITE_TOKEN"};

struct Options {
  int nranks = 0;
  double timeout_s = 0;
  bool keep_going = false;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  std::vector<std::string> env;
  std::vector<std::string> command;
};

// Unbuffered writes keep launcher messages and forwarded rank output in the order they happened.
void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n >= 0) {
      data.remove_prefix(static_cast<size_t>(n));
    } else if (errno == EAGAIN) {
      // Our stdout may be a non-blocking fd shared with another process.
      pollfd pfd{fd, POLLOUT, 0};
      poll(&pfd, 1, -1);
    } else if (errno != EINTR) {
      return;  // Reader gone: drop output but keep draining ranks so they never block on a pipe.
    }
  }
}

void Report(const std::string& message) {
  WriteAll(STDERR_FILENO, "hoplite-run: " + message + "\n");
}

[[noreturn]] void UsageError(const std::string& message) {
  Report(message);
  WriteAll(STDERR_FILENO, "Try 'hoplite-run --help' for more information.\n");
  std::exit(kExitUsage);
}

[[noreturn]] void SetupError(const std::string& what, int err) {
  Report(what + ": " + std::strerror(err));
  std::exit(kExitUsage);
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "unknown signal";
}

std::string FormatSeconds(double seconds) {
  std::ostringstream out;
  out << seconds;
  return out.str();
}

std::string RankList(const std::vector<int>& ranks) {
  std::string out;
  for (int r : ranks) out += (out.empty() ? "" : ", ") + std::to_string(r);
  return out;
}

po::options_description MakeOptionsDescription(Options& opts) {
  po::options_description desc("Options");
  auto add = desc.add_options();
  add("help,h", "show this help and exit");
  add("nranks,n", po::value<int>(&opts.nranks)->value_name("N"),
      "number of ranks to start (required)");
  add("timeout", po::value<double>(&opts.timeout_s)->value_name("SECONDS"),
      "stop all ranks after SECONDS and exit 124; 0 means no limit");
  add("keep-going", po::bool_switch(&opts.keep_going),
      "let the other ranks finish when one fails instead of terminating them");
  add("master-addr", po::value<std::string>(&opts.master_addr)->value_name("ADDR"),
      "MASTER_ADDR given to ranks (default 127.0.0.1)");
  add("master-port", po::value<int>(&opts.master_port)->value_name("PORT"),
      "MASTER_PORT given to ranks (default: a free port on 127.0.0.1)");
  add("env", po::value<std::vector<std::string>>(&opts.env)->value_name("K=V"),
      "set an environment variable in every rank (repeatable)");
  return desc;
}

void PrintHelp(const po::options_description& desc) {
  std::cout << "Usage: hoplite-run -n N [options] [--] PROGRAM [ARGS...]\n"
               "\n"
               "Starts N copies of PROGRAM on this machine with RANK, WORLD_SIZE, LOCAL_RANK,\n"
               "LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT and HOPLITE_TOKEN set, and prefixes\n"
               "each line they print with '[rank i] '. Ranks read stdin from /dev/null.\n"
               "HOPLITE_TOKEN is taken from the environment if set, else generated randomly.\n"
               "\n"
            << desc
            << "\n"
               "Exit status: 0 if every rank exits 0; 1 if a rank fails or cannot be started;\n"
               "2 on a usage error; 124 on timeout; 128+S if hoplite-run gets signal S.\n";
}

// Boost would also parse the program's own flags as ours, so split argv at "--" or at the first
// word that is neither one of our options nor an option's value; the rest passes through intact.
std::pair<int, int> SplitCommandLine(int argc, char** argv, const po::options_description& desc) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") return {i, i + 1};
    if (arg.size() < 2 || arg[0] != '-') return {i, i};
    const po::option_description* option;
    bool value_attached;
    if (arg.starts_with("--")) {
      size_t eq = arg.find('=');
      value_attached = eq != std::string_view::npos;
      option = desc.find_nothrow(std::string(arg.substr(2, eq - 2)), false);
    } else {
      value_attached = arg.size() > 2;
      option = desc.find_nothrow(std::string(arg.substr(0, 2)), false);
    }
    // Unknown options are left for Boost to reject with its own message.
    if (option && !value_attached && option->semantic()->max_tokens() > 0) ++i;
  }
  return {argc, argc};
}

Options ParseOptions(int argc, char** argv) {
  Options opts;
  po::options_description desc = MakeOptionsDescription(opts);
  auto [options_end, command_begin] = SplitCommandLine(argc, argv, desc);
  po::variables_map vm;
  try {
    // Guessing and sticky flags are off so Boost reads argv exactly as SplitCommandLine did.
    int style = po::command_line_style::unix_style ^ po::command_line_style::allow_guessing ^
                po::command_line_style::allow_sticky;
    po::store(po::command_line_parser(std::vector<std::string>(argv + 1, argv + options_end))
                  .options(desc)
                  .style(style)
                  .run(),
              vm);
    po::notify(vm);
  } catch (const po::error& e) {
    UsageError(e.what());
  }
  if (vm.count("help")) {
    PrintHelp(desc);
    std::exit(0);
  }
  if (!vm.count("nranks")) UsageError("missing -n N (number of ranks)");
  if (opts.nranks < 1) UsageError("-n must be at least 1, got " + std::to_string(opts.nranks));
  if (!std::isfinite(opts.timeout_s) || opts.timeout_s < 0) {
    UsageError("--timeout must be a non-negative number of seconds");
  }
  if (opts.master_addr.empty()) UsageError("--master-addr must not be empty");
  if (vm.count("master-port") && (opts.master_port < 1 || opts.master_port > 65535)) {
    UsageError("--master-port must be in 1..65535, got " + std::to_string(opts.master_port));
  }
  for (const std::string& kv : opts.env) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) UsageError("--env expects K=V, got '" + kv + "'");
    std::string_view key(kv.data(), eq);
    for (std::string_view reserved : kReservedVars) {
      if (key == reserved) {
        UsageError("--env cannot set " + std::string(key) +
                   "; hoplite-run sets it (see --master-addr, --master-port)");
      }
    }
  }
  opts.command.assign(argv + command_begin, argv + argc);
  if (opts.command.empty()) UsageError("missing PROGRAM to run");
  if (opts.command[0].empty()) UsageError("PROGRAM must not be empty");
  return opts;
}

// If we started with 0/1/2 closed, pipe2 could hand those numbers out and confuse the dup2 calls.
void EnsureStandardFdsOpen() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      int null_fd = open("/dev/null", O_RDWR);
      if (null_fd < 0) SetupError("open /dev/null", errno);
    }
  }
}

bool IsExecutableFile(const std::string& path, int* err) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    *err = errno;
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *err = S_ISDIR(st.st_mode) ? EISDIR : EACCES;
    return false;
  }
  if (access(path.c_str(), X_OK) != 0) {
    *err = errno;
    return false;
  }
  return true;
}

// Resolving up front, like execvp would, turns a typo into one clear error instead of N rank
// failures, and means nothing is started when the program cannot run at all.
std::string ResolveProgram(const std::string& name) {
  int err = 0;
  if (name.find('/') != std::string::npos) {
    if (!IsExecutableFile(name, &err)) {
      Report("cannot run '" + name + "': " + std::strerror(err));
      std::exit(kExitUsage);
    }
    return name;
  }
  const char* path_env = std::getenv("PATH");
  std::string path = path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (true) {
    size_t end = path.find(':', start);
    std::string dir = path.substr(start, end == std::string::npos ? end : end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (IsExecutableFile(candidate, &err)) return candidate;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  Report("program '" + name + "' not found in PATH");
  std::exit(kExitUsage);
}

std::string RandomToken() {
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) SetupError("open /dev/urandom", errno);
  std::array<unsigned char, 16> bytes;
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) SetupError("read /dev/urandom", n < 0 ? errno : EIO);
    got += static_cast<size_t>(n);
  }
  close(fd);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token += kHex[b >> 4];
    token += kHex[b & 0xf];
  }
  return token;
}

// Racy by nature (another process may take the port before rank 0 binds it), but the kernel hands
// out ephemeral ports round-robin, so an immediate reuse is unlikely.
int FindFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) SetupError("socket", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    SetupError("bind 127.0.0.1:0", errno);
  }
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    SetupError("getsockname", errno);
  }
  close(fd);
  return ntohs(addr.sin_port);
}

void CheckFdLimit(int nranks) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return;
  // Two pipe read ends per rank stay open, plus a few transient descriptors while spawning.
  rlim_t needed = 2 * static_cast<rlim_t>(nranks) + 16;
  if (needed > limit.rlim_cur) {
    UsageError("-n " + std::to_string(nranks) + " needs about " + std::to_string(needed) +
               " open files but the limit is " + std::to_string(limit.rlim_cur) +
               "; raise it with 'ulimit -n'");
  }
}

std::string_view EnvKey(std::string_view entry) { return entry.substr(0, entry.find('=')); }

// The launcher's environment, minus anything a rank variable or --env replaces, then --env (last
// occurrence of a key wins).
std::vector<std::string> BaseEnvironment(const Options& opts) {
  std::vector<std::string> extra;
  for (const std::string& kv : opts.env) {
    std::erase_if(extra, [&](const std::string& e) { return EnvKey(e) == EnvKey(kv); });
    extra.push_back(kv);
  }
  auto replaced = [&](std::string_view key) {
    for (std::string_view reserved : kReservedVars) {
      if (key == reserved) return true;
    }
    for (const std::string& e : extra) {
      if (EnvKey(e) == key) return true;
    }
    return false;
  };
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (!replaced(EnvKey(*e))) env.emplace_back(*e);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

bool Failed(int wait_status) { return !WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0; }

std::string DescribeExit(int rank, int wait_status) {
  std::string out = "rank " + std::to_string(rank);
  if (WIFEXITED(wait_status))
    return out + " exited with status " + std::to_string(WEXITSTATUS(wait_status));
  int sig = WTERMSIG(wait_status);
  out += " killed by signal " + std::to_string(sig) + " (" + SignalName(sig) + ")";
  if (WCOREDUMP(wait_status)) out += ", core dumped";
  return out;
}

class Job {
 public:
  Job(const Options& opts, std::string program, std::vector<std::string> base_env, int master_port,
      std::string token)
      : opts_(opts),
        program_(std::move(program)),
        base_env_(std::move(base_env)),
        master_port_(master_port),
        token_(std::move(token)),
        ranks_(static_cast<size_t>(opts.nranks)) {
    for (int i = 0; i < opts.nranks; ++i) prefixes_.push_back("[rank " + std::to_string(i) + "] ");
  }

  int Run() {
    SetUpSignals();
    auto start = Clock::now();
    if (opts_.timeout_s > 0) {
      // Capped at ~30 years so converting an absurd value to clock ticks cannot overflow.
      double seconds = std::min(opts_.timeout_s, 1e9);
      timeout_deadline_ = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(seconds));
    }
    for (int i = 0; i < opts_.nranks; ++i) {
      if (int err = Spawn(i); err != 0) {
        BeginStop(StopReason::kSpawnFailed, "cannot start rank " + std::to_string(i) + " ('" +
                                                program_ + "'): " + std::strerror(err) +
                                                "; terminating the started ranks");
        break;
      }
    }
    EventLoop();
    return Summarize();
  }

 private:
  enum class StopReason { kNone, kRankFailed, kSpawnFailed, kTimeout, kSignal };

  struct Stream {
    int fd = -1;  // Read end of the rank's pipe; -1 after EOF.
    int out_fd = -1;
    std::string pending;  // Bytes after the last newline, awaiting the rest of their line.
  };

  struct Rank {
    pid_t pid = -1;
    bool running = false;
    bool stopped_by_us = false;  // Still running when the launcher began terminating the job.
    int wait_status = 0;
    std::array<Stream, 2> streams;
  };

  void SetUpSignals() {
    // Blocking these and reading them from a signalfd lets one poll() wait for output, child exits,
    // interrupts and deadlines alike, with no async-signal-safety concerns.
    sigemptyset(&handled_);
    for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&handled_, sig);
    if (sigprocmask(SIG_BLOCK, &handled_, nullptr) != 0) SetupError("sigprocmask", errno);
    signal_fd_ = signalfd(-1, &handled_, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) SetupError("signalfd", errno);
    // A closed launcher stdout must not kill the launcher and orphan its ranks.
    signal(SIGPIPE, SIG_IGN);
  }

  std::vector<std::string> RankEnvironment(int rank) const {
    std::vector<std::string> env = base_env_;
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(opts_.nranks));
    env.push_back("LOCAL_RANK=" + std::to_string(rank));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(opts_.nranks));
    env.push_back("MASTER_ADDR=" + opts_.master_addr);
    env.push_back("MASTER_PORT=" + std::to_string(master_port_));
    env.push_back("HOPLITE_TOKEN=" + token_);
    return env;
  }

  static std::vector<char*> CStrings(std::vector<std::string>& strings) {
    std::vector<char*> out;
    for (std::string& s : strings) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
  }

  // Returns 0 or an errno value.
  int Spawn(int rank) {
    std::array<std::array<int, 2>, 2> pipes;
    // CLOEXEC on both ends, so later ranks don't inherit (and hold open) earlier ranks' pipes.
    if (pipe2(pipes[0].data(), O_CLOEXEC) != 0) return errno;
    if (pipe2(pipes[1].data(), O_CLOEXEC) != 0) {
      int err = errno;
      close(pipes[0][0]);
      close(pipes[0][1]);
      return err;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    // Only one process can sensibly own the terminal's input, so no rank gets it.
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pipes[0][1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, pipes[1][1], STDERR_FILENO);

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Each rank leads its own process group so termination also reaches anything it started (say
    // a shell's children); the terminal's Ctrl-C then reaches only us, and we forward it.
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attr, &empty);
    sigset_t defaults = handled_;
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<std::string> args = opts_.command;
    std::vector<std::string> env = RankEnvironment(rank);
    std::vector<char*> argv = CStrings(args);
    std::vector<char*> envp = CStrings(env);
    pid_t pid = -1;
    int err = posix_spawn(&pid, program_.c_str(), &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);

    for (auto& p : pipes) close(p[1]);
    Rank& r = ranks_[static_cast<size_t>(rank)];
    if (err != 0) {
      for (auto& p : pipes) close(p[0]);
      return err;
    }
    r.pid = pid;
    r.running = true;
    ++running_;
    for (size_t s = 0; s < 2; ++s) {
      fcntl(pipes[s][0], F_SETFL, fcntl(pipes[s][0], F_GETFL) | O_NONBLOCK);
      r.streams[s].fd = pipes[s][0];
      r.streams[s].out_fd = s == 0 ? STDOUT_FILENO : STDERR_FILENO;
    }
    return 0;
  }

  static bool HasOpenStream(const Rank& r) { return r.streams[0].fd >= 0 || r.streams[1].fd >= 0; }

  bool AnyOpenStream() const {
    for (const Rank& r : ranks_) {
      if (HasOpenStream(r)) return true;
    }
    return false;
  }

  // Signals the rank's whole process group; falls back to the rank alone if it left its group.
  // Exited ranks are signalled only while their pipes are open, which proves the group still has
  // members (so the id cannot have been reused).
  static void SignalRank(const Rank& r, int sig) {
    if (r.pid <= 0 || !(r.running || HasOpenStream(r))) return;
    if (kill(-r.pid, sig) != 0 && errno == ESRCH && r.running) kill(r.pid, sig);
  }

  void BeginStop(StopReason reason, const std::string& message) {
    if (stop_ != StopReason::kNone) return;
    stop_ = reason;
    Report(message);
    for (Rank& r : ranks_) {
      if (r.running) r.stopped_by_us = true;
      SignalRank(r, SIGTERM);
    }
    kill_deadline_ = Clock::now() + kKillGrace;
  }

  void Escalate() {
    escalated_ = true;
    std::vector<int> stubborn;
    for (size_t i = 0; i < ranks_.size(); ++i) {
      if (ranks_[i].running) stubborn.push_back(static_cast<int>(i));
      SignalRank(ranks_[i], SIGKILL);
    }
    if (!stubborn.empty()) {
      Report("rank(s) " + RankList(stubborn) + " still running " +
             std::to_string(kKillGrace.count()) + " s after SIGTERM; sending SIGKILL");
    }
  }

  void OnLauncherSignal(int sig) {
    if (stop_ != StopReason::kNone) {
      // A second interrupt means the user is done waiting for a graceful shutdown.
      if (!escalated_) Escalate();
      return;
    }
    stop_signal_ = sig;
    BeginStop(StopReason::kSignal, "received " + SignalName(sig) + "; terminating all ranks");
  }

  void Reap() {
    while (true) {
      int status = 0;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      for (size_t i = 0; i < ranks_.size(); ++i) {
        Rank& r = ranks_[i];
        if (r.pid != pid || !r.running) continue;
        r.running = false;
        r.wait_status = status;
        --running_;
        if (Failed(status) && !opts_.keep_going) {
          BeginStop(StopReason::kRankFailed, "rank " + std::to_string(i) +
                                                 " failed; terminating the other ranks "
                                                 "(--keep-going lets them finish)");
        }
        break;
      }
    }
  }

  void DrainSignals() {
    signalfd_siginfo info;
    while (read(signal_fd_, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
      if (info.ssi_signo == SIGCHLD) {
        Reap();  // SIGCHLDs coalesce, so Reap collects every exited child, not just one.
      } else {
        OnLauncherSignal(static_cast<int>(info.ssi_signo));
      }
    }
  }

  // Emits every complete line in one write, so one rank's line is never split by another's.
  void Forward(size_t rank, Stream& s, std::string_view chunk, bool eof) {
    s.pending.append(chunk);
    const std::string& prefix = prefixes_[rank];
    std::string out;
    size_t begin = 0;
    while (true) {
      size_t nl = s.pending.find('\n', begin);
      if (nl == std::string::npos) break;
      out.append(prefix).append(s.pending, begin, nl + 1 - begin);
      begin = nl + 1;
    }
    s.pending.erase(0, begin);
    if (!s.pending.empty() && (eof || s.pending.size() >= kMaxLineBytes)) {
      out.append(prefix).append(s.pending).push_back('\n');
      s.pending.clear();
    }
    if (!out.empty()) WriteAll(s.out_fd, out);
  }

  void ReadStream(size_t rank, Stream& s) {
    ssize_t n = read(s.fd, read_buffer_.data(), read_buffer_.size());
    if (n > 0) {
      Forward(rank, s, std::string_view(read_buffer_.data(), static_cast<size_t>(n)), false);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      CloseStream(rank, s);
    }
  }

  void CloseStream(size_t rank, Stream& s) {
    Forward(rank, s, {}, true);
    close(s.fd);
    s.fd = -1;
  }

  int PollTimeoutMs(Clock::time_point now) const {
    std::optional<Clock::time_point> next;
    auto consider = [&](const std::optional<Clock::time_point>& t) {
      if (t && (!next || *t < *next)) next = t;
    };
    if (stop_ == StopReason::kNone) consider(timeout_deadline_);
    if (!escalated_) consider(kill_deadline_);
    consider(drain_deadline_);
    if (!next) return -1;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
    return static_cast<int>(std::clamp<decltype(ms)>(ms, 0, INT_MAX));
  }

  void EventLoop() {
    std::vector<pollfd> fds;
    std::vector<std::pair<size_t, size_t>> owners;  // (rank, stream) for each fds[i], i >= 1.
    while (running_ > 0 || AnyOpenStream()) {
      auto now = Clock::now();
      if (running_ == 0) {
        if (!drain_deadline_) drain_deadline_ = now + kDrainGrace;
        if (now >= *drain_deadline_) break;
      }
      if (stop_ == StopReason::kNone && timeout_deadline_ && now >= *timeout_deadline_) {
        BeginStop(StopReason::kTimeout, "timeout of " + FormatSeconds(opts_.timeout_s) +
                                            " s expired; terminating all ranks");
      }
      if (kill_deadline_ && !escalated_ && now >= *kill_deadline_) Escalate();

      fds.assign(1, pollfd{signal_fd_, POLLIN, 0});
      owners.assign(1, {0, 0});
      for (size_t i = 0; i < ranks_.size(); ++i) {
        for (size_t s = 0; s < 2; ++s) {
          if (ranks_[i].streams[s].fd < 0) continue;
          fds.push_back(pollfd{ranks_[i].streams[s].fd, POLLIN, 0});
          owners.emplace_back(i, s);
        }
      }
      int ready = poll(fds.data(), fds.size(), PollTimeoutMs(now));
      if (ready < 0) {
        if (errno == EINTR) continue;
        // Without poll we cannot supervise anything; make sure no rank outlives us.
        Report(std::string("poll: ") + std::strerror(errno) + "; killing all ranks");
        for (const Rank& r : ranks_) SignalRank(r, SIGKILL);
        std::exit(kExitRankFailed);
      }
      if (fds[0].revents != 0) DrainSignals();
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        auto [rank, s] = owners[i];
        ReadStream(rank, ranks_[rank].streams[s]);
      }
    }
    for (size_t i = 0; i < ranks_.size(); ++i) {
      for (Stream& s : ranks_[i].streams) {
        if (s.fd >= 0) CloseStream(i, s);
      }
    }
  }

  int Summarize() const {
    bool any_failed = false;
    for (size_t i = 0; i < ranks_.size(); ++i) {
      const Rank& r = ranks_[i];
      if (r.pid <= 0 || !Failed(r.wait_status)) continue;
      any_failed = true;
      // Ranks we terminated are covered by the message that announced the stop.
      if (!r.stopped_by_us) Report(DescribeExit(static_cast<int>(i), r.wait_status));
    }
    switch (stop_) {
      case StopReason::kSignal:
        return kExitSignalBase + stop_signal_;
      case StopReason::kTimeout:
        return kExitTimeout;
      case StopReason::kRankFailed:
      case StopReason::kSpawnFailed:
        return kExitRankFailed;
      case StopReason::kNone:
        break;
    }
    return any_failed ? kExitRankFailed : 0;
  }

  const Options& opts_;
  const std::string program_;
  const std::vector<std::string> base_env_;
  const int master_port_;
  const std::string token_;

  std::vector<Rank> ranks_;
  std::vector<std::string> prefixes_;
  std::vector<char> read_buffer_ = std::vector<char>(kReadChunk);
  int running_ = 0;
  sigset_t handled_{};
  int signal_fd_ = -1;

  StopReason stop_ = StopReason::kNone;
  int stop_signal_ = 0;
  bool escalated_ = false;
  std::optional<Clock::time_point> timeout_deadline_;
  std::optional<Clock::time_point> kill_deadline_;
  std::optional<Clock::time_point> drain_deadline_;
};

}  // namespace

int main(int argc, char** argv) {
  Options opts = ParseOptions(argc, argv);
  EnsureStandardFdsOpen();
  CheckFdLimit(opts.nranks);
  std::string program = ResolveProgram(opts.command[0]);
  const char* inherited_token = std::getenv("HOPLITE_TOKEN");
  // An empty token would silently disable authentication, so treat it as unset.
  std::string token = inherited_token && *inherited_token ? inherited_token : RandomToken();
  int port = opts.master_port != 0 ? opts.master_port : FindFreePort();
  Job job(opts, std::move(program), BaseEnvironment(opts), port, std::move(token));
  return job.Run();
}
