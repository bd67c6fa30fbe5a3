// A loopback cluster of real processes for integration tests.
//
// run_cluster() forks one child per rank from the (single-threaded) gtest
// process; each child joins the cluster through a real bootstrap port, runs
// the test body against its own Node and leaves with _exit(), so nothing of
// gtest runs twice. The parent only waits and reports: a body that fails
// prints why (with its rank) and returns non-zero, and the CHECK_* macros
// below make that a one-liner.
//
// Bodies must end with a barrier: a rank that destroys its Node while peers
// still pull from it makes their transfers fail.
//
// Thread-safety: call from the gtest main thread only, while no other thread
// exists (fork() would copy locks held by threads that do not survive it).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "hoplite/node.h"
#include "hoplite/options.h"
#include "hoplite/status.h"

namespace hoplite::itest {

// How long a body waits for one get or barrier. Far beyond any healthy
// transfer here, and short enough that a stuck phase fails before the
// cluster deadline kills everyone without a message.
inline constexpr std::chrono::milliseconds kWait{60000};

inline constexpr int kExitCheckFailed = 1;
inline constexpr int kExitCreateFailed = 2;
inline constexpr int kExitException = 3;

struct ClusterOptions {
  std::uint64_t store_capacity = 256ull << 20;
  std::uint64_t chunk_size = 1u << 20;
  std::uint64_t inline_threshold = 64u << 10;
  std::chrono::milliseconds bootstrap_timeout{30000};
  // For the whole run; children still alive then are killed and reported.
  std::chrono::milliseconds timeout{120000};
};

// Runs body(rank, bootstrap_address) in n child processes, where
// bootstrap_address is "127.0.0.1:PORT": nobody listens on PORT, and until
// the run ends only a socket with SO_REUSEADDR (rank 0's) can bind it.
// Returns 0 only if every child exited 0; prints one line with every rank's
// fate to stderr either way. Once a child fails, the others get 5 s to
// report their own view before they are killed: they are usually stuck on a
// barrier that can no longer complete.
using ProcessBody = std::function<int(int rank, const std::string& bootstrap)>;
int run_processes(int n, const ProcessBody& body, std::chrono::milliseconds timeout);

// The backend under test (HOPLITE_TEST_TRANSPORT: "tcp", "ucx"; unset:
// "auto").
std::string backend();

// The options every rank of run_cluster() starts with.
NodeOptions make_options(int rank, int n, const std::string& bootstrap, const ClusterOptions& opts = {});

// run_processes() where each child first joins an n-node cluster and then
// runs body(node); the Node is destroyed before the child exits.
int run_cluster(int n, const std::function<int(Node&)>& body, const ClusterOptions& opts = {});

// ---------------------------------------------------------------------------
// Helpers for bodies (they run in the children).

// The rank this child runs as; -1 in the gtest process.
int this_rank();
// One line to stderr, prefixed with the rank, so interleaved children's
// reports stay attributable.
void report_failure(const char* file, int line, const std::string& what);

// Deterministic bytes: byte i of an object is a function of (seed, i), so a
// shifted, truncated or stale copy never matches by accident. `offset` is
// where `out` starts inside the object (streaming writers fill pieces).
void fill_pattern(std::span<std::byte> out, std::uint64_t seed, std::uint64_t offset = 0);
std::vector<std::byte> make_pattern(std::size_t size, std::uint64_t seed);
// Empty when `bytes` is exactly the object (size, seed); otherwise what is
// wrong and where.
std::string pattern_mismatch(std::span<const std::byte> bytes, std::uint64_t size, std::uint64_t seed);

// Polls `done` every millisecond; false if it is still false at `timeout`.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

inline const Status& status_of(const Status& s) {
  return s;
}
template <typename T>
const Status& status_of(const Result<T>& r) {
  return r.status();
}

inline std::string printable(StatusCode c) {
  return std::string(to_string(c));
}
template <typename T>
std::string printable(const T& v) {
  std::ostringstream os;
  if constexpr (std::is_enum_v<T>) {
    os << static_cast<long long>(v);
  } else {
    os << v;
  }
  return os.str();
}

}  // namespace hoplite::itest

#define HOPLITE_ITEST_CONCAT_INNER(a, b) a##b
#define HOPLITE_ITEST_CONCAT(a, b) HOPLITE_ITEST_CONCAT_INNER(a, b)

#define FAIL_BODY(what)                                           \
  do {                                                            \
    ::hoplite::itest::report_failure(__FILE__, __LINE__, (what)); \
    return ::hoplite::itest::kExitCheckFailed;                    \
  } while (0)

#define CHECK_TRUE(cond)                             \
  do {                                               \
    if (!(cond)) FAIL_BODY("CHECK_TRUE(" #cond ")"); \
  } while (0)

#define CHECK_FALSE(cond)                          \
  do {                                             \
    if (cond) FAIL_BODY("CHECK_FALSE(" #cond ")"); \
  } while (0)

#define CHECK_EQ(a, b)                                                                        \
  do {                                                                                        \
    const auto& hoplite_itest_a = (a);                                                        \
    const auto& hoplite_itest_b = (b);                                                        \
    if (!(hoplite_itest_a == hoplite_itest_b)) {                                              \
      FAIL_BODY("CHECK_EQ(" #a ", " #b "): " + ::hoplite::itest::printable(hoplite_itest_a) + \
                " != " + ::hoplite::itest::printable(hoplite_itest_b));                       \
    }                                                                                         \
  } while (0)

#define CHECK_OK(expr)                                                            \
  do {                                                                            \
    const ::hoplite::Status hoplite_itest_st = ::hoplite::itest::status_of(expr); \
    if (!hoplite_itest_st.is_ok()) {                                              \
      FAIL_BODY("CHECK_OK(" #expr "): " + hoplite_itest_st.to_string());          \
    }                                                                             \
  } while (0)

// `expr` (a Status or Result) fails with exactly `want`.
#define CHECK_CODE(expr, want)                                                                  \
  do {                                                                                          \
    const ::hoplite::Status hoplite_itest_st = ::hoplite::itest::status_of(expr);               \
    if (hoplite_itest_st.code() != (want)) {                                                    \
      FAIL_BODY("CHECK_CODE(" #expr "): want " + ::hoplite::itest::printable(want) + ", got " + \
                (hoplite_itest_st.is_ok() ? std::string("ok") : hoplite_itest_st.to_string())); \
    }                                                                                           \
  } while (0)

// Declares `lhs` from the value of a Result, or fails the body.
#define ASSIGN_OR_FAIL(lhs, expr) \
  HOPLITE_ITEST_ASSIGN_OR_FAIL(HOPLITE_ITEST_CONCAT(hoplite_itest_r, __LINE__), lhs, expr)
#define HOPLITE_ITEST_ASSIGN_OR_FAIL(tmp, lhs, expr)                  \
  auto tmp = (expr);                                                  \
  if (!tmp.is_ok()) FAIL_BODY(#expr ": " + tmp.status().to_string()); \
  lhs = std::move(tmp).value()

// `bytes` is exactly the pattern object (size, seed).
#define CHECK_PATTERN(bytes, size, seed)                                                               \
  do {                                                                                                 \
    const std::string hoplite_itest_why = ::hoplite::itest::pattern_mismatch((bytes), (size), (seed)); \
    if (!hoplite_itest_why.empty()) FAIL_BODY("CHECK_PATTERN(" #bytes "): " + hoplite_itest_why);      \
  } while (0)
