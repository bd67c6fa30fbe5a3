// Shared by mpi_coll_perf and gloo_coll_perf (header only, no hoplite
// dependency): the nccl-tests flags, the input patterns and their checks,
// and the table, laid out exactly like perf/perf_common.cc so that rows of
// the project's *_perf tools and of these programs line up column by column.
//
// Table: size(B) count(elements) type redop root time(us) algbw(GB/s)
// busbw(GB/s) #wrong median(us). "time" is the mean, and the extra trailing
// "median" column the median, over the -n measured iterations of the slowest
// rank's time in that iteration (every iteration's per-rank times are reduced
// with max across ranks). GB = 1e9. busbw = algbw * factor: bcast 1,
// reduce 1, allreduce 2(n-1)/n, gather and allgather (n-1)/n, where size is
// the total gathered bytes (nccl-tests' convention).
//
// Data: for reduce/allreduce, element i of rank r's input is ((r+i)%5)+1 in
// the chosen type (same as perf/collectives.cc), and every element of the
// result is compared with op over all ranks. For bcast/gather/allgather the
// data are a position-dependent pattern seeded by the source rank and the
// iteration, compared element by element.
#pragma once

#include <getopt.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace compare {

enum class Coll { kBcast, kReduce, kAllreduce, kGather, kAllgather };
enum class Op { kSum, kProd, kMin, kMax };
enum class DType { kFloat, kDouble, kInt32, kInt64 };

struct Args {
  std::uint64_t min_bytes = 32u << 20;
  std::uint64_t max_bytes = 32u << 20;
  double step_factor = 2;
  int iters = 20;
  int warmup = 5;
  bool check = true;
  std::string op = "sum";
  std::string dtype = "float";
  int root = 0;
  std::string coll_name;  // -C or the first positional argument
  std::string algo;       // -A (Gloo allreduce only); empty if not given
  Coll coll = Coll::kAllreduce;
  Op redop = Op::kSum;
  DType type = DType::kFloat;
};

inline bool parse_size(const std::string& s, std::uint64_t& out) {
  if (s.empty() || s[0] < '0' || s[0] > '9') return false;
  char* end = nullptr;
  unsigned long long n = std::strtoull(s.c_str(), &end, 10);
  std::string suffix(end);
  std::uint64_t mult = 1;
  if (suffix.empty() || suffix == "B") {
    mult = 1;
  } else if (suffix == "K" || suffix == "k" || suffix == "KiB") {
    mult = 1ull << 10;
  } else if (suffix == "M" || suffix == "MiB") {
    mult = 1ull << 20;
  } else if (suffix == "G" || suffix == "GiB") {
    mult = 1ull << 30;
  } else {
    return false;
  }
  if (n > UINT64_MAX / mult) return false;
  out = static_cast<std::uint64_t>(n) * mult;
  return true;
}

inline void print_usage(const char* name, bool with_algo) {
  std::fprintf(stderr,
               "usage: %s [-C] bcast|reduce|allreduce|gather|allgather [-b minbytes] [-e maxbytes]\n"
               "          [-f stepfactor] [-n iters] [-w warmup] [-c 0|1] [-o sum|prod|min|max]\n"
               "          [-d float|double|int32|int64] [-r root]%s\n",
               name, with_algo ? " [-A ring|ring_chunked|halving_doubling|bcube]" : "");
}

