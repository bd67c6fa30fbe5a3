// The element-wise reduce kernels against a scalar reference: every op and
// element type, lengths around the vector widths (so both the vector body
// and the scalar tail run), pointers that are not vector-aligned, and dst
// aliasing an operand, which is how reduce tasks fold into their output.
// Also the names of ops and types, which the CLI and perf tools parse.

#include "reduce/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "hoplite/reduce.h"

namespace hoplite::reduce {
namespace {

constexpr ReduceOp kOps[] = {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax};
constexpr DataType kTypes[] = {DataType::kFloat32, DataType::kFloat64, DataType::kInt32, DataType::kInt64};
// Around 8 and 64 elements: one AVX2 register holds 4 or 8 of them, and GCC
// unrolls; 4096 + 3 leaves a ragged tail after a long vector body.
constexpr std::size_t kLengths[] = {0, 1, 7, 8, 9, 63, 64, 65, 1000, 4096 + 3};

enum class Alias { kNone, kDstIsA, kDstIsB };

template <typename T>
T reference(ReduceOp op, T x, T y) {
  if constexpr (std::is_integral_v<T>) {
    // Two's-complement wrap, written out so the reference has no UB either.
    using U = std::make_unsigned_t<T>;
    switch (op) {
      case ReduceOp::kSum: return static_cast<T>(static_cast<U>(x) + static_cast<U>(y));
      case ReduceOp::kProd: return static_cast<T>(static_cast<U>(x) * static_cast<U>(y));
      default: break;
    }
  } else {
    switch (op) {
      case ReduceOp::kSum: return x + y;
      case ReduceOp::kProd: return x * y;
      default: break;
    }
  }
  return op == ReduceOp::kMin ? (y < x ? y : x) : (x < y ? y : x);
}

// Mixed signs and magnitudes; floats get fractional parts so a kernel that
// truncated or converted through another type would show.
template <typename T>
std::vector<T> random_values(std::size_t n, std::uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) {
    if constexpr (std::is_integral_v<T>) {
      x = static_cast<T>(rng());  // the full range, so sums and products wrap
    } else {
      std::uniform_real_distribution<T> dist(-8, 8);
      x = dist(rng);
    }
  }
  return v;
}

template <typename T>
std::string type_name() {
  return to_string(std::is_same_v<T, float>          ? DataType::kFloat32
                   : std::is_same_v<T, double>       ? DataType::kFloat64
                   : std::is_same_v<T, std::int32_t> ? DataType::kInt32
                                                     : DataType::kInt64);
}

template <typename T>
constexpr DataType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DataType::kFloat32;
  if constexpr (std::is_same_v<T, double>) return DataType::kFloat64;
  if constexpr (std::is_same_v<T, std::int32_t>) return DataType::kInt32;
  return DataType::kInt64;
}

// Runs apply on `a` and `b` laid out `offset` elements into their buffers,
// optionally writing over one of them, and compares with the reference bit
// for bit (the kernels do one IEEE operation per element, as the reference
// does, so there is no rounding slack to allow).
template <typename T>
void check_apply(ReduceOp op, const std::vector<T>& a, const std::vector<T>& b, std::size_t offset,
                 Alias alias) {
  const std::size_t n = a.size();
  std::vector<T> want(n);
  for (std::size_t i = 0; i < n; ++i) want[i] = reference(op, a[i], b[i]);

  // One buffer per operand with a guard element after the data, so an
  // overrun of the tail shows up as a changed guard.
  const T guard = static_cast<T>(77);
  std::vector<T> abuf(n + offset + 1, guard), bbuf(n + offset + 1, guard), dbuf(n + offset + 1, guard);
  std::copy(a.begin(), a.end(), abuf.begin() + offset);
  std::copy(b.begin(), b.end(), bbuf.begin() + offset);
  T* pa = abuf.data() + offset;
  T* pb = bbuf.data() + offset;
  T* pd = alias == Alias::kDstIsA ? pa : alias == Alias::kDstIsB ? pb : dbuf.data() + offset;

  apply(op, dtype_of<T>(), reinterpret_cast<std::byte*>(pd), reinterpret_cast<const std::byte*>(pa),
        reinterpret_cast<const std::byte*>(pb), n * sizeof(T));

  for (std::size_t i = 0; i < n; ++i) {
    if (std::memcmp(&pd[i], &want[i], sizeof(T)) != 0) {
      ADD_FAILURE() << to_string(op) << " " << type_name<T>() << " n=" << n << " offset=" << offset
                    << " alias=" << static_cast<int>(alias) << ": element " << i << " is " << pd[i]
                    << ", want " << want[i] << " (" << a[i] << ", " << b[i] << ")";
      return;
    }
  }
  if (alias != Alias::kDstIsA) {
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(pa[i], a[i]) << "a was written";
    }
  }
  if (alias != Alias::kDstIsB) {
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(pb[i], b[i]) << "b was written";
    }
  }
  EXPECT_EQ(pd[n], guard) << "wrote past the end";
  if (offset > 0) {
    EXPECT_EQ(pd[-1], guard) << "wrote before the start";
  }
}

