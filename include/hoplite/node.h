// Node: one member of a Hoplite cluster, with its object store, its shard of
// the object directory, its control plane and its data plane.
//
// create() joins the cluster (rank 0 collects every member's addresses and
// hands out the table) and starts the node's single progress thread, which
// owns all sockets. Public calls hand work to that thread and wait on
// futures; no user code ever runs on it.
//
// Ownership: the caller owns the Node; ObjectViews pin store memory and must
// be dropped before the Node is destroyed.
// Thread-safety: thread-safe; every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "hoplite/object_id.h"
#include "hoplite/object_view.h"
#include "hoplite/object_writer.h"
#include "hoplite/options.h"
#include "hoplite/reduce.h"
#include "hoplite/status.h"

namespace hoplite {

struct GetOptions {
  // Answer NotFound at once when no copy is known, instead of waiting for a
  // put.
  bool must_exist = false;
  // Read from this rank's copy, complete or still arriving, once it has
  // one: in an allgather where each rank gets every object with its ring
  // predecessor as `after`, every object flows around the ring and each
  // link carries one stream. -1: the directory picks the sender (the tail
  // of the shortest broadcast chain). A rank that never gets the object
  // makes the get wait for a first copy elsewhere only once it has failed.
  int after = -1;
  // With `after`: read from that rank's own copy and nowhere else, and
  // join no broadcast chain (later readers do not read from this one while
  // it arrives): what an object store without Hoplite does, the task
  // runtime's TransferPolicy::kDirect. Waits until `after` has a copy
  // (complete or being written); if `after` fails, the get falls back to
  // any copy.
  bool direct = false;
  // The caller will read the object with ObjectFuture::copy_to: the node
  // tells it each run of bytes that lands (a part of a composite, chunks
  // in order), so it copies them out while the rest arrives.
  bool copy_while_arriving = false;
};

enum class RemoveScope { kLocal, kGlobal };

// What the reduce planner assumes about the network.
struct LinkModel {
  double bandwidth = 0;  // bytes per second
  double latency = 0;    // seconds per hop
};

struct NodeStats {
  std::uint64_t objects = 0;
  std::uint64_t store_used = 0;
  std::uint64_t store_capacity = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t bytes_served = 0;
  std::uint64_t rejected_connections = 0;
  std::uint64_t protocol_errors = 0;
  // Messages from authenticated peers refused for naming another rank or
  // answering something nobody asked (docs/security.md).
  std::uint64_t refused_messages = 0;
  // Readers' watches of this node's copies now (each pins a copy; bounded
  // per reader rank, docs/security.md).
  std::uint64_t watches = 0;
  // Reduce tasks this node has started (one per tree-chain position or
  // stripe link it ran); a repaired reduce re-runs only the path above the
  // failure, which this count shows.
  std::uint64_t reduce_tasks = 0;
};

// Where an object is, as its directory shard knows it now.
struct ObjectLocations {
  bool known = false;        // the directory has a record of it
  bool inline_copy = false;  // the directory holds its bytes itself
  // Ranks holding a complete copy, and the rank writing it.
  std::vector<int> holders;
};

// A change of membership, as seen by this node.
struct MembershipEvent {
  int rank = -1;
  bool alive = false;       // false: declared failed; true: rejoined
  std::uint64_t epoch = 0;  // increases with every change
  std::string reason;
};

class Node {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Node>> create(const NodeOptions& options);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  int rank() const;
  int world_size() const;
  const NodeOptions& options() const;

  // Copies `bytes` into the store and publishes the object. Returns once the
  // directory knows it, so any node's get will find it.
  [[nodiscard]] Status put(const ObjectID& id, std::span<const std::byte> bytes);
  [[nodiscard]] Status put(const ObjectID& id, const void* data, std::size_t size) {
    return put(id, {static_cast<const std::byte*>(data), size});
  }
  // Streaming put: reserve `size` bytes, write, publish progress, seal.
  [[nodiscard]] Result<ObjectWriter> create(const ObjectID& id, std::uint64_t size);
  // A future of the complete object in the local store; fetches it from a
  // copy elsewhere if needed, waiting for a put if none exists yet.
  ObjectFuture get(const ObjectID& id, GetOptions opts = {});
  // kLocal drops this node's copy; kGlobal forgets the object everywhere and
  // returns once the directory has dropped it.
  [[nodiscard]] Status remove(const ObjectID& id, RemoveScope scope = RemoveScope::kGlobal);
  // A complete copy is in the local store.
  bool contains(const ObjectID& id) const;
  // Bytes of `id` present locally (for progress displays and tests).
  std::uint64_t local_progress(const ObjectID& id) const;
  // Reduces the first k inputs to become complete into opts.target, which
  // any node can then get (and may get while the reduce is still running:
  // the result streams into the broadcast chains). This node coordinates;
  // the reduction itself runs on the inputs' holders. Returns when the
  // target is complete, with the inputs used in arrival order.
  [[nodiscard]] Result<ReduceResult> reduce(const ReduceOptions& opts);
  std::future<Result<ReduceResult>> reduce_async(const ReduceOptions& opts);

  // Every member reaches the barrier before anyone leaves it.
  [[nodiscard]] Status barrier(std::chrono::milliseconds timeout = std::chrono::minutes(10));

  // Ranks this node has declared failed (and not seen rejoin).
  std::vector<int> failed_ranks() const;
  std::uint64_t membership_epoch() const;
  // Adds a callback, called on a dedicated thread (never the progress
  // thread), in order; every callback sees every later event. A callback
  // stays for the node's life: one that must stop earlier checks a flag.
  void on_membership_change(std::function<void(const MembershipEvent&)> callback);

  // Application messages, for layers built on the node (the task runtime):
  // up to 4 MiB each, carried on the control plane to `channel` at `rank`,
  // in order per sender, lost if the peer fails (the membership event
  // says so). A message to a rank known to have failed is kUnavailable.
  using MessageHandler = std::function<void(int from, std::span<const std::byte> payload)>;
  [[nodiscard]] Status send_message(int rank, std::uint16_t channel, std::span<const std::byte> payload);
  // Handlers run on one dedicated thread (never the progress thread), in
  // arrival order, and may call the node. Messages that arrive before a
  // channel has a handler are held for it. An empty handler unsubscribes
  // and returns once the old one no longer runs.
  void on_message(std::uint16_t channel, MessageHandler handler);
  // Asks the object's shard who holds it (one round trip).
  [[nodiscard]] Result<ObjectLocations> where(const ObjectID& id) const;

  NodeStats stats() const;
  LinkModel link_model() const;
  // host:port of this node's control listener and data plane (for tools and
  // tests that talk to a node directly).
  std::string control_address(int rank) const;
  std::string data_address(int rank) const;
  // The data-plane backend in use ("ucx" or "tcp"), and one line on how it
  // reaches `peer` (for UCX: UCX_TLS, the get path and the lanes UCX chose).
  std::string transport_name() const;
  std::string transport_description(int peer) const;

  class Impl;

 private:
  explicit Node(std::unique_ptr<Impl> impl);
  [[nodiscard]] Status probe_links();
  std::unique_ptr<Impl> impl_;
};

}  // namespace hoplite
