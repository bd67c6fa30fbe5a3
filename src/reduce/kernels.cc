#include "reduce/kernels.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace hoplite {

std::size_t element_size(DataType t) {
  switch (t) {
    case DataType::kFloat32: return 4;
    case DataType::kFloat64: return 8;
    case DataType::kInt32: return 4;
    case DataType::kInt64: return 8;
    case DataType::kBFloat16: return 2;
    case DataType::kFloat16: return 2;
  }
  return 1;
}

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kProd: return "prod";
    case ReduceOp::kMin: return "min";
    case ReduceOp::kMax: return "max";
  }
  return "?";
}

const char* to_string(DataType t) {
  switch (t) {
    case DataType::kFloat32: return "float";
    case DataType::kFloat64: return "double";
    case DataType::kInt32: return "int32";
    case DataType::kInt64: return "int64";
    case DataType::kBFloat16: return "bfloat16";
    case DataType::kFloat16: return "float16";
  }
  return "?";
}

Result<ReduceOp> parse_reduce_op(const std::string& s) {
  if (s == "sum") return ReduceOp::kSum;
  if (s == "prod") return ReduceOp::kProd;
  if (s == "min") return ReduceOp::kMin;
  if (s == "max") return ReduceOp::kMax;
  return invalid_argument("unknown reduce op '" + s + "' (sum, prod, min, max)");
}

Result<DataType> parse_data_type(const std::string& s) {
  if (s == "float" || s == "f32" || s == "float32") return DataType::kFloat32;
  if (s == "double" || s == "f64" || s == "float64") return DataType::kFloat64;
  if (s == "int32" || s == "i32" || s == "int") return DataType::kInt32;
  if (s == "int64" || s == "i64") return DataType::kInt64;
  if (s == "bfloat16" || s == "bf16") return DataType::kBFloat16;
  if (s == "float16" || s == "f16" || s == "half") return DataType::kFloat16;
  return invalid_argument("unknown data type '" + s + "' (float, double, int32, int64, bfloat16, float16)");
}