template <typename T>
void check_all_shapes(ReduceOp op) {
  std::uint32_t seed = 1;
  for (std::size_t n : kLengths) {
    const auto a = random_values<T>(n, seed++);
    const auto b = random_values<T>(n, seed++);
    for (std::size_t offset : {0, 1}) {
      for (Alias alias : {Alias::kNone, Alias::kDstIsA, Alias::kDstIsB}) {
        check_apply<T>(op, a, b, offset, alias);
      }
    }
  }
}

class KernelTest : public ::testing::TestWithParam<ReduceOp> {};

TEST_P(KernelTest, Float32MatchesReference) {
  check_all_shapes<float>(GetParam());
}
TEST_P(KernelTest, Float64MatchesReference) {
  check_all_shapes<double>(GetParam());
}
TEST_P(KernelTest, Int32MatchesReference) {
  check_all_shapes<std::int32_t>(GetParam());
}
TEST_P(KernelTest, Int64MatchesReference) {
  check_all_shapes<std::int64_t>(GetParam());
}

TEST_P(KernelTest, AllThreePointersTheSame) {
  // a op a: what a degenerate self-reduce would compute.
  const auto a = random_values<std::int64_t>(1000, 99);
  std::vector<std::int64_t> buf = a;
  auto* p = reinterpret_cast<std::byte*>(buf.data());
  apply(GetParam(), DataType::kInt64, p, p, p, buf.size() * sizeof(std::int64_t));
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(buf[i], reference(GetParam(), a[i], a[i])) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, KernelTest, ::testing::ValuesIn(kOps),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// Explicit wrap-around results, so the test does not only agree with a
// reference that might share a misconception.
template <typename T>
std::vector<T> apply_to(ReduceOp op, std::vector<T> a, const std::vector<T>& b) {
  apply(op, dtype_of<T>(), reinterpret_cast<std::byte*>(a.data()),
        reinterpret_cast<const std::byte*>(a.data()), reinterpret_cast<const std::byte*>(b.data()),
        a.size() * sizeof(T));
  return a;
}

TEST(KernelWrapTest, Int32SumWraps) {
  constexpr auto kMax = std::numeric_limits<std::int32_t>::max();
  constexpr auto kMin = std::numeric_limits<std::int32_t>::min();
  // Enough elements that the vector body, not only the tail, does the work.
  std::vector<std::int32_t> a(67, kMax), b(67, 1);
  a[5] = kMax - 2;
  b[5] = 10;  // kMax + 8
  a[6] = kMin;
  b[6] = -1;
  const auto got = apply_to(ReduceOp::kSum, a, b);
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (i == 5) {
      EXPECT_EQ(got[i], kMin + 7);
    } else if (i == 6) {
      EXPECT_EQ(got[i], kMax);
    } else {
      EXPECT_EQ(got[i], kMin) << i;
    }
  }
}

TEST(KernelWrapTest, Int32ProdWraps) {
  constexpr auto kMax = std::numeric_limits<std::int32_t>::max();
  constexpr auto kMin = std::numeric_limits<std::int32_t>::min();
  std::vector<std::int32_t> a(67, kMax), b(67, 2);  // 2^32 - 2 wraps to -2
  a[3] = 65536;
  b[3] = 65536;  // 2^32 wraps to 0
  a[4] = kMin;
  b[4] = -1;  // -2^31 * -1 = 2^31 wraps back to -2^31
  a[9] = kMax - 1;
  b[9] = kMax - 1;  // (2^31 - 2)^2 = 2^62 - 2^33 + 4, which is 4 mod 2^32
  const auto got = apply_to(ReduceOp::kProd, a, b);
  for (std::size_t i = 0; i < got.size(); ++i) {
    std::int32_t want = i == 3 ? 0 : i == 4 ? kMin : i == 9 ? 4 : -2;
    EXPECT_EQ(got[i], want) << i;
  }
}

TEST(KernelWrapTest, Int64SumAndProdWrap) {
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  std::vector<std::int64_t> a(33, kMax), b(33, 1);
  a[2] = kMin;
  b[2] = -5;
  auto sum = apply_to(ReduceOp::kSum, a, b);
  for (std::size_t i = 0; i < sum.size(); ++i) {
    EXPECT_EQ(sum[i], i == 2 ? kMax - 4 : kMin) << i;
  }

  std::vector<std::int64_t> c(33, kMax), d(33, 3);  // 3 * 2^63 - 3 is 2^63 - 3 mod 2^64
  c[1] = std::int64_t{1} << 32;
  d[1] = std::int64_t{1} << 32;  // 2^64 wraps to 0
  auto prod = apply_to(ReduceOp::kProd, c, d);
  for (std::size_t i = 0; i < prod.size(); ++i) {
    EXPECT_EQ(prod[i], i == 1 ? 0 : kMax - 2) << i;
  }
}

