// mpi_coll_perf: MPI_Bcast / MPI_Reduce / MPI_Allreduce / MPI_Gather /
// MPI_Allgather timed like the project's *_perf tools, printing the same
// nccl-tests table (see compare_common.h), for comparison with OpenMPI.
//
//   mpirun -np 4 ... mpi_coll_perf -C allreduce -b 1K -e 16M -f 4 -n 5 -w 1
//
// Per iteration: refill/clear the buffers, MPI_Barrier, t0, the collective,
// t1; this rank's t1 - t0 is then reduced with MPI_MAX to rank 0 (outside the
// timed region), which gives the slowest rank of each iteration. Buffers are
// separate (never MPI_IN_PLACE). Exits 1 if any element is wrong, 2 on bad
// arguments.
#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <thread>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "compare_common.h"

namespace {

using compare::Args;
using compare::Coll;

template <typename T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<std::int32_t>() {
  return MPI_INT32_T;
}
template <>
MPI_Datatype mpi_type<std::int64_t>() {
  return MPI_INT64_T;
}

MPI_Op mpi_op(compare::Op op) {
  switch (op) {
    case compare::Op::kSum: return MPI_SUM;
    case compare::Op::kProd: return MPI_PROD;
    case compare::Op::kMin: return MPI_MIN;
    case compare::Op::kMax: return MPI_MAX;
  }
  return MPI_SUM;
}

std::string library_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(buf, &len);
  std::string s(buf, static_cast<std::size_t>(len));
  // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
  auto cut = s.find_first_of(",\n");
  return cut == std::string::npos ? s : s.substr(0, cut);
}

