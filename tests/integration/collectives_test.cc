// Reduce and allreduce across real processes: byte-exact results for every
// op and element type over sizes that straddle the inline threshold and the
// chunk size, forced tree shapes, readers that join while the reduce runs,
// random arrival orders, k-of-n with stragglers, concurrent reduces, a late
// receiver of a streamed broadcast, and bad arguments.
//
// Rank r's input holds, as element i, ((r + i) % 5) + 1 in the reduce's
// element type. Sums and products of at most 8 such values are small
// integers, which every type represents exactly, so the expected result does
// not depend on the order the tree-chain combines inputs in, and a result
// that is off by one input, shifted by a chunk or stale shows at once.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "cluster.h"
#include "hoplite/collectives.h"
#include "hoplite/node.h"
#include "hoplite/reduce.h"

namespace hoplite::itest {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::uint64_t kMiB = 1u << 20;

// The runtime's defaults, read from NodeOptions so the sizes below keep
// straddling the real boundaries if the defaults move.
const std::uint64_t kChunk = NodeOptions{}.chunk_size;
const std::uint64_t kInline = NodeOptions{}.inline_threshold;

constexpr ReduceOp kOps[] = {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax};
constexpr DataType kTypes[] = {DataType::kFloat32, DataType::kFloat64, DataType::kInt32, DataType::kInt64};

ClusterOptions cluster_options() {
  ClusterOptions o;
  o.chunk_size = kChunk;
  o.inline_threshold = kInline;
  return o;
}

// Propagates a helper's failure (already reported) out of a body.
#define RETURN_IF_FAILED(expr)                                       \
  do {                                                               \
    if (int hoplite_rc = (expr); hoplite_rc != 0) return hoplite_rc; \
  } while (0)

// ---------------------------------------------------------------- values

// Calls f(T{}) with T the C++ type of `t`.
template <typename F>
decltype(auto) with_type(DataType t, F&& f) {
  switch (t) {
    case DataType::kFloat64: return f(double{});
    case DataType::kInt32: return f(std::int32_t{});
    case DataType::kInt64: return f(std::int64_t{});
    case DataType::kFloat32:
    case DataType::kBFloat16:  // not in kTypes
    case DataType::kFloat16: break;
  }
  return f(float{});
}

template <typename T>
T input_value(int rank, std::uint64_t i) {
  return static_cast<T>((static_cast<std::uint64_t>(rank) + i) % 5 + 1);
}

template <typename T>
T combine(ReduceOp op, T x, T y) {
  switch (op) {
    case ReduceOp::kSum: return static_cast<T>(x + y);
    case ReduceOp::kProd: return static_cast<T>(x * y);
    case ReduceOp::kMin: return y < x ? y : x;
    case ReduceOp::kMax: return x < y ? y : x;
  }
  return x;
}

void fill_input(std::span<std::byte> out, DataType t, int rank) {
  with_type(t, [&]<typename T>(T) {
    const std::size_t n = out.size() / sizeof(T);
    for (std::size_t i = 0; i < n; ++i) {
      T v = input_value<T>(rank, i);
      std::memcpy(out.data() + i * sizeof(T), &v, sizeof(T));
    }
  });
}

std::vector<std::byte> make_input(std::uint64_t size, DataType t, int rank) {
  std::vector<std::byte> v(size);
  fill_input(v, t, rank);
  return v;
}

// Empty when `bytes` is exactly op over the inputs of `ranks`; otherwise the
// first wrong element.
std::string reduce_mismatch(std::span<const std::byte> bytes, std::uint64_t size, ReduceOp op, DataType t,
                            const std::vector<int>& ranks) {
  if (bytes.size() != size) {
    return "size " + std::to_string(bytes.size()) + ", expected " + std::to_string(size);
  }
  return with_type(t, [&]<typename T>(T) -> std::string {
    // Element i depends on i only through i % 5.
    T want[5];
    for (std::uint64_t i = 0; i < 5; ++i) {
      want[i] = input_value<T>(ranks[0], i);
      for (std::size_t j = 1; j < ranks.size(); ++j) {
        want[i] = combine(op, want[i], input_value<T>(ranks[j], i));
      }
    }
    const std::size_t n = size / sizeof(T);
    for (std::size_t i = 0; i < n; ++i) {
      if (std::memcmp(bytes.data() + i * sizeof(T), &want[i % 5], sizeof(T)) == 0) continue;
      T got;
      std::memcpy(&got, bytes.data() + i * sizeof(T), sizeof(T));
      return "element " + std::to_string(i) + " of " + std::to_string(n) + " (byte " +
             std::to_string(i * sizeof(T)) + "): got " + printable(got) + ", want " + printable(want[i % 5]);
    }
    return {};
  });
}

#define CHECK_REDUCED(bytes, size, op, t, ranks, what)                                                      \
  do {                                                                                                      \
    const std::string hoplite_why = reduce_mismatch((bytes), (size), (op), (t), (ranks));                   \
    if (!hoplite_why.empty()) {                                                                             \
      FAIL_BODY(std::string(what) + " " + to_string(op) + "/" + to_string(t) + " " + std::to_string(size) + \
                " B: " + hoplite_why);                                                                      \
    }                                                                                                       \
  } while (0)

ObjectID input_id(const std::string& tag, int rank) {
  return ObjectID::from_name("collectives/" + tag + "/in/" + std::to_string(rank));
}
ObjectID target_id(const std::string& tag) {
  return ObjectID::from_name("collectives/" + tag + "/out");
}

std::vector<ObjectID> input_ids(const std::string& tag, const std::vector<int>& ranks) {
  std::vector<ObjectID> ids;
  for (int r : ranks) ids.push_back(input_id(tag, r));
  return ids;
}

std::vector<int> all_ranks(int n) {
  std::vector<int> r(n);
  for (int i = 0; i < n; ++i) r[i] = i;
  return r;
}

// The ranks whose inputs `used` names, or an empty vector if one is not an
// input of `tag` among `candidates` or appears twice.
std::vector<int> ranks_of(const std::vector<ObjectID>& used, const std::string& tag,
                          const std::vector<int>& candidates) {
  std::vector<int> out;
  for (const auto& id : used) {
    auto it =
        std::find_if(candidates.begin(), candidates.end(), [&](int r) { return input_id(tag, r) == id; });
    if (it == candidates.end() || std::count(out.begin(), out.end(), *it) > 0) return {};
    out.push_back(*it);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Appends piece by piece: GCC 12's -Wrestrict misfires on "{" + s + "}".
std::string join(const std::vector<int>& v) {
  std::string s = "{";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(v[i]);
  }
  s += '}';
  return s;
}

// Rank 0 tells the others which inputs a k-of-n reduce used, as an object.
ObjectID used_id(const std::string& tag) {
  return ObjectID::from_name("collectives/" + tag + "/used");
}

Status put_used(Node& node, const std::string& tag, const std::vector<int>& ranks) {
  std::vector<std::int32_t> v(ranks.begin(), ranks.end());
  return node.put(used_id(tag), v.data(), v.size() * sizeof(std::int32_t));
}

Result<std::vector<int>> get_used(Node& node, const std::string& tag) {
  auto view = node.get(used_id(tag)).wait(kWait);
  if (!view.is_ok()) return view.status();
  std::vector<std::int32_t> v(view->size() / sizeof(std::int32_t));
  std::memcpy(v.data(), view->data(), v.size() * sizeof(std::int32_t));
  return std::vector<int>(v.begin(), v.end());
}

struct Case {
  std::string tag;
  ReduceOp op = ReduceOp::kSum;
  DataType dtype = DataType::kFloat32;
  std::uint64_t size = 0;
  std::optional<std::uint32_t> depth;
};

std::string describe(const Case& c) {
  return c.tag + " " + to_string(c.op) + "/" + to_string(c.dtype) + " " + std::to_string(c.size) + " B";
}

ReduceOptions reduce_options(const Case& c, std::vector<ObjectID> inputs) {
  ReduceOptions o;
  o.inputs = std::move(inputs);
  o.target = target_id(c.tag);
  o.op = c.op;
  o.dtype = c.dtype;
  o.depth = c.depth;
  o.timeout = kWait;
  return o;
}

// Every rank puts its input, rank 0 reduces all of them, every rank reads
// the target and checks every element. Runs on every rank of the cluster.
int reduce_and_check(Node& node, const Case& c) {
  const int n = node.world_size();
  CHECK_OK(node.put(input_id(c.tag, node.rank()), make_input(c.size, c.dtype, node.rank())));
  CHECK_OK(node.barrier(kWait));
  if (node.rank() == 0) {
    ASSIGN_OR_FAIL(ReduceResult res, node.reduce(reduce_options(c, input_ids(c.tag, all_ranks(n)))));
    if (ranks_of(res.used, c.tag, all_ranks(n)) != all_ranks(n)) {
      FAIL_BODY(describe(c) + ": used is not every input once");
    }
    if (c.depth && res.depth != *c.depth) {
      FAIL_BODY(describe(c) + ": depth " + std::to_string(res.depth) + ", forced " +
                std::to_string(*c.depth));
    }
  }
  ASSIGN_OR_FAIL(ObjectView view, node.get(target_id(c.tag)).wait(kWait));
  CHECK_REDUCED(view.bytes(), c.size, c.op, c.dtype, all_ranks(n), c.tag);
  CHECK_OK(node.barrier(kWait));
  return 0;
}

// ---------------------------------------------------------- result matrix

// The sizes cross the inline threshold (inline inputs reduce from the
// directory's copy vs the holder's store) and chunk boundaries (a ragged
// last chunk, several chunks in flight).
std::vector<std::uint64_t> matrix_sizes() {
  return {8, kInline - 8, kInline + 8, kChunk * 3 + 8, 4 * kMiB + 8};
}

constexpr int kMatrixRanks[] = {2, 3, 4, 5, 8};

class ReduceMatrixTest : public ::testing::TestWithParam<int> {};

TEST_P(ReduceMatrixTest, EveryOpAndTypeIsByteExact) {
  const int n = GetParam();
  // Ten cases per cluster size, each (op, type) pair taken in turn across
  // the cluster sizes, so the five sizes together cover all 16 pairs, each
  // at two sizes or more, without the full cross product.
  const int base = static_cast<int>(std::find(std::begin(kMatrixRanks), std::end(kMatrixRanks), n) -
                                    std::begin(kMatrixRanks));
  const auto sizes = matrix_sizes();
  std::vector<Case> cases;
  for (int j = 0; j < 10; ++j) {
    const int pair = (base * 10 + j) % 16;
    Case c;
    c.op = kOps[pair % 4];
    c.dtype = kTypes[pair / 4];
    c.size = sizes[j % sizes.size()];
    c.tag = "matrix/n" + std::to_string(n) + "/" + std::to_string(j);
    cases.push_back(c);
  }
  int rc = run_cluster(
      n,
      [&](Node& node) -> int {
        for (const auto& c : cases) RETURN_IF_FAILED(reduce_and_check(node, c));
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

INSTANTIATE_TEST_SUITE_P(Ranks, ReduceMatrixTest, ::testing::ValuesIn(kMatrixRanks), [](const auto& info) {
  std::string name = "n";  // not "n" + ...: see join()
  name += std::to_string(info.param);
  return name;
});

// ------------------------------------------------------------ forced shapes

TEST(ReduceShapeTest, ForcedDepthsAreByteExact) {
  constexpr int kRanks = 8;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        for (std::uint32_t d = 0; d <= 3; ++d) {
          Case c;
          c.tag = "depth/" + std::to_string(d);
          c.op = kOps[d % 4];
          c.dtype = kTypes[(d + 1) % 4];
          c.size = kChunk * 3 + 8;
          c.depth = d;
          RETURN_IF_FAILED(reduce_and_check(node, c));
        }
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// ---------------------------------------------------------------- allreduce

// Every rank reads the target while rank 0's reduce is still running: the
// readers must be served from the partial root output (or the stripes) and
// still end with exact bytes.
TEST(AllreduceTest, EveryRankGetsWhileTheReduceRuns) {
  constexpr int kRanks = 5;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        int round = 0;
        for (bool stripes : {false, true}) {
          // Striping cuts the object into one stripe per holder, 64-byte
          // aligned: 3 chunks + 8 B and 4 MiB + 8 B leave a short last stripe.
          for (std::uint64_t size : {kInline + 8, kChunk * 3 + 8, 4 * kMiB + 8}) {
            Case c;
            c.tag = "allreduce/" + std::to_string(round);
            c.op = kOps[round % 4];
            c.dtype = kTypes[(round + 2) % 4];
            c.size = size;
            ++round;
            CHECK_OK(node.put(input_id(c.tag, node.rank()), make_input(c.size, c.dtype, node.rank())));
            CHECK_OK(node.barrier(kWait));
            std::future<Result<ReduceResult>> fut;
            if (node.rank() == 0) {
              ReduceOptions o = reduce_options(c, input_ids(c.tag, all_ranks(kRanks)));
              o.allow_stripes = stripes;
              fut = node.reduce_async(o);
            }
            ASSIGN_OR_FAIL(ObjectView view, node.get(target_id(c.tag)).wait(kWait));
            CHECK_REDUCED(view.bytes(), c.size, c.op, c.dtype, all_ranks(kRanks), c.tag);
            if (node.rank() == 0) {
              CHECK_TRUE(fut.wait_for(kWait) == std::future_status::ready);
              ASSIGN_OR_FAIL(ReduceResult res, fut.get());
              if (ranks_of(res.used, c.tag, all_ranks(kRanks)) != all_ranks(kRanks)) {
                FAIL_BODY(c.tag + ": used is not every input once");
              }
              if (!stripes) CHECK_FALSE(res.striped);
            }
            CHECK_OK(node.barrier(kWait));
          }
        }
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// ------------------------------------------------ copying while arriving

// A get made with copy_while_arriving copies each run of bytes into the
// caller's buffer as it lands: rank 0 writes half of an object and waits,
// and the readers (one from rank 0, one through the chain) see that half in
// their buffers before the object is complete. A buffer of the wrong size
// is refused without a byte written past it.
TEST(CopyWhileArrivingTest, CopiesWhatLandedBeforeTheObjectIsComplete) {
  constexpr int kRanks = 3;
  const std::uint64_t size = 4 * kMiB + 8;
  const std::uint64_t half = size / 2 - (size / 2) % 8;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        const ObjectID id = ObjectID::from_name("copy-while-arriving");
        const std::vector<std::byte> want = make_input(size, DataType::kInt64, 7);
        if (node.rank() == 0) {
          ASSIGN_OR_FAIL(ObjectWriter w, node.create(id, size));
          std::memcpy(w.data().data(), want.data(), half);
          CHECK_OK(w.publish(half));
          CHECK_OK(node.barrier(kWait));  // the readers saw the first half
          std::memcpy(w.data().data() + half, want.data() + half, size - half);
          CHECK_OK(w.seal());
        } else {
          GetOptions g;
          g.copy_while_arriving = true;
          if (node.rank() == 2) g.after = 1;  // through rank 1's copy while it arrives
          ObjectFuture f = node.get(id, g);
          std::vector<std::byte> out(size, std::byte{0});
          // A copy_to that times out has copied what landed meanwhile.
          const auto deadline = Clock::now() + kWait;
          while (std::memcmp(out.data(), want.data(), half) != 0) {
            if (Clock::now() > deadline) FAIL_BODY("the first half never reached the buffer");
            CHECK_CODE(f.copy_to(out, milliseconds(20)), StatusCode::kTimeout);
          }
          CHECK_OK(node.barrier(kWait));
          CHECK_OK(f.copy_to(out, kWait));
          CHECK_TRUE(out == want);
          // Too small a buffer: refused, and the guard bytes after it stay.
          std::vector<std::byte> small(size + 64, std::byte{0x5a});
          CHECK_CODE(node.get(id, g).copy_to(std::span(small).first(size - 8), kWait),
                     StatusCode::kInvalidArgument);
          for (std::uint64_t i = size - 8; i < small.size(); ++i) CHECK_TRUE(small[i] == std::byte{0x5a});
        }
        CHECK_OK(node.barrier(kWait));
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// ------------------------------------------------ partial inputs

// ReduceOptions::partial_inputs: every rank writes half of its input and
// waits; the reduce (tree-chain and striped) already produces the first
// quarter of the target (striped: a stripe and a bit, the next stripe ends
// past the half), which every rank sees (in its buffer through
// copy_while_arriving, or in its local copy) before any input is sealed.
TEST(ReducePartialInputsTest, StartsOnInputsStillBeingWritten) {
  constexpr int kRanks = 4;
  const std::uint64_t size = 4 * kMiB + 8;
  const std::uint64_t half = size / 2 - (size / 2) % 8;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        for (bool stripes : {false, true}) {
          Case c;
          c.tag = std::string("partial/") + (stripes ? "striped" : "chain");
          c.op = ReduceOp::kSum;
          c.dtype = DataType::kInt64;
          c.size = size;
          const std::vector<std::byte> mine = make_input(size, c.dtype, node.rank());
          ASSIGN_OR_FAIL(ObjectWriter w, node.create(input_id(c.tag, node.rank()), size));
          std::memcpy(w.data().data(), mine.data(), half);
          CHECK_OK(w.publish(half));
          CHECK_OK(node.barrier(kWait));
          std::future<Result<ReduceResult>> fut;
          if (node.rank() == 0) {
            ReduceOptions o = reduce_options(c, input_ids(c.tag, all_ranks(kRanks)));
            o.allow_stripes = stripes;
            o.partial_inputs = true;
            fut = node.reduce_async(o);
          }
          GetOptions g;
          g.copy_while_arriving = true;
          ObjectFuture f = node.get(target_id(c.tag), g);
          std::vector<std::byte> out(size, std::byte{0});
          const auto deadline = Clock::now() + kWait;
          const std::uint64_t quarter = size / 4 - (size / 4) % 8;
          while (!reduce_mismatch(std::span(out).first(quarter), quarter, c.op, c.dtype, all_ranks(kRanks))
                      .empty() &&
                 node.local_progress(target_id(c.tag)) < quarter) {
            if (Clock::now() > deadline)
              FAIL_BODY(c.tag + ": no quarter of the target before the inputs were complete");
            // Times out (the target is not complete), having copied what landed.
            CHECK_CODE(f.copy_to(out, milliseconds(20)), StatusCode::kTimeout);
          }
          CHECK_OK(node.barrier(kWait));
          std::memcpy(w.data().data() + half, mine.data() + half, size - half);
          CHECK_OK(w.seal());
          CHECK_OK(f.copy_to(out, kWait));
          CHECK_REDUCED(std::span<const std::byte>(out), c.size, c.op, c.dtype, all_ranks(kRanks), c.tag);
          if (node.rank() == 0) {
            ASSIGN_OR_FAIL(ReduceResult res, fut.get());
            CHECK_EQ(res.used.size(), static_cast<std::size_t>(kRanks));
            // (Striping is a timing decision: a late locate reply picks the
            // tree-chain, which the test then checks instead.)
            if (!stripes) CHECK_FALSE(res.striped);
          }
          CHECK_OK(node.barrier(kWait));
        }
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// A writer that gives up its object (the ObjectWriter dropped unsealed)
// while a partial_inputs reduce reads it: the reduce fails with an error
// naming what went wrong (or its timeout, when a restart got there first),
// nobody hangs, and the same ranks then reduce again.
TEST(ReducePartialInputsTest, AnAbortedInputFailsTheReduce) {
  constexpr int kRanks = 3;
  const std::uint64_t size = 2 * kMiB;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        Case c;
        c.tag = "partial/aborted";
        c.op = ReduceOp::kSum;
        c.dtype = DataType::kInt32;
        c.size = size;
        const std::vector<std::byte> mine = make_input(size, c.dtype, node.rank());
        {
          ASSIGN_OR_FAIL(ObjectWriter w, node.create(input_id(c.tag, node.rank()), size));
          std::memcpy(w.data().data(), mine.data(), size / 2);
          CHECK_OK(w.publish(size / 2));
          CHECK_OK(node.barrier(kWait));
          std::future<Result<ReduceResult>> fut;
          if (node.rank() == 0) {
            ReduceOptions o = reduce_options(c, input_ids(c.tag, all_ranks(kRanks)));
            o.partial_inputs = true;
            o.timeout = milliseconds(5000);
            fut = node.reduce_async(o);
          }
          CHECK_OK(node.barrier(kWait));
          if (node.rank() != 2) {
            std::memcpy(w.data().data() + size / 2, mine.data() + size / 2, size / 2);
            CHECK_OK(w.seal());
          }
          // Rank 2's writer goes here, unsealed.
          if (node.rank() == 0) {
            CHECK_TRUE(fut.wait_for(milliseconds(15000)) == std::future_status::ready);
            auto res = fut.get();
            CHECK_FALSE(res.is_ok());
            std::fprintf(stderr, "[rank 0] the reduce failed: %s\n", res.status().to_string().c_str());
          }
        }
        CHECK_OK(node.barrier(kWait));
        // The cluster still reduces.
        c.tag = "partial/after";
        CHECK_OK(node.put(input_id(c.tag, node.rank()), make_input(size, c.dtype, node.rank())));
        CHECK_OK(node.barrier(kWait));
        if (node.rank() == 0) {
          ReduceOptions o = reduce_options(c, input_ids(c.tag, all_ranks(kRanks)));
          o.partial_inputs = true;
          ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
          CHECK_EQ(res.used.size(), static_cast<std::size_t>(kRanks));
        }
        ASSIGN_OR_FAIL(ObjectView v, node.get(target_id(c.tag)).wait(kWait));
        CHECK_REDUCED(v.bytes(), c.size, c.op, c.dtype, all_ranks(kRanks), c.tag);
        CHECK_OK(node.barrier(kWait));
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// ------------------------------------------------ refused locates

// One rank runs more reduces of one input that does not exist yet than the
// input's shard parks locates for (DirectoryShard::kMaxLocatesPerObject):
// the one past the limit fails at once with kCapacity saying so, instead of
// at its deadline, and the others complete once the input is put.
TEST(ReduceRefusedLocateTest, ThePastTheLimitReduceFailsAtOnce) {
  constexpr int kRanks = 2;
  constexpr int kReduces = 65;  // kMaxLocatesPerObject + 1
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        Case c;
        c.tag = "refused/input";
        c.op = ReduceOp::kSum;
        c.dtype = DataType::kInt32;
        c.size = 4096;
        const ObjectID input = input_id(c.tag, 1);
        if (node.rank() == 0) {
          std::vector<std::future<Result<ReduceResult>>> futs;
          for (int i = 0; i < kReduces; ++i) {
            ReduceOptions o = reduce_options(c, {input});
            o.target = target_id(c.tag + "/" + std::to_string(i));
            o.timeout = milliseconds(30000);
            futs.push_back(node.reduce_async(o));
          }
          // The refused one ends within a few round trips; the rest wait.
          const auto deadline = Clock::now() + milliseconds(10000);
          int failed = -1;
          while (failed < 0 && Clock::now() < deadline) {
            for (int i = 0; i < kReduces && failed < 0; ++i) {
              if (futs[i].wait_for(milliseconds(0)) == std::future_status::ready) failed = i;
            }
            std::this_thread::sleep_for(milliseconds(5));
          }
          CHECK_TRUE(failed >= 0);
          auto res = futs[failed].get();
          CHECK_CODE(res, StatusCode::kCapacity);
          CHECK_TRUE(res.status().message().find("refused to locate input") != std::string::npos);
          CHECK_OK(node.barrier(kWait));  // rank 1 puts the input now
          for (int i = 0; i < kReduces; ++i) {
            if (i == failed) continue;
            ASSIGN_OR_FAIL(ReduceResult r, futs[i].get());
            CHECK_EQ(r.used.size(), std::size_t{1});
          }
        } else {
          CHECK_OK(node.barrier(kWait));
          CHECK_OK(node.put(input, make_input(c.size, c.dtype, 1)));
        }
        CHECK_OK(node.barrier(kWait));
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// ------------------------------------------------ Collectives

// Large allreduces leave their objects for the next call's opening barrier
// instead of closing with one of their own; mixed with calls that do close
// with a barrier, every result is exact and flush() leaves every store empty.
TEST(CollectivesTest, DeferredRemovalsLeaveNothingBehind) {
  constexpr int kRanks = 4;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        Collectives coll(node, "itest/coll");
        const int me = node.rank();
        auto check_allreduce = [&](std::size_t count, int round) -> int {
          std::vector<float> v(count, static_cast<float>(me + round));
          CHECK_OK(coll.allreduce(std::as_bytes(std::span(v)), std::as_writable_bytes(std::span(v)),
                                  ReduceOp::kSum, DataType::kFloat32));
          const float want = static_cast<float>(kRanks * round + kRanks * (kRanks - 1) / 2);
          for (std::size_t i = 0; i < count; i += 4097) CHECK_EQ(v[i], want);
          CHECK_EQ(v.back(), want);
          return 0;
        };
        const std::size_t large = (2 * kMiB) / 4 + 3, small = 1000;
        RETURN_IF_FAILED(check_allreduce(large, 1));
        RETURN_IF_FAILED(check_allreduce(large, 2));
        std::vector<std::byte> b(3 * kMiB + 5, std::byte{0});
        if (me == 1) b = make_input(b.size(), DataType::kInt32, 9);
        CHECK_OK(coll.broadcast(b, 1));
        CHECK_TRUE(b == make_input(b.size(), DataType::kInt32, 9));
        RETURN_IF_FAILED(check_allreduce(large, 3));
        RETURN_IF_FAILED(check_allreduce(small, 4));
        RETURN_IF_FAILED(check_allreduce(large, 5));
        CHECK_OK(coll.flush());
        // Every rank's removals are done once this opens; the Deletes they
        // sent to the holders of copies may still be on their way.
        CHECK_OK(node.barrier(kWait));
        const auto deadline = Clock::now() + milliseconds(5000);
        while (node.stats().objects != 0 && Clock::now() < deadline)
          std::this_thread::sleep_for(milliseconds(5));
        CHECK_EQ(node.stats().objects, std::uint64_t{0});
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// ------------------------------------------------------ random arrivals

std::uint64_t mix(std::uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Inputs become complete in a seed-dependent order and at seed-dependent
// times (streaming puts sealed after a delay), so arrival order, and with it
// the position each input takes in the tree-chain, differs per seed.
class ReducePropertyTest : public ::testing::TestWithParam<int> {};

TEST_P(ReducePropertyTest, RandomArrivalOrdersAreByteExact) {
  const int kRanks = GetParam();
  constexpr std::uint64_t kSeeds[] = {1, 2, 3, 4, 5, 6, 7, 8};
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        for (std::uint64_t seed : kSeeds) {
          Case c;
          c.tag = "random/n" + std::to_string(kRanks) + "/" + std::to_string(seed);
          c.op = kOps[seed % 4];
          c.dtype = kTypes[(seed / 2) % 4];
          const std::uint64_t sizes[] = {8, kInline + 8, kChunk * 2 + 8, kChunk + 8};
          c.size = sizes[seed % 4];
          const auto delay = milliseconds(mix(seed * 1000 + node.rank()) % 51);

          ASSIGN_OR_FAIL(ObjectWriter writer, node.create(input_id(c.tag, node.rank()), c.size));
          fill_input(writer.data(), c.dtype, node.rank());
          CHECK_OK(node.barrier(kWait));
          std::future<Result<ReduceResult>> fut;
          if (node.rank() == 0) {
            // Started before rank 0's own input exists: the coordinator must
            // wait for it like for any other.
            fut = node.reduce_async(reduce_options(c, input_ids(c.tag, all_ranks(kRanks))));
          }
          std::this_thread::sleep_for(delay);
          CHECK_OK(writer.seal());
          if (node.rank() == 0) {
            CHECK_TRUE(fut.wait_for(kWait) == std::future_status::ready);
            ASSIGN_OR_FAIL(ReduceResult res, fut.get());
            CHECK_EQ(res.used.size(), static_cast<std::size_t>(kRanks));
            if (ranks_of(res.used, c.tag, all_ranks(kRanks)) != all_ranks(kRanks)) {
              FAIL_BODY(c.tag + ": used is not every input once");
            }
          }
          ASSIGN_OR_FAIL(ObjectView view, node.get(target_id(c.tag)).wait(kWait));
          CHECK_REDUCED(view.bytes(), c.size, c.op, c.dtype, all_ranks(kRanks), c.tag);
          CHECK_OK(node.barrier(kWait));
        }
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

INSTANTIATE_TEST_SUITE_P(Ranks, ReducePropertyTest, ::testing::Values(5, 8), [](const auto& info) {
  std::string name = "n";  // not "n" + ...: see join()
  name += std::to_string(info.param);
  return name;
});

// ------------------------------------------------------------------ k of n

TEST(ReduceKOfNTest, StragglersAreLeftOut) {
  constexpr int kRanks = 6;
  constexpr milliseconds kStraggle{1500};
  const std::vector<int> early = {0, 1, 2};
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        Case c;
        c.tag = "kofn/late";
        c.op = ReduceOp::kSum;
        c.dtype = DataType::kInt64;
        c.size = kChunk * 2 + 8;
        ObjectWriter late;
        if (node.rank() >= 3) {
          ASSIGN_OR_FAIL(late, node.create(input_id(c.tag, node.rank()), c.size));
          fill_input(late.data(), c.dtype, node.rank());
        }
        CHECK_OK(node.barrier(kWait));
        const auto start = Clock::now();
        if (node.rank() < 3) {
          CHECK_OK(node.put(input_id(c.tag, node.rank()), make_input(c.size, c.dtype, node.rank())));
        }
        if (node.rank() == 0) {
          ReduceOptions o = reduce_options(c, input_ids(c.tag, all_ranks(kRanks)));
          o.k = 3;
          ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
          CHECK_EQ(res.used.size(), 3u);
          const std::vector<int> used = ranks_of(res.used, c.tag, all_ranks(kRanks));
          if (used != early) FAIL_BODY("used " + join(used) + ", want {0,1,2}");
          CHECK_OK(put_used(node, c.tag, used));
        }
        if (node.rank() >= 3) {
          std::this_thread::sleep_until(start + kStraggle);
          CHECK_OK(late.seal());
        }
        ASSIGN_OR_FAIL(std::vector<int> used, get_used(node, c.tag));
        if (used != early) FAIL_BODY("rank 0 shared used " + join(used));
        ASSIGN_OR_FAIL(ObjectView view, node.get(target_id(c.tag)).wait(kWait));
        CHECK_REDUCED(view.bytes(), c.size, c.op, c.dtype, used, c.tag);
        CHECK_OK(node.barrier(kWait));
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// Inputs the directory holds inline come to the coordinator with their
// locations and are folded there: no task runs anywhere, the first k still
// win, and a forced depth still gets the tree-chain it asked for.
TEST(ReduceInlineTest, SmallInputsFoldAtTheCoordinator) {
  constexpr int kRanks = 4;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        Case c;
        c.tag = "inline/kofn";
        c.op = ReduceOp::kMax;
        c.dtype = DataType::kInt32;
        c.size = 1024;
        ObjectWriter late;
        if (node.rank() == 3) {
          ASSIGN_OR_FAIL(late, node.create(input_id(c.tag, 3), c.size));
          fill_input(late.data(), c.dtype, 3);
        } else {
          CHECK_OK(node.put(input_id(c.tag, node.rank()), make_input(c.size, c.dtype, node.rank())));
        }
        CHECK_OK(node.barrier(kWait));
        if (node.rank() == 1) {
          ReduceOptions o = reduce_options(c, input_ids(c.tag, all_ranks(kRanks)));
          o.k = 3;
          ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
          const std::vector<int> used = ranks_of(res.used, c.tag, all_ranks(kRanks));
          if (used != std::vector<int>{0, 1, 2}) FAIL_BODY("used " + join(used) + ", want {0,1,2}");
          CHECK_EQ(res.recomputed, 0u);
        }
        CHECK_OK(node.barrier(kWait));
        if (node.rank() == 3) CHECK_OK(late.seal());
        ASSIGN_OR_FAIL(ObjectView view, node.get(target_id(c.tag)).wait(kWait));
        CHECK_REDUCED(view.bytes(), c.size, c.op, c.dtype, (std::vector<int>{0, 1, 2}), c.tag);
        CHECK_EQ(node.stats().reduce_tasks, 0u);
        CHECK_OK(node.barrier(kWait));

        // The same inputs with a forced shape: tasks on the holders.
        Case forced = c;
        forced.tag = "inline/forced";
        forced.depth = 1;
        RETURN_IF_FAILED(reduce_and_check(node, forced));
        CHECK_OK(put_used(node, "inline/tasks/" + std::to_string(node.rank()),
                          {static_cast<int>(node.stats().reduce_tasks)}));
        if (node.rank() == 0) {
          int tasks = 0;
          for (int r = 0; r < kRanks; ++r) {
            ASSIGN_OR_FAIL(std::vector<int> t, get_used(node, "inline/tasks/" + std::to_string(r)));
            tasks += t.at(0);
          }
          CHECK_TRUE(tasks > 0);
        }
        CHECK_OK(node.barrier(kWait));
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// Allgather in ring order: with its predecessor as `after`, every rank
// reads every object from that predecessor, whatever order the lookups
// reach the shards in; objects large enough to stream in chunks.
TEST(AllgatherTest, RingOrderReadsEveryObjectFromThePredecessor) {
  constexpr int kRanks = 5;
  const std::uint64_t size = kChunk * 3 + 8;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        const int me = node.rank();
        auto id = [](int r) { return input_id("allgather/ring", r); };
        ASSIGN_OR_FAIL(ObjectWriter w, node.create(id(me), size));
        fill_input(w.data(), DataType::kInt32, me);
        CHECK_OK(node.barrier(kWait));
        CHECK_OK(w.seal());
        GetOptions ring;
        ring.after = (me + kRanks - 1) % kRanks;
        std::vector<ObjectFuture> fs;
        for (int r = kRanks - 1; r >= 0; --r) fs.push_back(node.get(id(r), ring));
        for (int i = 0; i < kRanks; ++i) {
          const int r = kRanks - 1 - i;
          ASSIGN_OR_FAIL(ObjectView v, fs[static_cast<std::size_t>(i)].wait(kWait));
          CHECK_REDUCED(v.bytes(), size, ReduceOp::kSum, DataType::kInt32, (std::vector<int>{r}),
                        "allgather");
          if (r != me) CHECK_EQ(v.source(), ring.after);
        }
        CHECK_OK(node.barrier(kWait));
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// seal_async: the caller does not wait for the directory, yet a reduce it
// starts at once and gets elsewhere see the input; once the future is
// ready, a must_exist get anywhere finds it too.
TEST(SealAsyncTest, AReduceStartedAtOnceSeesTheInput) {
  constexpr int kRanks = 3;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        Case c;
        c.tag = "sealasync";
        c.size = 4096;
        ASSIGN_OR_FAIL(ObjectWriter w, node.create(input_id(c.tag, node.rank()), c.size));
        fill_input(w.data(), c.dtype, node.rank());
        CHECK_OK(node.barrier(kWait));
        std::future<Status> sealed = w.seal_async();
        if (node.rank() == 0) {
          ASSIGN_OR_FAIL(ReduceResult res,
                         node.reduce(reduce_options(c, input_ids(c.tag, all_ranks(kRanks)))));
          CHECK_EQ(res.used.size(), static_cast<std::size_t>(kRanks));
        }
        ASSIGN_OR_FAIL(ObjectView view, node.get(target_id(c.tag)).wait(kWait));
        CHECK_REDUCED(view.bytes(), c.size, c.op, c.dtype, all_ranks(kRanks), c.tag);
        CHECK_OK(sealed.get());
        CHECK_OK(node.barrier(kWait));
        GetOptions exists;
        exists.must_exist = true;
        for (int r = 0; r < kRanks; ++r) {
          ASSIGN_OR_FAIL(ObjectView v, node.get(input_id(c.tag, r), exists).wait(kWait));
          CHECK_EQ(v.size(), c.size);
        }
        // An empty writer says so through its future.
        ObjectWriter empty;
        CHECK_EQ(empty.seal_async().get().code(), StatusCode::kInvalidArgument);
        CHECK_OK(node.barrier(kWait));
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

TEST(ReduceKOfNTest, FirstKOfAllPresentInputs) {
  constexpr int kRanks = 6;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        int round = 0;
        for (std::uint64_t size : {std::uint64_t{8}, kInline + 8, kChunk * 3 + 8}) {
          Case c;
          c.tag = "kofn/all/" + std::to_string(round);
          c.op = kOps[(round + 1) % 4];
          c.dtype = kTypes[(round + 3) % 4];
          c.size = size;
          ++round;
          CHECK_OK(node.put(input_id(c.tag, node.rank()), make_input(c.size, c.dtype, node.rank())));
          CHECK_OK(node.barrier(kWait));
          if (node.rank() == 0) {
            ReduceOptions o = reduce_options(c, input_ids(c.tag, all_ranks(kRanks)));
            o.k = 4;
            ASSIGN_OR_FAIL(ReduceResult res, node.reduce(o));
            CHECK_EQ(res.used.size(), 4u);
            const std::vector<int> used = ranks_of(res.used, c.tag, all_ranks(kRanks));
            if (used.size() != 4) FAIL_BODY("used names an unknown or repeated input");
            CHECK_OK(put_used(node, c.tag, used));
          }
          ASSIGN_OR_FAIL(std::vector<int> used, get_used(node, c.tag));
          ASSIGN_OR_FAIL(ObjectView view, node.get(target_id(c.tag)).wait(kWait));
          CHECK_REDUCED(view.bytes(), c.size, c.op, c.dtype, used, c.tag + " used " + join(used));
          CHECK_OK(node.barrier(kWait));
        }
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// ----------------------------------------------------- concurrent reduces

struct Pair {
  Case a, b;
  std::vector<int> a_ranks, b_ranks;
  int a_coordinator = 0, b_coordinator = 1;
};

// Both reduces of each pair start at once and run side by side; every rank
// then checks both targets. Both reduces of a pair read the same input
// objects (tagged with a's tag), so where the rank sets overlap, the shared
// inputs feed both trees at the same time.
int run_pairs(Node& node, const std::vector<Pair>& pairs, milliseconds wait) {
  const int me = node.rank();
  for (const auto& p : pairs) {
    const std::string in_tag = p.a.tag;
    const bool in_a = std::count(p.a_ranks.begin(), p.a_ranks.end(), me) > 0;
    const bool in_b = std::count(p.b_ranks.begin(), p.b_ranks.end(), me) > 0;
    if (in_a || in_b) {
      CHECK_OK(node.put(input_id(in_tag, me), make_input(p.a.size, p.a.dtype, me)));
    }
    CHECK_OK(node.barrier(kWait));
    std::vector<std::pair<std::string, std::future<Result<ReduceResult>>>> futs;
    if (me == p.a_coordinator) {
      ReduceOptions o = reduce_options(p.a, input_ids(in_tag, p.a_ranks));
      o.timeout = wait;
      futs.emplace_back(p.a.tag, node.reduce_async(o));
    }
    if (me == p.b_coordinator) {
      ReduceOptions o = reduce_options(p.b, input_ids(in_tag, p.b_ranks));
      o.timeout = wait;
      futs.emplace_back(p.b.tag, node.reduce_async(o));
    }
    for (auto& [tag, f] : futs) {
      if (f.wait_for(wait) != std::future_status::ready) {
        FAIL_BODY(tag + ": reduce not done after " + std::to_string(wait.count()) + " ms");
      }
      const Status st = status_of(f.get());
      if (!st.is_ok()) FAIL_BODY(tag + ": " + st.to_string());
    }
    for (const Case* c : {&p.a, &p.b}) {
      auto view = node.get(target_id(c->tag)).wait(wait);
      if (!view.is_ok()) FAIL_BODY(c->tag + ": " + view.status().to_string());
      CHECK_REDUCED(view->bytes(), c->size, c->op, c->dtype, c == &p.a ? p.a_ranks : p.b_ranks, c->tag);
    }
    CHECK_OK(node.barrier(kWait));
  }
  return 0;
}

TEST(ReduceConcurrencyTest, TwoReducesInFlight) {
  constexpr int kRanks = 6;
  std::vector<Pair> pairs;
  {
    // Overlapping in one input, different coordinators. (One shared input
    // only: with two, a holder can be asked to pull the same upstream for
    // both reduces; see SameUpstreamForTwoTasksOnOneNode.)
    Pair p;
    p.a = {"pair/0/a", ReduceOp::kSum, DataType::kInt32, kChunk * 3 + 8, {}};
    p.b = {"pair/0/b", ReduceOp::kMax, DataType::kInt32, kChunk * 3 + 8, {}};
    p.a_ranks = {0, 1, 2};
    p.b_ranks = {2, 3, 4, 5};
    pairs.push_back(p);
  }
  {
    Pair p;  // disjoint inputs, different coordinators
    p.a = {"pair/1/a", ReduceOp::kProd, DataType::kFloat64, 4 * kMiB + 8, {}};
    p.b = {"pair/1/b", ReduceOp::kMin, DataType::kFloat64, 4 * kMiB + 8, {}};
    p.a_ranks = {0, 1, 2};
    p.b_ranks = {3, 4, 5};
    pairs.push_back(p);
  }
  {
    Pair p;  // disjoint inputs, one coordinator for both
    p.a = {"pair/2/a", ReduceOp::kSum, DataType::kFloat32, kInline + 8, {}};
    p.b = {"pair/2/b", ReduceOp::kProd, DataType::kFloat32, kInline + 8, {}};
    p.a_ranks = {0, 1, 4};
    p.b_ranks = {2, 3, 5};
    p.b_coordinator = 0;
    pairs.push_back(p);
  }
  int rc = run_cluster(
      kRanks, [&](Node& node) -> int { return run_pairs(node, pairs, kWait); }, cluster_options());
  EXPECT_EQ(rc, 0);
}

// Two reduces over the same two inputs, both coordinated by rank 0: rank 0
// keeps its own input for the root of each, so both root tasks run on rank 0
// and both pull rank 1's input at the same time. Each task must get that
// upstream's progress; a node that tracks pulls by object id alone gives it
// to one task and starves the other.
TEST(ReduceConcurrencyTest, SameUpstreamForTwoTasksOnOneNode) {
  std::vector<Pair> pairs;
  for (int round = 0; round < 3; ++round) {
    Pair p;
    const std::string tag = "same-upstream/" + std::to_string(round);
    p.a = {tag + "/a", ReduceOp::kSum, DataType::kInt64, 4 * kMiB + 8, {}};
    p.b = {tag + "/b", ReduceOp::kMax, DataType::kInt64, 4 * kMiB + 8, {}};
    p.a_ranks = {0, 1};
    p.b_ranks = {0, 1};
    p.b_coordinator = 0;
    pairs.push_back(p);
  }
  // A healthy pair takes milliseconds; waiting for kWait would only slow
  // down the failure.
  int rc = run_cluster(
      2, [&](Node& node) -> int { return run_pairs(node, pairs, milliseconds(5000)); }, cluster_options());
  EXPECT_EQ(rc, 0);
}

// --------------------------------------------------- late broadcast reader

// Rank 0 streams a 32 MiB object; rank 1 reads from the start, rank 2 a
// little later, rank 3 only once rank 1 holds more than half. Rank 0 keeps
// the last quarter back until rank 3 has asked, so rank 3 provably joins a
// broadcast that is still running.
TEST(LateReceiverTest, ReceiverArrivesMidBroadcast) {
  constexpr int kRanks = 4;
  constexpr std::uint64_t kSize = 32 * kMiB;
  constexpr std::uint64_t kStep = kMiB;
  constexpr std::uint64_t kSeed = 4242;
  const ObjectID id = ObjectID::from_name("collectives/midcast");
  const ObjectID half = ObjectID::from_name("collectives/midcast/rank1-past-half");
  const ObjectID asked = ObjectID::from_name("collectives/midcast/rank3-asked");
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        CHECK_OK(node.barrier(kWait));
        const std::byte flag{1};
        switch (node.rank()) {
          case 0: {
            ASSIGN_OR_FAIL(ObjectWriter w, node.create(id, kSize));
            fill_pattern(w.data(), kSeed);
            std::uint64_t published = 0;
            while (published < kSize * 3 / 4) {
              published += kStep;
              CHECK_OK(w.publish(published));
              std::this_thread::sleep_for(milliseconds(10));
            }
            CHECK_OK(node.get(asked).wait(kWait));
            while (published < kSize) {
              published += kStep;
              CHECK_OK(w.publish(published));
              std::this_thread::sleep_for(milliseconds(10));
            }
            CHECK_OK(w.seal());
            break;
          }
          case 1: {
            ObjectFuture f = node.get(id);
            CHECK_TRUE(wait_until([&] { return node.local_progress(id) > kSize / 2; }, kWait));
            CHECK_OK(node.put(half, &flag, 1));
            ASSIGN_OR_FAIL(ObjectView v, f.wait(kWait));
            CHECK_PATTERN(v.bytes(), kSize, kSeed);
            break;
          }
          case 2: {
            std::this_thread::sleep_for(milliseconds(60));
            ASSIGN_OR_FAIL(ObjectView v, node.get(id).wait(kWait));
            CHECK_PATTERN(v.bytes(), kSize, kSeed);
            break;
          }
          case 3: {
            CHECK_OK(node.get(half).wait(kWait));
            ObjectFuture f = node.get(id);
            CHECK_OK(node.put(asked, &flag, 1));
            ASSIGN_OR_FAIL(ObjectView v, f.wait(kWait));
            CHECK_PATTERN(v.bytes(), kSize, kSeed);
            break;
          }
        }
        CHECK_OK(node.barrier(kWait));
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

// ---------------------------------------------------------------- bad input

// A reduce that must fail, then a healthy one on the same cluster: an error
// must not leave the coordinator or the holders in a state that breaks the
// next reduce.
TEST(ReduceErrorTest, BadArgumentsFailAndTheClusterRecovers) {
  constexpr int kRanks = 3;
  int rc = run_cluster(
      kRanks,
      [&](Node& node) -> int {
        const int me = node.rank();
        int healthy = 0;
        auto recover = [&]() -> int {
          Case c;
          c.tag = "errors/healthy/" + std::to_string(healthy);
          c.op = kOps[healthy % 4];
          c.dtype = kTypes[healthy % 4];
          c.size = healthy % 2 == 0 ? kInline + 8 : kChunk + 8;
          ++healthy;
          return reduce_and_check(node, c);
        };
        auto expect_code = [&](const ReduceOptions& o, StatusCode want, const std::string& what) -> int {
          if (me != 0) return 0;
          auto r = node.reduce(o);
          if (r.is_ok() || r.status().code() != want) {
            FAIL_BODY(what + ": want " + printable(want) + ", got " +
                      (r.is_ok() ? std::string("ok") : r.status().to_string()));
          }
          return 0;
        };
        auto opts = [&](std::vector<ObjectID> inputs, DataType t, const std::string& tag) {
          ReduceOptions o;
          o.inputs = std::move(inputs);
          o.target = target_id(tag);
          o.dtype = t;
          o.timeout = kWait;
          return o;
        };
        const ObjectID a = ObjectID::from_name("errors/a");
        const ObjectID b = ObjectID::from_name("errors/b");
        const ObjectID odd_a = ObjectID::from_name("errors/odd_a");
        const ObjectID odd_b = ObjectID::from_name("errors/odd_b");
        const ObjectID half_a = ObjectID::from_name("errors/half_a");
        const ObjectID half_b = ObjectID::from_name("errors/half_b");
        const ObjectID big_a = ObjectID::from_name("errors/big_a");
        const ObjectID big_b = ObjectID::from_name("errors/big_b");
        if (me == 0) {
          CHECK_OK(node.put(a, std::vector<std::byte>(1024)));
          CHECK_OK(node.put(odd_a, std::vector<std::byte>(1022)));
          CHECK_OK(node.put(half_a, std::vector<std::byte>(1028)));
          CHECK_OK(node.put(big_a, std::vector<std::byte>(kChunk * 2)));
        }
        if (me == 1) {
          CHECK_OK(node.put(b, std::vector<std::byte>(2048)));
          CHECK_OK(node.put(odd_b, std::vector<std::byte>(1022)));
          CHECK_OK(node.put(half_b, std::vector<std::byte>(1028)));
          CHECK_OK(node.put(big_b, std::vector<std::byte>(kChunk * 2 + 64)));
        }
        CHECK_OK(node.barrier(kWait));

        RETURN_IF_FAILED(expect_code(opts({a, b}, DataType::kFloat32, "errors/t1"),
                                     StatusCode::kInvalidArgument, "sizes 1024 and 2048"));
        RETURN_IF_FAILED(recover());
        RETURN_IF_FAILED(expect_code(opts({big_a, big_b}, DataType::kInt32, "errors/t2"),
                                     StatusCode::kInvalidArgument, "large inputs, sizes differ"));
        RETURN_IF_FAILED(recover());
        {
          // The striped path checks sizes on its own.
          ReduceOptions o = opts({big_a, big_b}, DataType::kInt32, "errors/t2s");
          o.allow_stripes = true;
          RETURN_IF_FAILED(expect_code(o, StatusCode::kInvalidArgument, "striped, sizes differ"));
        }
        RETURN_IF_FAILED(recover());
        RETURN_IF_FAILED(expect_code(opts({odd_a, odd_b}, DataType::kFloat32, "errors/t3"),
                                     StatusCode::kInvalidArgument, "1022 B of float"));
        RETURN_IF_FAILED(recover());
        RETURN_IF_FAILED(expect_code(opts({half_a, half_b}, DataType::kInt64, "errors/t4"),
                                     StatusCode::kInvalidArgument, "1028 B of int64"));
        RETURN_IF_FAILED(recover());
        RETURN_IF_FAILED(expect_code(opts({a, a}, DataType::kFloat32, "errors/t5"),
                                     StatusCode::kInvalidArgument, "duplicate inputs"));
        RETURN_IF_FAILED(expect_code(opts({a, b, a}, DataType::kFloat32, "errors/t6"),
                                     StatusCode::kInvalidArgument, "duplicate inputs, apart"));
        {
          ReduceOptions o = opts({a, odd_a}, DataType::kFloat32, "errors/t7");
          o.target = a;
          RETURN_IF_FAILED(expect_code(o, StatusCode::kInvalidArgument, "target is one of the inputs"));
        }
        RETURN_IF_FAILED(expect_code(opts({}, DataType::kFloat32, "errors/t8"), StatusCode::kInvalidArgument,
                                     "no inputs"));
        RETURN_IF_FAILED(recover());
        {
          ReduceOptions o = opts({a, odd_a}, DataType::kFloat32, "errors/t9");
          o.k = 3;
          RETURN_IF_FAILED(expect_code(o, StatusCode::kInvalidArgument, "k = 3 of 2"));
        }
        RETURN_IF_FAILED(recover());
        for (bool one_exists : {false, true}) {
          ReduceOptions o = opts(
              {ObjectID::from_name("errors/ghost/0"), one_exists ? a : ObjectID::from_name("errors/ghost/1")},
              DataType::kFloat32, "errors/t10/" + std::to_string(one_exists));
          o.timeout = milliseconds(500);
          if (me == 0) {
            const auto start = Clock::now();
            RETURN_IF_FAILED(expect_code(o, StatusCode::kTimeout, "inputs never appear"));
            const auto took = Clock::now() - start;
            CHECK_TRUE(took >= milliseconds(500));
            CHECK_TRUE(took < milliseconds(5000));
          }
          RETURN_IF_FAILED(recover());
        }
        return 0;
      },
      cluster_options());
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace hoplite::itest