TEST(KernelMinMaxTest, NegativeNumbers) {
  std::vector<std::int32_t> a = {-1, -5, 3, -2147483647 - 1, 0, -7, 7, -100, 100};
  std::vector<std::int32_t> b = {-2, -4, -3, 2147483647, -1, -7, -8, 99, -99};
  EXPECT_EQ(apply_to(ReduceOp::kMin, a, b),
            (std::vector<std::int32_t>{-2, -5, -3, -2147483647 - 1, -1, -7, -8, -100, -99}));
  EXPECT_EQ(apply_to(ReduceOp::kMax, a, b),
            (std::vector<std::int32_t>{-1, -4, 3, 2147483647, 0, -7, 7, 99, 100}));

  std::vector<double> x = {-1.5, -0.25, 2.0, -1e300, 3.0, -8.0, 1e-300, -1e-300, 0.5};
  std::vector<double> y = {-1.25, -0.5, -2.0, 1e300, -3.0, -8.0, -1e-300, 1e-300, -0.5};
  EXPECT_EQ(apply_to(ReduceOp::kMin, x, y),
            (std::vector<double>{-1.5, -0.5, -2.0, -1e300, -3.0, -8.0, -1e-300, -1e-300, -0.5}));
  EXPECT_EQ(apply_to(ReduceOp::kMax, x, y),
            (std::vector<double>{-1.25, -0.25, 2.0, 1e300, 3.0, -8.0, 1e-300, 1e-300, 0.5}));

  std::vector<float> f = {-3.5f, -1e30f, 0.5f, -0.125f, 1.0f, -2.0f, -9.0f, 4.0f, -4.0f};
  std::vector<float> g = {-3.25f, 1e30f, -0.5f, -0.25f, -1.0f, -2.5f, -8.0f, -4.0f, 4.0f};
  EXPECT_EQ(apply_to(ReduceOp::kMin, f, g),
            (std::vector<float>{-3.5f, -1e30f, -0.5f, -0.25f, -1.0f, -2.5f, -9.0f, -4.0f, -4.0f}));
  EXPECT_EQ(apply_to(ReduceOp::kMax, f, g),
            (std::vector<float>{-3.25f, 1e30f, 0.5f, -0.125f, 1.0f, -2.0f, -8.0f, 4.0f, 4.0f}));

  std::vector<std::int64_t> p = {-(std::int64_t{1} << 40), -1, std::numeric_limits<std::int64_t>::min()};
  std::vector<std::int64_t> q = {-(std::int64_t{1} << 41), 1, -1};
  EXPECT_EQ(
      apply_to(ReduceOp::kMin, p, q),
      (std::vector<std::int64_t>{-(std::int64_t{1} << 41), -1, std::numeric_limits<std::int64_t>::min()}));
  EXPECT_EQ(apply_to(ReduceOp::kMax, p, q), (std::vector<std::int64_t>{-(std::int64_t{1} << 40), 1, -1}));
}

TEST(KernelEdgeTest, ZeroBytesTouchesNothing) {
  // A null pointer is what an empty span hands over; it must not be read.
  apply(ReduceOp::kSum, DataType::kFloat64, nullptr, nullptr, nullptr, 0);
  std::int32_t x = 5;
  auto* p = reinterpret_cast<std::byte*>(&x);
  for (ReduceOp op : kOps) {
    for (DataType t : kTypes) apply(op, t, p, p, p, 0);
  }
  EXPECT_EQ(x, 5);
}

// ------------------------------------------------------------------ names

TEST(ReduceNamesTest, OpsRoundTrip) {
  for (ReduceOp op : kOps) {
    auto parsed = parse_reduce_op(to_string(op));
    ASSERT_TRUE(parsed.is_ok()) << to_string(op);
    EXPECT_EQ(parsed.value(), op);
  }
  EXPECT_STREQ(to_string(ReduceOp::kSum), "sum");
  EXPECT_STREQ(to_string(ReduceOp::kProd), "prod");
  EXPECT_STREQ(to_string(ReduceOp::kMin), "min");
  EXPECT_STREQ(to_string(ReduceOp::kMax), "max");
}