template <typename T>
int bench(const Args& a, int rank, int world) {
  const MPI_Datatype type = mpi_type<T>();
  const MPI_Op op = mpi_op(a.redop);
  const Coll coll = a.coll;
  const bool gathers = compare::is_gather(coll);
  if (rank == 0) compare::print_header("mpi_coll_perf", a, world, library_version());

  std::uint64_t total_wrong = 0;
  int iter_id = 0;  // across sizes, so that no buffer can hold a previous iteration's pattern
  for (std::uint64_t step_bytes : compare::sizes(a)) {
    // Elements per rank's contribution (gather: size is the total gathered).
    const std::uint64_t part =
        gathers ? step_bytes / sizeof(T) / static_cast<std::uint64_t>(world) : step_bytes / sizeof(T);
    if (part == 0) continue;  // less than one element per rank
    if (part > static_cast<std::uint64_t>(INT_MAX)) {
      if (rank == 0)
        std::fprintf(stderr, "mpi_coll_perf: %llu elements exceed an MPI int count\n",
                     static_cast<unsigned long long>(part));
      return 2;
    }
    const int n = static_cast<int>(part);
    const std::uint64_t total = gathers ? part * static_cast<std::uint64_t>(world) : part;
    std::vector<T> send(part);
    std::vector<T> recv(compare::is_reduction(coll) || gathers ? total : 0);
    if (is_reduction(coll)) compare::fill_input(send.data(), part, rank);

    std::vector<double> slowest;
    std::uint64_t wrong = 0;
    const char* late_env = std::getenv("HOPLITE_PERF_LATE_RANK");
    const int late_rank = late_env ? std::atoi(late_env) : -1;
    const int late_ms = std::getenv("HOPLITE_PERF_LATE_MS") ? std::atoi(std::getenv("HOPLITE_PERF_LATE_MS")) : 2000;
    for (int i = 0; i < a.warmup + a.iters; ++i, ++iter_id) {
      const bool measured = i >= a.warmup;
      switch (coll) {
        case Coll::kBcast:
          if (rank == a.root)
            compare::fill_pattern(send.data(), part, compare::pattern_seed(a.root, iter_id));
          break;
        case Coll::kReduce:
        case Coll::kAllreduce: std::memset(recv.data(), 0, recv.size() * sizeof(T)); break;
        case Coll::kGather:
        case Coll::kAllgather:
          compare::fill_pattern(send.data(), part, compare::pattern_seed(rank, iter_id));
          std::memset(recv.data(), 0, recv.size() * sizeof(T));
          break;
      }
      MPI_Barrier(MPI_COMM_WORLD);
      auto t0 = std::chrono::steady_clock::now();
      // A straggler (HOPLITE_PERF_LATE_RANK / HOPLITE_PERF_LATE_MS, as in the
      // project's reduce_perf): its input is ready late, so it enters the
      // collective late; the others' time includes waiting for it.
      if (late_rank == rank) std::this_thread::sleep_for(std::chrono::milliseconds(late_ms));
      int rc = MPI_SUCCESS;
      switch (coll) {
        case Coll::kBcast: rc = MPI_Bcast(send.data(), n, type, a.root, MPI_COMM_WORLD); break;
        case Coll::kReduce:
          rc = MPI_Reduce(send.data(), recv.data(), n, type, op, a.root, MPI_COMM_WORLD);
          break;
        case Coll::kAllreduce:
          rc = MPI_Allreduce(send.data(), recv.data(), n, type, op, MPI_COMM_WORLD);
          break;
        case Coll::kGather:
          rc = MPI_Gather(send.data(), n, type, recv.data(), n, type, a.root, MPI_COMM_WORLD);
          break;
        case Coll::kAllgather:
          rc = MPI_Allgather(send.data(), n, type, recv.data(), n, type, MPI_COMM_WORLD);
          break;
      }
      auto t1 = std::chrono::steady_clock::now();
      if (rc != MPI_SUCCESS) {
        std::fprintf(stderr, "mpi_coll_perf: rank %d: collective failed (%d)\n", rank, rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      double mine = std::chrono::duration<double>(t1 - t0).count();
      double max_time = 0;
      MPI_Reduce(&mine, &max_time, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      if (!measured) continue;
      if (rank == 0) slowest.push_back(max_time);
      if (!a.check) continue;
      switch (coll) {
        case Coll::kBcast:
          if (rank != a.root)
            wrong += compare::check_pattern(send.data(), part, compare::pattern_seed(a.root, iter_id));
          break;
        case Coll::kReduce:
          if (rank == a.root) wrong += compare::check_reduced(recv.data(), part, a.redop, world);
          break;
        case Coll::kAllreduce: wrong += compare::check_reduced(recv.data(), part, a.redop, world); break;
        case Coll::kGather:
        case Coll::kAllgather:
          if (coll == Coll::kAllgather || rank == a.root) {
            for (int r = 0; r < world; ++r) {
              wrong += compare::check_pattern(recv.data() + static_cast<std::uint64_t>(r) * part, part,
                                              compare::pattern_seed(r, iter_id));
            }
          }
          break;
      }
    }
    unsigned long long mine_wrong = wrong, all_wrong = 0;
    MPI_Allreduce(&mine_wrong, &all_wrong, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    total_wrong += all_wrong;
    if (rank == 0) compare::print_row(a, world, total * sizeof(T), total, slowest, all_wrong);
  }
  if (rank == 0) compare::print_footer(total_wrong);
  return total_wrong ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  Args a;
  std::string err = compare::parse_args(argc, argv, false, a);
  if (err.empty() && (a.root < 0 || a.root >= world)) err = "root out of range";
  if (!err.empty()) {
    if (rank == 0) {
      std::fprintf(stderr, "mpi_coll_perf: %s\n", err.c_str());
      compare::print_usage("mpi_coll_perf", false);
    }
    MPI_Finalize();
    return 2;
  }
  int rc = 0;
  switch (a.type) {
    case compare::DType::kFloat: rc = bench<float>(a, rank, world); break;
    case compare::DType::kDouble: rc = bench<double>(a, rank, world); break;
    case compare::DType::kInt32: rc = bench<std::int32_t>(a, rank, world); break;
    case compare::DType::kInt64: rc = bench<std::int64_t>(a, rank, world); break;
  }
  MPI_Finalize();
  return rc;
}
