// Reduce: the operations, element types and options of reduce/allreduce.
//
// reduce() combines the first k of n input objects to become complete
// (k = n by default), wherever they are, into a target object any node can
// get. The schedule is a tree-chain built at run time in arrival order (see
// docs/architecture.md). Every input must have the same size, a multiple of
// the element size.
//
// Thread-safety: value types.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite {

enum class ReduceOp : std::uint8_t { kSum = 0, kProd = 1, kMin = 2, kMax = 3 };
// bfloat16 and float16 are folded in float and rounded back to nearest
// even after every step (as torch's CPU kernels do).
enum class DataType : std::uint8_t {
  kFloat32 = 0,
  kFloat64 = 1,
  kInt32 = 2,
  kInt64 = 3,
  kBFloat16 = 4,
  kFloat16 = 5,
};

std::size_t element_size(DataType t);
const char* to_string(ReduceOp op);
const char* to_string(DataType t);
[[nodiscard]] Result<ReduceOp> parse_reduce_op(const std::string& s);
[[nodiscard]] Result<DataType> parse_data_type(const std::string& s);

struct ReduceOptions {
  std::vector<ObjectID> inputs;
  ObjectID target;
  ReduceOp op = ReduceOp::kSum;
  DataType dtype = DataType::kFloat32;
  // Use the first k inputs to arrive; 0 means all of them.
  std::size_t k = 0;
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  // Force the tree depth (0 = chain); unset: chosen from size, bandwidth and
  // latency.
  std::optional<std::uint32_t> depth;
  // For an allreduce (every input holder will read the target): when all
  // inputs already exist and the object is large, stripe it so that each
  // holder reduces one stripe and the target becomes the composite of the
  // stripes, which readers fetch around the ring of holders.
  bool allow_stripes = false;
  // Start on inputs that are still being written (streaming puts through
  // Node::create, other reduces' targets) instead of waiting until each is
  // complete: the reduce pulls their bytes as their writers publish them.
  // Only for a reduce of every input (k = 0 or the count of inputs), where
  // the order in which inputs arrive changes nothing but the plan's shape.
  bool partial_inputs = false;
};

struct ReduceResult {
  // The inputs the target combines, in arrival order.
  std::vector<ObjectID> used;
  std::uint32_t depth = 0;
  bool striped = false;
  // What failures cost: tree-chain tasks issued again because a participant
  // below them died (0 without failures, or when a dead participant's part
  // was already folded into a complete result), and whole restarts (a
  // striped attempt that cannot be repaired starts over).
  std::uint32_t recomputed = 0;
  std::uint32_t restarts = 0;
  // Striped only, over every repair: stripes kept as they were when a
  // holder died (done on a live holder), and stripes computed again.
  std::uint32_t stripes_kept = 0;
  std::uint32_t stripes_redone = 0;
};

}  // namespace hoplite