TEST(ReduceNamesTest, TypesRoundTripAndAcceptShortNames) {
  for (DataType t : kTypes) {
    auto parsed = parse_data_type(to_string(t));
    ASSERT_TRUE(parsed.is_ok()) << to_string(t);
    EXPECT_EQ(parsed.value(), t);
  }
  const std::pair<const char*, DataType> aliases[] = {
      {"f32", DataType::kFloat32},     {"float32", DataType::kFloat32}, {"f64", DataType::kFloat64},
      {"float64", DataType::kFloat64}, {"i32", DataType::kInt32},       {"int", DataType::kInt32},
      {"i64", DataType::kInt64},
  };
  for (const auto& [name, t] : aliases) {
    auto parsed = parse_data_type(name);
    ASSERT_TRUE(parsed.is_ok()) << name;
    EXPECT_EQ(parsed.value(), t) << name;
  }
}

// 16-bit floats: folded in float, rounded to nearest even.
std::uint16_t bits_of(float f, DataType t) {
  std::uint16_t h;
  if (t == DataType::kFloat16) {
    const _Float16 x = static_cast<_Float16>(f);
    std::memcpy(&h, &x, 2);
  } else {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    h = static_cast<std::uint16_t>(u >> 16);  // exact for the values used
  }
  return h;
}

float value_of(std::uint16_t h, DataType t) {
  if (t == DataType::kFloat16) {
    _Float16 x;
    std::memcpy(&x, &h, 2);
    return static_cast<float>(x);
  }
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float fold16(ReduceOp op, DataType t, float a, float b) {
  std::uint16_t x = bits_of(a, t), y = bits_of(b, t), z = 0;
  apply(op, t, reinterpret_cast<std::byte*>(&z), reinterpret_cast<const std::byte*>(&x),
        reinterpret_cast<const std::byte*>(&y), 2);
  return value_of(z, t);
}

TEST(HalfKernelsTest, FoldInFloatAndRoundToNearestEven) {
  for (DataType t : {DataType::kBFloat16, DataType::kFloat16}) {
    EXPECT_EQ(fold16(ReduceOp::kSum, t, 3, 5), 8) << to_string(t);
    EXPECT_EQ(fold16(ReduceOp::kProd, t, 3, -5), -15) << to_string(t);
    EXPECT_EQ(fold16(ReduceOp::kMin, t, 3, -5), -5) << to_string(t);
    EXPECT_EQ(fold16(ReduceOp::kMax, t, 0.5f, 0.25f), 0.5f) << to_string(t);
  }
  // bfloat16 keeps 8 significant bits: 1 + 2^-8 is a tie between 1 and
  // 1 + 2^-7, which goes to the even one (1); 1 + 3 * 2^-8 to 1 + 2^-6.
  EXPECT_EQ(fold16(ReduceOp::kSum, DataType::kBFloat16, 1, 0.00390625f), 1.0f);
  EXPECT_EQ(fold16(ReduceOp::kSum, DataType::kBFloat16, 1.0078125f, 0.00390625f), 1.015625f);
  // float16 keeps 11: 2048 + 1 ties to 2048, 2050 + 1 to 2052.
  EXPECT_EQ(fold16(ReduceOp::kSum, DataType::kFloat16, 2048, 1), 2048.0f);
  EXPECT_EQ(fold16(ReduceOp::kSum, DataType::kFloat16, 2050, 1), 2052.0f);
  // Overflow is infinity, as in float16 arithmetic.
  EXPECT_TRUE(std::isinf(fold16(ReduceOp::kSum, DataType::kFloat16, 60000, 60000)));
  EXPECT_EQ(element_size(DataType::kBFloat16), 2u);
  EXPECT_EQ(parse_data_type("bf16").value(), DataType::kBFloat16);
  EXPECT_EQ(parse_data_type("half").value(), DataType::kFloat16);
}

TEST(ReduceNamesTest, ElementSizes) {
  EXPECT_EQ(element_size(DataType::kFloat32), 4u);
  EXPECT_EQ(element_size(DataType::kFloat64), 8u);
  EXPECT_EQ(element_size(DataType::kInt32), 4u);
  EXPECT_EQ(element_size(DataType::kInt64), 8u);
}

TEST(ReduceNamesTest, UnknownNamesAreInvalidArguments) {
  for (const char* bad : {"", "avg", "SUM", "Sum", " sum", "sum ", "mean", "product"}) {
    auto r = parse_reduce_op(bad);
    ASSERT_FALSE(r.is_ok()) << "'" << bad << "'";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << "'" << bad << "'";
    // The message is for a person at a command line: it names the input.
    EXPECT_NE(r.status().message().find(std::string("'") + bad + "'"), std::string::npos)
        << r.status().to_string();
  }
  for (const char* bad : {"", "f8", "bfloat8", "int8", "uint32", "FLOAT", "i 32", "double "}) {
    auto r = parse_data_type(bad);
    ASSERT_FALSE(r.is_ok()) << "'" << bad << "'";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << "'" << bad << "'";
  }
}

}  // namespace
}  // namespace hoplite::reduce
