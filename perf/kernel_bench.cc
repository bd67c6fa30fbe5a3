// Throughput of the element-wise reduce kernels (reduce::apply), the inner
// loop of every reduce task: a task folds each landed chunk into its output,
// so a kernel slower than the network would make the reduce compute-bound.
//
// Sizes: 4 KiB stays in L1, 256 KiB (one default chunk) in L2, 4 MiB spills
// to L3 or memory, so the three show the kernel itself and then the memory
// system underneath it. Bytes processed count one operand (the object size),
// which is what a reduce's bandwidth is quoted in.
//
//   build/perf/kernel_bench --benchmark_min_time=0.2

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hoplite/reduce.h"
#include "reduce/kernels.h"

namespace hoplite {
namespace {

template <ReduceOp kOp, DataType kType>
void BM_Apply(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  // Ones, so sums and products stay finite however many iterations run.
  std::vector<std::byte> a(bytes), b(bytes), dst(bytes);
  const std::size_t esize = element_size(kType);
  for (std::size_t i = 0; i + esize <= bytes; i += esize) {
    if constexpr (kType == DataType::kFloat32) {
      const float one = 1.0f;
      std::memcpy(&a[i], &one, esize);
      std::memcpy(&b[i], &one, esize);
    } else if constexpr (kType == DataType::kFloat64) {
      const double one = 1.0;
      std::memcpy(&a[i], &one, esize);
      std::memcpy(&b[i], &one, esize);
    } else {
      a[i] = b[i] = std::byte{1};
    }
  }
  for (auto _ : state) {
    reduce::apply(kOp, kType, dst.data(), a.data(), b.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
}

void sizes(benchmark::internal::Benchmark* b) {
  for (std::int64_t s : {4 << 10, 256 << 10, 4 << 20}) b->Arg(s);
}

BENCHMARK(BM_Apply<ReduceOp::kSum, DataType::kFloat32>)->Name("sum/f32")->Apply(sizes);
BENCHMARK(BM_Apply<ReduceOp::kSum, DataType::kFloat64>)->Name("sum/f64")->Apply(sizes);
BENCHMARK(BM_Apply<ReduceOp::kSum, DataType::kInt32>)->Name("sum/i32")->Apply(sizes);
BENCHMARK(BM_Apply<ReduceOp::kMax, DataType::kFloat32>)->Name("max/f32")->Apply(sizes);

}  // namespace
}  // namespace hoplite

BENCHMARK_MAIN();