// Parses argv. Returns an empty string on success, else the reason (the
// caller prints it and the usage on one rank, then exits with status 2).
inline std::string parse_args(int argc, char** argv, bool with_algo, Args& a) {
  int c;
  opterr = 0;
  while ((c = getopt(argc, argv, "b:e:f:n:w:c:o:d:r:C:A:h")) != -1) {
    switch (c) {
      case 'b':
        if (!parse_size(optarg, a.min_bytes)) return std::string("bad size '") + optarg + "'";
        break;
      case 'e':
        if (!parse_size(optarg, a.max_bytes)) return std::string("bad size '") + optarg + "'";
        break;
      case 'f': a.step_factor = std::atof(optarg); break;
      case 'n': a.iters = std::atoi(optarg); break;
      case 'w': a.warmup = std::atoi(optarg); break;
      case 'c': a.check = std::atoi(optarg) != 0; break;
      case 'o': a.op = optarg; break;
      case 'd': a.dtype = optarg; break;
      case 'r': a.root = std::atoi(optarg); break;
      case 'C': a.coll_name = optarg; break;
      case 'A':
        if (!with_algo) return "-A (algorithm) is not supported by this program";
        a.algo = optarg;
        break;
      case 'h': return "help";
      default: return std::string("unknown option or missing value: -") + static_cast<char>(optopt);
    }
  }
  if (optind < argc) {
    if (!a.coll_name.empty() || optind + 1 < argc) return "too many positional arguments";
    a.coll_name = argv[optind];
  }
  if (a.coll_name == "bcast" || a.coll_name == "broadcast") {
    a.coll = Coll::kBcast;
  } else if (a.coll_name == "reduce") {
    a.coll = Coll::kReduce;
  } else if (a.coll_name == "allreduce") {
    a.coll = Coll::kAllreduce;
  } else if (a.coll_name == "gather") {
    a.coll = Coll::kGather;
  } else if (a.coll_name == "allgather") {
    a.coll = Coll::kAllgather;
  } else {
    return a.coll_name.empty() ? "no collective given" : "unknown collective '" + a.coll_name + "'";
  }
  if (a.op == "sum") {
    a.redop = Op::kSum;
  } else if (a.op == "prod") {
    a.redop = Op::kProd;
  } else if (a.op == "min") {
    a.redop = Op::kMin;
  } else if (a.op == "max") {
    a.redop = Op::kMax;
  } else {
    return "unknown op '" + a.op + "'";
  }
  if (a.dtype == "float") {
    a.type = DType::kFloat;
  } else if (a.dtype == "double") {
    a.type = DType::kDouble;
  } else if (a.dtype == "int32") {
    a.type = DType::kInt32;
  } else if (a.dtype == "int64") {
    a.type = DType::kInt64;
  } else {
    return "unknown dtype '" + a.dtype + "'";
  }
  if (a.min_bytes > a.max_bytes) return "minbytes > maxbytes";
  if (!(a.step_factor > 1)) return "stepfactor must be > 1";
  if (a.iters < 1 || a.warmup < 0) return "iters must be >= 1 and warmup >= 0";
  return "";
}

inline bool is_reduction(Coll c) {
  return c == Coll::kReduce || c == Coll::kAllreduce;
}
inline bool is_gather(Coll c) {
  return c == Coll::kGather || c == Coll::kAllgather;
}

inline const char* coll_label(Coll c) {
  switch (c) {
    case Coll::kBcast: return "broadcast";
    case Coll::kReduce: return "reduce";
    case Coll::kAllreduce: return "allreduce";
    case Coll::kGather: return "gather";
    case Coll::kAllgather: return "allgather";
  }
  return "?";
}

inline double busbw_factor(Coll c, int world) {
  const double n = world;
  switch (c) {
    case Coll::kBcast:
    case Coll::kReduce: return 1.0;
    case Coll::kAllreduce: return 2.0 * (n - 1) / n;
    case Coll::kGather:
    case Coll::kAllgather: return (n - 1) / n;
  }
  return 1.0;
}

// The sizes swept: the same sequence as perf/perf_common.cc (whole 8-byte
// multiples of min, min*f, ... up to max).
inline std::vector<std::uint64_t> sizes(const Args& a) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t step = a.min_bytes; step <= a.max_bytes;
       step = std::max<std::uint64_t>(
           step + 1, static_cast<std::uint64_t>(static_cast<double>(step) * a.step_factor))) {
    out.push_back(step - step % 8);
  }
  return out;
}

// ---- reductions: input ((r+i)%5)+1, expected op over all ranks ----

template <typename T>
T apply(Op op, T a, T b) {
  switch (op) {
    case Op::kSum: return static_cast<T>(a + b);
    case Op::kProd: return static_cast<T>(a * b);
    case Op::kMin: return std::min(a, b);
    case Op::kMax: return std::max(a, b);
  }
  return a;
}

template <typename T>
void fill_input(T* p, std::uint64_t n, int rank) {
  int k = rank % 5;
  for (std::uint64_t i = 0; i < n; ++i) {
    p[i] = static_cast<T>(k + 1);
    if (++k == 5) k = 0;
  }
}

