// hoplite-run: starts N ranks of a program on this machine and multiplexes their output.
// With --netns, rank i runs inside network namespace <prefix>i of the emulated cluster that
// scripts/netns-cluster builds (see docs/netns.md).
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

#include "auth/token.h"

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
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "HOPLITE_TOKEN"};

// The emulated cluster's subnet; keep in sync with scripts/netns-cluster.
constexpr std::string_view kNetnsSubnet = "10.78.0.";
// netns-cluster's address plan (10.78.0.(i+1)) and its own limit.
constexpr int kMaxNetnsRanks = 64;
// With --netns the namespaces are fresh, so any fixed port is free; randomized within this range
// so that back-to-back jobs don't meet each other's TIME_WAIT sockets.
constexpr int kNetnsPortBase = 29500;
constexpr int kNetnsPortSpan = 1000;
// The runtime's listen address; set per rank with --netns.
constexpr std::string_view kListenHostVar = "HOPLITE_LISTEN_HOST";

struct Options {
  int nranks = 0;
  double timeout_s = 0;
  bool keep_going = false;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  bool netns = false;
  std::string netns_prefix = "hpl";
  std::string rate;  // Empty: use the namespaces as they are.
  std::vector<std::string> env;
  std::vector<std::string> command;
};

std::string NetnsName(const Options& opts, int rank) {
  return opts.netns_prefix + std::to_string(rank);
}

// Same rule as scripts/netns-cluster: no trailing digit, so that node 10 of prefix 'p' can never
// be node 0 of prefix 'p1'.
bool ValidNetnsPrefix(std::string_view p) {
  auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  return !p.empty() && p.size() <= 12 && lower(p.front()) && !digit(p.back()) &&
         std::all_of(p.begin(), p.end(), [&](char c) { return lower(c) || digit(c) || c == '_'; });
}

std::string NetnsAddress(int rank) {
  return std::string(kNetnsSubnet) + std::to_string(rank + 1);
}

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
  add("nranks,n", po::value<int>(&opts.nranks)->value_name("N"), "number of ranks to start (required)");
  add("timeout", po::value<double>(&opts.timeout_s)->value_name("SECONDS"),
      "stop all ranks after SECONDS and exit 124; 0 means no limit");
  add("keep-going", po::bool_switch(&opts.keep_going),
      "let the other ranks finish when one fails instead of terminating them");
  add("master-addr", po::value<std::string>(&opts.master_addr)->value_name("ADDR"),
      "MASTER_ADDR given to ranks (default 127.0.0.1; with --netns, node 0's address)");
  add("master-port", po::value<int>(&opts.master_port)->value_name("PORT"),
      "MASTER_PORT given to ranks (default: a free port on 127.0.0.1; with --netns, a random "
      "port in 29500..30499)");
  add("env", po::value<std::vector<std::string>>(&opts.env)->value_name("K=V"),
      "set an environment variable in every rank (repeatable)");
  add("netns", po::bool_switch(&opts.netns),
      "run rank i in network namespace PREFIXi of the emulated cluster that "
      "scripts/netns-cluster builds (needs root)");
  add("netns-prefix", po::value<std::string>(&opts.netns_prefix)->value_name("PREFIX"),
      "namespace prefix for --netns (default hpl)");
  add("rate", po::value<std::string>(&opts.rate)->value_name("RATE"),
      "with --netns: first run 'netns-cluster up N --rate RATE', which creates or re-shapes "
      "the cluster (e.g. 1gbit; 0 = unshaped)");
  return desc;
}