namespace reduce {
namespace {

// Integer sums and products wrap (two's complement) instead of overflowing,
// which would be undefined behaviour; floats follow IEEE.
template <typename T>
struct ArithOf {
  using type = T;
};
template <>
struct ArithOf<std::int32_t> {
  using type = std::uint32_t;
};
template <>
struct ArithOf<std::int64_t> {
  using type = std::uint64_t;
};
template <typename T>
using Arith = typename ArithOf<T>::type;
struct Sum {
  template <typename T>
  T operator()(T x, T y) const {
    return static_cast<T>(static_cast<Arith<T>>(x) + static_cast<Arith<T>>(y));
  }
};
struct Prod {
  template <typename T>
  T operator()(T x, T y) const {
    return static_cast<T>(static_cast<Arith<T>>(x) * static_cast<Arith<T>>(y));
  }
};
struct Min {
  template <typename T>
  T operator()(T x, T y) const {
    return y < x ? y : x;
  }
};
struct Max {
  template <typename T>
  T operator()(T x, T y) const {
    return x < y ? y : x;
  }
};

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer builds: target_clones picks its body in an ifunc
// resolver that the dynamic loader runs while it relocates libhoplite.so,
// before TSan's runtime is set up, and the resolver's instrumented code
// segfaults there. So the same two bodies are built with `target` and
// picked here at run time, once, through a function pointer. Release and
// ASan builds keep target_clones (no indirect call per kernel call).
template <typename T, typename Op>
__attribute__((target("avx2"))) void loop_avx2(T* dst, const T* a, const T* b, std::size_t n) {
  Op op;
  for (std::size_t i = 0; i < n; ++i) dst[i] = op(a[i], b[i]);
}
template <typename T, typename Op>
void loop_default(T* dst, const T* a, const T* b, std::size_t n) {
  Op op;
  for (std::size_t i = 0; i < n; ++i) dst[i] = op(a[i], b[i]);
}
template <typename T, typename Op>
void loop(T* dst, const T* a, const T* b, std::size_t n) {
  using Fn = void (*)(T*, const T*, const T*, std::size_t);
  // A function-local static: initialised once, thread-safely, on first use
  // (long after TSan is up).
  static const Fn fn = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? Fn{&loop_avx2<T, Op>} : Fn{&loop_default<T, Op>};
  }();
  fn(dst, a, b, n);
}
#else
// One loop per (op, type); target_clones builds an AVX2 and a baseline body
// and picks at load time, so one binary runs everywhere and uses wide
// vectors where it can.
template <typename T, typename Op>
__attribute__((target_clones("avx2", "default"))) void loop(T* dst, const T* a, const T* b, std::size_t n) {
  Op op;
  for (std::size_t i = 0; i < n; ++i) dst[i] = op(a[i], b[i]);
}
#endif

// 16-bit floats: each element widened to float, combined, rounded back.
struct BFloat16 {
  static float widen(std::uint16_t h) {
    const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  static std::uint16_t narrow(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1);  // round to nearest, ties to even
    return static_cast<std::uint16_t>(u >> 16);
  }
};
struct Float16 {
  static float widen(std::uint16_t h) {
    _Float16 x;
    std::memcpy(&x, &h, sizeof x);
    return static_cast<float>(x);
  }
  static std::uint16_t narrow(float f) {
    const _Float16 x = static_cast<_Float16>(f);
    std::uint16_t h;
    std::memcpy(&h, &x, sizeof h);
    return h;
  }
};

template <typename H, typename Op>
void run_half(std::byte* dst, const std::byte* a, const std::byte* b, std::size_t bytes) {
  Op op;
  const std::size_t n = bytes / 2;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t x, y;
    std::memcpy(&x, a + 2 * i, 2);
    std::memcpy(&y, b + 2 * i, 2);
    const std::uint16_t z = H::narrow(op(H::widen(x), H::widen(y)));
    std::memcpy(dst + 2 * i, &z, 2);
  }
}

template <typename T, typename Op>
void run(std::byte* dst, const std::byte* a, const std::byte* b, std::size_t bytes) {
  if constexpr (std::is_same_v<T, BFloat16> || std::is_same_v<T, Float16>) {
    run_half<T, Op>(dst, a, b, bytes);
  } else {
    // Alias-safe: each element is read before it is written, and the same
    // index is used on both sides.
    loop<T, Op>(reinterpret_cast<T*>(dst), reinterpret_cast<const T*>(a), reinterpret_cast<const T*>(b),
                bytes / sizeof(T));
  }
}

template <typename T>
void by_op(ReduceOp op, std::byte* dst, const std::byte* a, const std::byte* b, std::size_t bytes) {
  switch (op) {
    case ReduceOp::kSum: return run<T, Sum>(dst, a, b, bytes);
    case ReduceOp::kProd: return run<T, Prod>(dst, a, b, bytes);
    case ReduceOp::kMin: return run<T, Min>(dst, a, b, bytes);
    case ReduceOp::kMax: return run<T, Max>(dst, a, b, bytes);
  }
}

}  // namespace

void apply(ReduceOp op, DataType t, std::byte* dst, const std::byte* a, const std::byte* b,
           std::size_t bytes) {
  switch (t) {
    case DataType::kFloat32: return by_op<float>(op, dst, a, b, bytes);
    case DataType::kFloat64: return by_op<double>(op, dst, a, b, bytes);
    case DataType::kInt32: return by_op<std::int32_t>(op, dst, a, b, bytes);
    case DataType::kInt64: return by_op<std::int64_t>(op, dst, a, b, bytes);
    case DataType::kBFloat16: return by_op<BFloat16>(op, dst, a, b, bytes);
    case DataType::kFloat16: return by_op<Float16>(op, dst, a, b, bytes);
  }
}

}  // namespace reduce
}  // namespace hoplite
