#include "collectives.h"

#include <algorithm>
#include <cstring>

namespace hoplite::perf {
namespace {

template <typename T>
void fill_t(std::byte* p, std::uint64_t n, int rank) {
  auto* v = reinterpret_cast<T*>(p);
  for (std::uint64_t i = 0; i < n; ++i) v[i] = static_cast<T>((static_cast<std::uint64_t>(rank) + i) % 5 + 1);
}

template <typename T>
std::uint64_t check_t(const std::byte* p, std::uint64_t n, ReduceOp op, const std::vector<int>& ranks) {
  const auto* v = reinterpret_cast<const T*>(p);
  std::uint64_t wrong = 0;
  // The expected value depends on i only through i % 5: precompute 5 values.
  T expect[5];
  for (int m = 0; m < 5; ++m) {
    T acc{};
    for (std::size_t j = 0; j < ranks.size(); ++j) {
      T x = static_cast<T>((ranks[j] + m) % 5 + 1);
      if (j == 0) {
        acc = x;
      } else if (op == ReduceOp::kSum) {
        acc = static_cast<T>(acc + x);
      } else if (op == ReduceOp::kProd) {
        acc = static_cast<T>(acc * x);
      } else if (op == ReduceOp::kMin) {
        acc = std::min(acc, x);
      } else {
        acc = std::max(acc, x);
      }
    }
    expect[m] = acc;
  }
  for (std::uint64_t i = 0; i < n; ++i) wrong += v[i] != expect[i % 5];
  return wrong;
}

}  // namespace

void fill_input(std::byte* p, std::uint64_t bytes, DataType t, int rank) {
  switch (t) {
    case DataType::kFloat32: return fill_t<float>(p, bytes / 4, rank);
    case DataType::kFloat64: return fill_t<double>(p, bytes / 8, rank);
    case DataType::kInt32: return fill_t<std::int32_t>(p, bytes / 4, rank);
    case DataType::kInt64: return fill_t<std::int64_t>(p, bytes / 8, rank);
    // 16-bit floats are not benchmarked: zeros, and no check.
    case DataType::kBFloat16:
    case DataType::kFloat16: std::memset(p, 0, bytes); return;
  }
}

std::uint64_t check_reduced(const std::byte* p, std::uint64_t bytes, DataType t, ReduceOp op,
                            const std::vector<int>& ranks) {
  switch (t) {
    case DataType::kFloat32: return check_t<float>(p, bytes / 4, op, ranks);
    case DataType::kFloat64: return check_t<double>(p, bytes / 8, op, ranks);
    case DataType::kInt32: return check_t<std::int32_t>(p, bytes / 4, op, ranks);
    case DataType::kInt64: return check_t<std::int64_t>(p, bytes / 8, op, ranks);
    case DataType::kBFloat16:
    case DataType::kFloat16: return 0;
  }
  return 0;
}

}  // namespace hoplite::perf
