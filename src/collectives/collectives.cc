#include "hoplite/collectives.h"

#include <cstring>
#include <future>
#include <vector>

namespace hoplite {

namespace {

constexpr std::size_t kStripeBarrierBytes = 1u << 20;

Status wrong_size(const char* what, std::size_t got, std::size_t want) {
  return invalid_argument(std::string(what) + ": " + std::to_string(got) + " bytes where this rank has " +
                          std::to_string(want) + " (every rank must pass the same size)");
}

Status check_rank(const Node& node, int root) {
  if (root < 0 || root >= node.world_size()) {
    return invalid_argument("root " + std::to_string(root) + " is not a rank of a cluster of " +
                            std::to_string(node.world_size()));
  }
  return {};
}

// `f`'s object into `out`, which must be its size (else reported as
// `what`'s). A get made with copy_while_arriving copies while it arrives.
Status copy_into(const ObjectFuture& f, std::span<std::byte> out, const char* what,
                 std::chrono::milliseconds timeout) {
  Status st = f.copy_to(out, timeout);
  if (st.code() == StatusCode::kInvalidArgument) {
    if (auto v = f.wait(std::chrono::milliseconds(0)); v.is_ok())
      return wrong_size(what, v->size(), out.size());
  }
  return st;
}

// Gets `id` into `out`, copying while it arrives.
Status read_into(Node& node, const ObjectID& id, std::span<std::byte> out, const char* what,
                 std::chrono::milliseconds timeout) {
  GetOptions g;
  g.copy_while_arriving = true;
  return copy_into(node.get(id, g), out, what, timeout);
}

// Gets objects `ids` all at once (from as many senders), then copies
// object r into the r-th run of `out` (counts[r] bytes, runs back to back).
Status get_parts(Node& node, const std::vector<ObjectID>& ids, std::span<std::byte> out,
                 std::span<const std::uint64_t> counts, const char* what, std::chrono::milliseconds timeout,
                 GetOptions g = {}) {
  std::vector<ObjectFuture> parts;
  for (const auto& id : ids) parts.push_back(node.get(id, g));
  std::uint64_t at = 0;
  for (std::size_t r = 0; r < parts.size(); ++r) {
    HOPLITE_RETURN_IF_ERROR(copy_into(parts[r], out.subspan(at, counts[r]), what, timeout));
    at += counts[r];
  }
  return {};
}

}  // namespace

Collectives::Collectives(Node& node, std::string prefix) : node_(node), prefix_(std::move(prefix)) {}

ObjectID Collectives::id(std::uint64_t call, const std::string& what) const {
  return ObjectID::from_name(prefix_ + "/" + std::to_string(call) + "/" + what);
}

ReduceOptions Collectives::every_input(std::uint64_t call, const ObjectID& target, ReduceOp op,
                                       DataType dtype, Timeout timeout) const {
  ReduceOptions o;
  for (int r = 0; r < node_.world_size(); ++r) o.inputs.push_back(id(call, "in/" + std::to_string(r)));
  o.target = target;
  o.op = op;
  o.dtype = dtype;
  o.timeout = timeout;
  return o;
}

Collectives::~Collectives() {
  // Without a barrier we cannot know that nobody reads them any more; only
  // this rank's copies go (the node may outlive us).
  for (const auto& id : deferred_) (void)node_.remove(id, RemoveScope::kLocal);
}

Status Collectives::remove_deferred(Status st) {
  for (const auto& id : deferred_) {
    Status r = node_.remove(id);
    // The local copy is gone either way. A shard that died since the
    // barrier took its record with it (every rank was past its reads), so
    // that is not this call's failure: a rank may leave right after a
    // barrier while the others still clean up.
    const bool gone = r.code() == StatusCode::kNotFound || r.code() == StatusCode::kPeerFailure;
    if (st.is_ok() && !r.is_ok() && !gone) st = r;
  }
  deferred_.clear();
  return st;
}

Status Collectives::finish(Status st, std::span<const ObjectID> mine, Timeout timeout) {
  // Every rank is past its reads once the barrier opens, so the objects
  // can go; without it a fast rank would remove what a slow one still reads.
  deferred_.insert(deferred_.end(), mine.begin(), mine.end());
  Status b = node_.barrier(timeout);
  if (!b.is_ok()) return st.is_ok() ? b : st;
  return remove_deferred(st);
}

Status Collectives::flush(Timeout timeout) {
  return finish({}, {}, timeout);
}

Status Collectives::barrier(Timeout timeout) {
  ++calls_;
  // Nothing removed here: a rank may leave as soon as its barrier returns,
  // and a removal would then wait for its shard's death to be noticed
  // (torch's barrier Work would fail with it).
  return node_.barrier(timeout);
}

Status Collectives::broadcast(std::span<std::byte> buf, int root, Timeout timeout) {
  const std::uint64_t call = calls_++;
  HOPLITE_RETURN_IF_ERROR(check_rank(node_, root));
  const ObjectID obj = id(call, "bcast");
  if (node_.rank() == root) {
    Status st = node_.put(obj, buf.data(), buf.size());
    return finish(st, std::span(&obj, 1), timeout);
  }
  return finish(read_into(node_, obj, buf, "broadcast", timeout), {}, timeout);
}

Status Collectives::reduce(std::span<const std::byte> in, std::span<std::byte> out, int root, ReduceOp op,
                           DataType dtype, Timeout timeout) {
  const std::uint64_t call = calls_++;
  HOPLITE_RETURN_IF_ERROR(check_rank(node_, root));
  const int me = node_.rank();
  if (me == root && out.size() != in.size()) return wrong_size("reduce output", out.size(), in.size());
  const ObjectID mine = id(call, "in/" + std::to_string(me));
  const ObjectID target = id(call, "out");
  Status st = node_.put(mine, in.data(), in.size());
  std::vector<ObjectID> put{mine};
  if (me == root && st.is_ok()) {
    ReduceOptions o = every_input(call, target, op, dtype, timeout);
    auto res = node_.reduce(o);
    if (!res.is_ok()) {
      st = res.status();
    } else {
      // Complete here already: the reduce returns once it is.
      st = copy_into(node_.get(target), out, "reduce result", timeout);
    }
    put.push_back(target);
  }
  return finish(st, put, timeout);
}

Status Collectives::allreduce(std::span<const std::byte> in, std::span<std::byte> out, ReduceOp op,
                              DataType dtype, Timeout timeout) {
  const std::uint64_t call = calls_++;
  if (out.size() != in.size()) return wrong_size("allreduce output", out.size(), in.size());
  const int me = node_.rank();
  const ObjectID mine = id(call, "in/" + std::to_string(me));
  const ObjectID target = id(call, "out");
  // A large object stripes only if every input exists when rank 0 decides
  // (within a few ms), and ranks copying 64 MiB into their stores on busy
  // cores drift further apart than that: a barrier lines them up, for one
  // round trip. Everyone is past its previous call once it opens, so what
  // that call put can go now: a large allreduce needs no closing barrier.
  const bool lined_up = in.size() >= kStripeBarrierBytes;
  Status st = node_.put(mine, in.data(), in.size());
  if (lined_up) {
    // Every rank takes this barrier, whatever its put did: ranks must agree
    // on the count of barriers.
    Status b = node_.barrier(timeout);
    if (st.is_ok()) st = b;
  }
  std::vector<ObjectID> put{mine};
  // Every rank's get is issued before rank 0's reduce returns, so the
  // result streams into broadcast chains (or around the stripes' ring)
  // while it is being reduced, and is copied out part by part as it lands.
  GetOptions g;
  g.copy_while_arriving = true;
  ObjectFuture got = node_.get(target, g);
  std::future<Result<ReduceResult>> reducing;
  if (me == 0 && st.is_ok()) {
    ReduceOptions o = every_input(call, target, op, dtype, timeout);
    o.allow_stripes = true;
    reducing = node_.reduce_async(o);
  }
  // The earlier calls' removals (directory round trips) overlap the reduce.
  // A failed removal is reported once this call's result is in.
  Status removed = lined_up && st.is_ok() ? remove_deferred({}) : Status{};
  if (me == 0) {
    auto res = reducing.valid() ? reducing.get() : Result<ReduceResult>(st);
    if (!res.is_ok()) {
      st = res.status();
      // The others wait for the target: an empty one tells them it failed
      // (their size check reports it) instead of leaving them to time out.
      (void)node_.put(target, nullptr, 0);
    }
    put.push_back(target);
  }
  if (st.is_ok()) {
    st = copy_into(got, out, "allreduce result", timeout);
    // An empty target is rank 0's word that the reduce failed.
    if (auto v = got.wait(Timeout(0)); !st.is_ok() && v.is_ok() && v->size() == 0 && !out.empty())
      st = Status(StatusCode::kPeerFailure, "allreduce: the reduce failed at rank 0 (its log says why)");
  }
  if (lined_up) {
    deferred_.insert(deferred_.end(), put.begin(), put.end());
    return st.is_ok() ? removed : st;
  }
  return finish(st, put, timeout);
}

Status Collectives::gather(std::span<const std::byte> in, std::span<std::byte> out, int root,
                           Timeout timeout) {
  HOPLITE_RETURN_IF_ERROR(check_rank(node_, root));
  return gather_parts(in, out, node_.rank() == root, false, "gather output", "gather part", timeout);
}

Status Collectives::allgather(std::span<const std::byte> in, std::span<std::byte> out, Timeout timeout) {
  return gather_parts(in, out, true, true, "allgather output", "allgather part", timeout);
}

Status Collectives::gather_parts(std::span<const std::byte> in, std::span<std::byte> out, bool reads,
                                 bool ring, const char* what_out, const char* what_part, Timeout timeout) {
  const std::uint64_t call = calls_++;
  const int n = node_.world_size(), me = node_.rank();
  if (reads && out.size() != in.size() * static_cast<std::size_t>(n))
    return wrong_size(what_out, out.size(), in.size() * static_cast<std::size_t>(n));
  const ObjectID mine = id(call, "part/" + std::to_string(me));
  Status st = node_.put(mine, in.data(), in.size());
  if (reads && st.is_ok()) {
    // Allgather: each part travels the ring, so every link carries one stream.
    GetOptions opts;
    if (ring) opts.after = (me + n - 1) % n;
    std::vector<ObjectID> ids;
    for (int r = 0; r < n; ++r) ids.push_back(id(call, "part/" + std::to_string(r)));
    const std::vector<std::uint64_t> counts(static_cast<std::size_t>(n), in.size());
    st = get_parts(node_, ids, out, counts, what_part, timeout, opts);
  }
  return finish(st, std::span(&mine, 1), timeout);
}

Status Collectives::scatter(std::span<const std::byte> in, std::span<std::byte> out, int root,
                            Timeout timeout) {
  const std::uint64_t call = calls_++;
  HOPLITE_RETURN_IF_ERROR(check_rank(node_, root));
  const int n = node_.world_size(), me = node_.rank();
  if (me == root && in.size() != out.size() * static_cast<std::size_t>(n))
    return wrong_size("scatter input", in.size(), out.size() * static_cast<std::size_t>(n));
  std::vector<ObjectID> put;
  Status st;
  for (int r = 0; me == root && r < n && st.is_ok(); ++r) {
    put.push_back(id(call, "scatter/" + std::to_string(r)));
    st = node_.put(put.back(), in.data() + static_cast<std::size_t>(r) * out.size(), out.size());
  }
  if (st.is_ok()) st = read_into(node_, id(call, "scatter/" + std::to_string(me)), out, "scatter", timeout);
  return finish(st, put, timeout);
}

Status Collectives::alltoall(std::span<const std::byte> in, std::span<const std::uint64_t> in_counts,
                             std::span<std::byte> out, std::span<const std::uint64_t> out_counts,
                             Timeout timeout) {
  const std::uint64_t call = calls_++;
  const int n = node_.world_size(), me = node_.rank();
  auto total = [](std::span<const std::uint64_t> c) {
    std::uint64_t t = 0;
    for (auto x : c) t += x;
    return t;
  };
  if (in_counts.size() != static_cast<std::size_t>(n) || out_counts.size() != static_cast<std::size_t>(n))
    return invalid_argument("alltoall: " + std::to_string(n) + " counts each way");
  if (total(in_counts) != in.size()) return wrong_size("alltoall input", in.size(), total(in_counts));
  if (total(out_counts) != out.size()) return wrong_size("alltoall output", out.size(), total(out_counts));
  auto name = [](int from, int to) { return "a2a/" + std::to_string(from) + "/" + std::to_string(to); };
  std::vector<ObjectID> put;
  Status st;
  std::uint64_t at = 0;
  for (int d = 0; d < n && st.is_ok(); at += in_counts[static_cast<std::size_t>(d)], ++d) {
    put.push_back(id(call, name(me, d)));
    st = node_.put(put.back(), in.data() + at, in_counts[static_cast<std::size_t>(d)]);
  }
  if (st.is_ok()) {
    std::vector<ObjectID> ids;
    for (int s = 0; s < n; ++s) ids.push_back(id(call, name(s, me)));
    st = get_parts(node_, ids, out, out_counts, "alltoall part", timeout);
  }
  return finish(st, put, timeout);
}

}  // namespace hoplite
