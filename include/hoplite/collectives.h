// Collectives: MPI-style collective calls over a Node, for callers that hold
// buffers rather than ObjectIDs (the C ABI, the Python module, the torch
// backend).
//
// Every rank of the cluster makes the same calls in the same order, as with
// MPI: call i names its objects after this instance's prefix and i, so
// ranks agree on them without talking. Underneath, each call is what a task
// runtime would do with the node: inputs are put, the result is a reduce
// target or a broadcast object that everyone gets, so it is chunk-pipelined
// and survives the death of a participant like any get or reduce. A call
// ends with a barrier, after which every rank removes the objects it put
// (nobody can still be reading them). An allreduce of 1 MiB or more starts
// with a barrier instead (it lines the ranks up for the striped form): it
// removes what the calls before it put, and its own objects wait for the
// next call that ends or opens with a barrier (barrier() itself removes
// nothing), or flush(). So at most one call's objects outlive it.
//
// Buffers: `in` is copied into the store (one copy); results are copied
// from the store into `out` (one copy; an allreduce's while the result
// arrives). Sizes must agree across ranks; a rank whose size differs fails
// the call with kInvalidArgument.
//
// Ownership: borrows the Node, which must outlive it. Thread-binding: one
// thread at a time per instance (calls are ordered); distinct instances
// (distinct prefixes) may run concurrently over one Node.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hoplite/node.h"
#include "hoplite/reduce.h"
#include "hoplite/status.h"

namespace hoplite {

class Collectives {
 public:
  using Timeout = std::chrono::milliseconds;
  static constexpr Timeout kDefaultTimeout{std::chrono::minutes(10)};

  // `prefix` keeps this instance's objects apart from another's (one per
  // process group).
  explicit Collectives(Node& node, std::string prefix = "hoplite/coll");
  // Drops this rank's copies of what is still waiting for a barrier.
  ~Collectives();
  Collectives(const Collectives&) = delete;
  Collectives& operator=(const Collectives&) = delete;

  // `buf` of root goes to every rank's `buf` (same size everywhere).
  [[nodiscard]] Status broadcast(std::span<std::byte> buf, int root, Timeout timeout = kDefaultTimeout);
  // Element-wise op over every rank's `in`, into every rank's `out` (`in`
  // and `out` may be the same memory).
  [[nodiscard]] Status allreduce(std::span<const std::byte> in, std::span<std::byte> out, ReduceOp op,
                                 DataType dtype, Timeout timeout = kDefaultTimeout);
  // The same into root's `out` only (other ranks' `out` is not touched and
  // may be empty).
  [[nodiscard]] Status reduce(std::span<const std::byte> in, std::span<std::byte> out, int root, ReduceOp op,
                              DataType dtype, Timeout timeout = kDefaultTimeout);
  // Rank r's `in` lands at [r * in.size(), (r+1) * in.size()) of root's
  // `out` (world_size * in.size() bytes; other ranks' may be empty).
  [[nodiscard]] Status gather(std::span<const std::byte> in, std::span<std::byte> out, int root,
                              Timeout timeout = kDefaultTimeout);
  // Root's `in` (world_size * out.size() bytes) cut in world_size parts:
  // part r lands in rank r's `out` (other ranks' `in` may be empty).
  [[nodiscard]] Status scatter(std::span<const std::byte> in, std::span<std::byte> out, int root,
                               Timeout timeout = kDefaultTimeout);
  // Every rank sends the d-th run of `in` (in_counts[d] bytes, runs back to
  // back) to rank d, and receives rank s's run for it as the s-th run of
  // `out` (out_counts[s] bytes). Counts have world_size entries each.
  [[nodiscard]] Status alltoall(std::span<const std::byte> in, std::span<const std::uint64_t> in_counts,
                                std::span<std::byte> out, std::span<const std::uint64_t> out_counts,
                                Timeout timeout = kDefaultTimeout);
  // Every rank's `out` gets what gather gives the root.
  [[nodiscard]] Status allgather(std::span<const std::byte> in, std::span<std::byte> out,
                                 Timeout timeout = kDefaultTimeout);
  [[nodiscard]] Status barrier(Timeout timeout = kDefaultTimeout);
  // Removes what the last calls left waiting for a barrier: a barrier
  // (every rank calls flush too), then the removals.
  [[nodiscard]] Status flush(Timeout timeout = kDefaultTimeout);

  Node& node() { return node_; }

 private:
  ObjectID id(std::uint64_t call, const std::string& what) const;
  // A reduce of call `call`'s input from every rank into `target`.
  ReduceOptions every_input(std::uint64_t call, const ObjectID& target, ReduceOp op, DataType dtype,
                            Timeout timeout) const;
  // Gather and allgather: every rank puts `in`; the ranks that read (the
  // root, or all) get every part into `out`, `ring` ordered for allgather.
  Status gather_parts(std::span<const std::byte> in, std::span<std::byte> out, bool reads, bool ring,
                      const char* what_out, const char* what_part, Timeout timeout);
  // The barrier that ends a call, then the removal of what this rank put
  // (`mine`, and what earlier calls left).
  Status finish(Status st, std::span<const ObjectID> mine, Timeout timeout);
  // After a barrier: removes deferred_; `st` unless it was ok and a removal failed.
  Status remove_deferred(Status st);

  Node& node_;
  std::string prefix_;
  std::uint64_t calls_ = 0;
  // Objects this rank put that wait for a barrier to be removed.
  std::vector<ObjectID> deferred_;
};

}  // namespace hoplite