template <typename T>
std::uint64_t check_reduced(const T* p, std::uint64_t n, Op op, int world) {
  T expect[5];
  for (int m = 0; m < 5; ++m) {
    T acc = static_cast<T>(m % 5 + 1);  // rank 0
    for (int r = 1; r < world; ++r) acc = apply(op, acc, static_cast<T>((r + m) % 5 + 1));
    expect[m] = acc;
  }
  std::uint64_t wrong = 0;
  int k = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (p[i] != expect[k]) ++wrong;
    if (++k == 5) k = 0;
  }
  return wrong;
}

// ---- data movement: a pattern per element, seeded by source and iteration ----

inline std::uint64_t pattern_seed(int source, int iter) {
  return (static_cast<std::uint64_t>(source) + 1) * 0x100000001b3ULL +
         static_cast<std::uint64_t>(iter) * 7919;
}

inline std::uint64_t pattern_word(std::uint64_t i, std::uint64_t seed) {
  return ((i + 1) * 0x9e3779b97f4a7c15ULL) ^ seed;
}

// Raw bits of the element type (MPI and Gloo move them unchanged): 4- or
// 8-byte elements, so that #wrong counts elements.
template <typename T>
void fill_pattern(T* p, std::uint64_t n, std::uint64_t seed) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint64_t w = pattern_word(i, seed);
    if constexpr (sizeof(T) == 4) {
      auto v = static_cast<std::uint32_t>(w);
      std::memcpy(p + i, &v, 4);
    } else {
      std::memcpy(p + i, &w, 8);
    }
  }
}

template <typename T>
std::uint64_t check_pattern(const T* p, std::uint64_t n, std::uint64_t seed) {
  std::uint64_t wrong = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint64_t w = pattern_word(i, seed);
    if constexpr (sizeof(T) == 4) {
      std::uint32_t v;
      std::memcpy(&v, p + i, 4);
      if (v != static_cast<std::uint32_t>(w)) ++wrong;
    } else {
      std::uint64_t v;
      std::memcpy(&v, p + i, 8);
      if (v != w) ++wrong;
    }
  }
  return wrong;
}

// ---- the table (printed by rank 0 only) ----

inline double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

inline double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// `info` is one free-form comment line (implementation, algorithm, ...).
inline void print_header(const std::string& name, const Args& a, int world, const std::string& info) {
  std::printf("# %s %s: %d ranks, %s\n", name.c_str(), coll_label(a.coll), world, info.c_str());
  std::printf("# minBytes %llu maxBytes %llu step %g iters %d warmup %d check %d\n",
              static_cast<unsigned long long>(a.min_bytes), static_cast<unsigned long long>(a.max_bytes),
              a.step_factor, a.iters, a.warmup, a.check ? 1 : 0);
  std::printf("# time = mean, median = median, over iterations, of the slowest rank's time\n");
  std::printf("#\n# %10s %12s %8s %6s %6s %10s %8s %8s %6s %10s\n", "size", "count", "type", "redop", "root",
              "time", "algbw", "busbw", "#wrong", "median");
  std::printf("# %10s %12s %8s %6s %6s %10s %8s %8s %6s %10s\n", "(B)", "(elements)", "", "", "", "(us)",
              "(GB/s)", "(GB/s)", "", "(us)");
  std::fflush(stdout);
}

// `slowest` holds the measured iterations' slowest-rank seconds.
inline void print_row(const Args& a, int world, std::uint64_t bytes, std::uint64_t count,
                      const std::vector<double>& slowest, std::uint64_t wrong) {
  const double mean = mean_of(slowest);
  const double median = median_of(slowest);
  const double algbw = mean > 0 ? static_cast<double>(bytes) / mean / 1e9 : 0;
  std::printf("  %10llu %12llu %8s %6s %6d %10.1f %8.3f %8.3f %6llu %10.1f\n",
              static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(count), a.dtype.c_str(),
              is_reduction(a.coll) ? a.op.c_str() : "none", a.root, mean * 1e6, algbw,
              algbw * busbw_factor(a.coll, world), static_cast<unsigned long long>(a.check ? wrong : 0),
              median * 1e6);
  std::fflush(stdout);
}

inline void print_footer(std::uint64_t total_wrong) {
  std::printf("# Out of bounds values : %llu %s\n", static_cast<unsigned long long>(total_wrong),
              total_wrong ? "FAILED" : "OK");
  std::fflush(stdout);
}

}  // namespace compare