void PrintHelp(const po::options_description& desc) {
  std::cout
      << "Usage: hoplite-run -n N [options] [--] PROGRAM [ARGS...]\n"
         "\n"
         "Starts N copies of PROGRAM on this machine with RANK, WORLD_SIZE, LOCAL_RANK,\n"
         "LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT and HOPLITE_TOKEN set, and prefixes\n"
         "each line they print with '[rank i] '. Ranks read stdin from /dev/null.\n"
         "HOPLITE_TOKEN is taken from the environment if set, else generated randomly.\n"
         "\n"
         "With --netns, rank i runs as 'ip netns exec PREFIXi PROGRAM ARGS...' and also\n"
         "gets HOPLITE_LISTEN_HOST=10.78.0.(i+1), plus UCX_TLS=tcp,self,\n"
         "UCX_NET_DEVICES=eth0 and GLOO_SOCKET_IFNAME=eth0 unless already set, so that\n"
         "traffic crosses the shaped links. --rate finds netns-cluster at $HOPLITE_NETNS_SCRIPT, else at\n"
         "../scripts/netns-cluster relative to this program. See docs/netns.md.\n"
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
  if (!opts.netns) {
    if (vm.count("netns-prefix")) UsageError("--netns-prefix needs --netns");
    if (vm.count("rate")) UsageError("--rate needs --netns");
  } else {
    if (!ValidNetnsPrefix(opts.netns_prefix)) {
      UsageError("bad --netns-prefix '" + opts.netns_prefix +
                 "': use up to 12 of [a-z0-9_], starting with a letter, not ending in a digit");
    }
    if (vm.count("rate") && opts.rate.empty()) UsageError("--rate must not be empty");
    if (opts.nranks > kMaxNetnsRanks) {
      UsageError("--netns supports at most " + std::to_string(kMaxNetnsRanks) + " ranks");
    }
    if (!vm.count("master-addr")) opts.master_addr = NetnsAddress(0);
  }
  for (const std::string& kv : opts.env) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) UsageError("--env expects K=V, got '" + kv + "'");
    std::string_view key(kv.data(), eq);
    if (opts.netns && key == kListenHostVar) {
      UsageError("--env cannot set " + std::string(key) + " with --netns; hoplite-run sets it");
    }
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

// Looks NAME (without a slash) up in the colon-separated directory list PATH, as execvp does.
std::optional<std::string> SearchPath(const std::string& name, const std::string& path) {
  int err = 0;
  size_t start = 0;
  while (true) {
    size_t end = path.find(':', start);
    std::string dir = path.substr(start, end == std::string::npos ? end : end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (IsExecutableFile(candidate, &err)) return candidate;
    if (end == std::string::npos) return std::nullopt;
    start = end + 1;
  }
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
  if (auto found = SearchPath(name, path_env ? path_env : "/usr/local/bin:/usr/bin:/bin")) {
    return *found;
  }
  Report("program '" + name + "' not found in PATH");
  std::exit(kExitUsage);
}

template <size_t N>
std::array<unsigned char, N> RandomBytes() {
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) SetupError("open /dev/urandom", errno);
  std::array<unsigned char, N> bytes;
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) SetupError("read /dev/urandom", n < 0 ? errno : EIO);
    got += static_cast<size_t>(n);
  }
  close(fd);
  return bytes;
}

std::string RandomToken() {
  std::array<unsigned char, 16> bytes = RandomBytes<16>();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token += kHex[b >> 4];
    token += kHex[b & 0xf];
  }
  return token;
}

// The cluster token when none is inherited: the user's token file, created
// when missing (docs/security.md), so that ranks started by other launchers
// (mpirun, srun) find the same one. A home that cannot hold it (read-only,
// none) falls back to a token for this job only, with a note.
std::string LauncherToken() {
  if (const char* f = std::getenv("HOPLITE_TOKEN_FILE"); f && *f) {
    auto t = hoplite::auth::read_token_file(f);
    if (!t.is_ok()) {
      std::fprintf(stderr, "hoplite-run: HOPLITE_TOKEN_FILE: %s\n", t.status().to_string().c_str());
      std::exit(2);
    }
    return t.value();
  }
  std::string path = hoplite::auth::default_token_path();
  if (!path.empty()) {
    auto t = hoplite::auth::read_or_create_token_file(path);
    if (t.is_ok()) return t.value();
    if (t.status().code() == hoplite::StatusCode::kInvalidArgument) {
      // A token file others can read must be fixed, not silently replaced.
      std::fprintf(stderr, "hoplite-run: %s\n", t.status().to_string().c_str());
      std::exit(2);
    }
    std::fprintf(stderr, "hoplite-run: cannot keep a token in %s (%s); using one for this job only\n",
                 path.c_str(), t.status().to_string().c_str());
  }
  return RandomToken();
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

std::string_view EnvKey(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

// The launcher's environment, minus anything a rank variable or --env replaces, then --env (last
// occurrence of a key wins).
std::vector<std::string> BaseEnvironment(const Options& opts) {
  std::vector<std::string> extra;
  for (const std::string& kv : opts.env) {
    std::erase_if(extra, [&](const std::string& e) { return EnvKey(e) == EnvKey(kv); });
    extra.push_back(kv);
  }
  auto replaced = [&](std::string_view key) {
    if (opts.netns && key == kListenHostVar) return true;  // Set per rank.
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
  if (opts.netns) {
    // All namespaces share one kernel and /dev/shm, so UCX would take the ranks for one host and
    // use shared memory between them, bypassing the shaped links. Gloo (torch's backend beside
    // ours) would take the address the host name resolves to, 127.0.0.1, which no other
    // namespace reaches.
    for (std::string_view kv : {"UCX_TLS=tcp,self", "UCX_NET_DEVICES=eth0", "GLOO_SOCKET_IFNAME=eth0"}) {
      bool set =
          std::any_of(env.begin(), env.end(), [&](const std::string& e) { return EnvKey(e) == EnvKey(kv); });
      if (!set) env.emplace_back(kv);
    }
  }
  return env;
}

bool Failed(int wait_status) {
  return !WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0;
}

std::string DescribeExit(int rank, int wait_status) {
  std::string out = "rank " + std::to_string(rank);
  if (WIFEXITED(wait_status)) return out + " exited with status " + std::to_string(WEXITSTATUS(wait_status));
  int sig = WTERMSIG(wait_status);
  out += " killed by signal " + std::to_string(sig) + " (" + SignalName(sig) + ")";
  if (WCOREDUMP(wait_status)) out += ", core dumped";
  return out;
}

// --- --netns support --------------------------------------------------------------------------

[[noreturn]] void NetnsError(const std::string& message) {
  Report(message);
  std::exit(kExitUsage);
}

std::string FindIpTool() {
  const char* path_env = std::getenv("PATH");
  std::string path = path_env ? path_env : "";
  // sbin is often missing from PATH, e.g. under sudo or su without a login shell.
  if (auto found = SearchPath("ip", path + ":/usr/sbin:/sbin:/usr/bin:/bin")) return *found;
  NetnsError("--netns needs 'ip' from iproute2, which was not found");
}

// $HOPLITE_NETNS_SCRIPT, else ../scripts/netns-cluster relative to this binary (which normally
// lives in <repo>/build/).
std::string FindNetnsScript() {
  int err = 0;
  if (const char* script = std::getenv("HOPLITE_NETNS_SCRIPT"); script && *script) {
    if (!IsExecutableFile(script, &err)) {
      NetnsError(std::string("HOPLITE_NETNS_SCRIPT=") + script + ": " + std::strerror(err));
    }
    return script;
  }
  std::array<char, PATH_MAX> self{};
  ssize_t n = readlink("/proc/self/exe", self.data(), self.size() - 1);
  if (n < 0) SetupError("readlink /proc/self/exe", errno);
  std::string dir(self.data(), static_cast<size_t>(n));
  dir.erase(dir.rfind('/') + 1);
  std::string script = dir + "../scripts/netns-cluster";
  if (char* real = realpath(script.c_str(), nullptr)) {
    script = real;
    free(real);
  }
  if (!IsExecutableFile(script, &err)) {
    NetnsError("--rate: cannot run " + script + " (" + std::strerror(err) +
               "); set HOPLITE_NETNS_SCRIPT to the netns-cluster script");
  }
  return script;
}

// Runs 'netns-cluster up N --rate R --prefix P' and waits for it. Its output goes to our stderr,
// so that stdout carries only the ranks' output.
void BringUpCluster(const Options& opts) {
  std::string script = FindNetnsScript();
  std::vector<std::string> args = {
      script, "up", std::to_string(opts.nranks), "--rate", opts.rate, "--prefix", opts.netns_prefix};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  pid_t pid = -1;
  int err = posix_spawn(&pid, script.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) NetnsError("cannot run " + script + ": " + std::strerror(err));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) SetupError("waitpid", errno);
  }
  if (Failed(status)) {
    NetnsError("'" + script + " up " + std::to_string(opts.nranks) + " --rate " + opts.rate + " --prefix " +
               opts.netns_prefix + "' failed; no rank was started");
  }
}

// Checks that the namespaces exist, so that a missing cluster is one clear error instead of N
// failing ranks. Returns the path of 'ip'.
std::string PrepareNetns(const Options& opts) {
  if (geteuid() != 0) NetnsError("--netns needs root ('ip netns exec' must enter namespaces)");
  std::string ip = FindIpTool();
  if (!opts.rate.empty()) BringUpCluster(opts);
  for (int i = 0; i < opts.nranks; ++i) {
    struct stat st;
    if (stat(("/run/netns/" + NetnsName(opts, i)).c_str(), &st) != 0) {
      NetnsError("network namespace " + NetnsName(opts, i) + " does not exist; create the " +
                 "cluster with 'scripts/netns-cluster up " + std::to_string(opts.nranks) + " --prefix " +
                 opts.netns_prefix + "' or pass --rate");
    }
  }
  return ip;
}

int RandomNetnsPort() {
  std::array<unsigned char, 2> bytes = RandomBytes<2>();
  return kNetnsPortBase + ((bytes[0] << 8) | bytes[1]) % kNetnsPortSpan;
}

class Job {
 public:
  // With --netns, IP_TOOL is the path of 'ip', which runs PROGRAM inside each rank's namespace.
  Job(const Options& opts, std::string program, std::string ip_tool, std::vector<std::string> base_env,
      int master_port, std::string token)
      : opts_(opts),
        program_(std::move(program)),
        ip_tool_(std::move(ip_tool)),
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
      timeout_deadline_ =
          start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    }
    for (int i = 0; i < opts_.nranks; ++i) {
      if (int err = Spawn(i); err != 0) {
        BeginStop(StopReason::kSpawnFailed, "cannot start rank " + std::to_string(i) + " ('" + program_ +
                                                "'): " + std::strerror(err) +
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
    if (opts_.netns) env.push_back(std::string(kListenHostVar) + "=" + NetnsAddress(rank));
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
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<std::string> args = opts_.command;
    const std::string* exec_path = &program_;
    if (opts_.netns) {
      // 'ip netns exec' enters the namespace and execs PROGRAM in place (no fork), so the rank's
      // pid and process group are still PROGRAM's.
      args = {"ip", "netns", "exec", NetnsName(opts_, rank), program_};
      args.insert(args.end(), opts_.command.begin() + 1, opts_.command.end());
      exec_path = &ip_tool_;
    }
    std::vector<std::string> env = RankEnvironment(rank);
    std::vector<char*> argv = CStrings(args);
    std::vector<char*> envp = CStrings(env);
    pid_t pid = -1;
    int err = posix_spawn(&pid, exec_path->c_str(), &actions, &attr, argv.data(), envp.data());
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
      Report("rank(s) " + RankList(stubborn) + " still running " + std::to_string(kKillGrace.count()) +
             " s after SIGTERM; sending SIGKILL");
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
        BeginStop(StopReason::kTimeout,
                  "timeout of " + FormatSeconds(opts_.timeout_s) + " s expired; terminating all ranks");
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
      case StopReason::kSignal: return kExitSignalBase + stop_signal_;
      case StopReason::kTimeout: return kExitTimeout;
      case StopReason::kRankFailed:
      case StopReason::kSpawnFailed: return kExitRankFailed;
      case StopReason::kNone: break;
    }
    return any_failed ? kExitRankFailed : 0;
  }

  const Options& opts_;
  const std::string program_;
  const std::string ip_tool_;
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
  std::string token = inherited_token && *inherited_token ? inherited_token : LauncherToken();
  std::string ip_tool;
  if (opts.netns) ip_tool = PrepareNetns(opts);
  int port = opts.master_port != 0 ? opts.master_port : opts.netns ? RandomNetnsPort() : FindFreePort();
  Job job(opts, std::move(program), std::move(ip_tool), BaseEnvironment(opts), port, std::move(token));
  return job.Run();
}
