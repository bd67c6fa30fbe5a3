// The data-plane interface: what a backend (tcp/, later ucx/) implements.
//
// Modeled on one-sided RDMA: a node registers its store arena once as a
// MemoryRegion and publishes the region's RemoteKey; a receiver reads chunks
// of a peer's region with Endpoint::get into its own registered memory. The
// receiver decides what to read and when (it learns how much is valid at
// the sender from the control plane), so the same node logic drives TCP and
// UCX. Every get completes exactly once, on the progress thread, through its
// Completion.
//
// Ownership: the Transport owns its endpoints and regions' registrations; a
// MemoryRegion must outlive the gets that use it.
// Thread-safety: thread-bound to the progress thread (the io_context given
// at creation), except address() which is immutable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite::transport {

using Rank = std::uint32_t;

// Called once per operation, on the progress thread.
using Completion = std::function<void(Status)>;
// Told when the data plane itself learns that a peer is gone (an endpoint
// error), before any heartbeat could; on the progress thread.
using PeerErrorHandler = std::function<void(Rank, const Status&)>;
// Whether `peer` may read [offset, offset + length) of the region as part
// of object `id`: ok, or why not (the holder answers the get with that
// error). Called on the progress thread by the serving side.
using AccessCheck =
    std::function<Status(Rank peer, const ObjectID& id, std::uint64_t offset, std::uint64_t length)>;

class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
  virtual std::byte* base() const = 0;
  virtual std::uint64_t length() const = 0;
  // Opaque bytes a peer needs to read this region (packed rkey for UCX).
  virtual std::vector<std::uint8_t> remote_key() const = 0;
};

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  // Reads [remote_offset, remote_offset + length) of the peer's region into
  // `local` (inside a region registered here), as part of object `id` (the
  // holder checks the range against what it granted us for `id`). Gets on
  // one endpoint may complete in any order.
  virtual void get(const ObjectID& id, std::byte* local, std::uint64_t length, std::uint64_t remote_offset,
                   Completion done) = 0;
  // Gets posted and not yet completed.
  virtual std::size_t in_flight() const = 0;
};

struct TransportStats {
  std::uint64_t bytes_read = 0;    // by our gets
  std::uint64_t bytes_served = 0;  // to peers' gets
  std::uint64_t gets = 0;
  std::uint64_t rejected_connections = 0;
  std::uint64_t refused_gets = 0;  // by the access check
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;
  // Where peers reach this node's data plane (published in the bootstrap table).
  virtual std::string address() const = 0;
  // The store arena; called once.
  [[nodiscard]] virtual Result<std::unique_ptr<MemoryRegion>> register_memory(std::byte* base,
                                                                              std::uint64_t length) = 0;
  // Learns how to reach `peer`: its address() and its region's remote_key().
  [[nodiscard]] virtual Status add_peer(Rank peer, const std::string& address,
                                        const std::vector<std::uint8_t>& remote_key) = 0;
  virtual Endpoint* endpoint(Rank peer) = 0;
  virtual TransportStats stats() const = 0;
  // One line for logs and the perf tools' preamble: the backend, its
  // configuration and, once connected to `peer`, what it uses to reach it.
  virtual std::string describe(Rank peer) const = 0;
  // Backends whose connection errors reach the node some other way (TCP:
  // the control connection breaks too) may ignore the handler.
  virtual void set_peer_error_handler(PeerErrorHandler handler) = 0;
  // Installed once by the node before any peer is added. Backends that
  // cannot check a read (one-sided RMA) say so in describe() and docs.
  virtual void set_access_check(AccessCheck check) = 0;
  // The peer failed: its in-flight gets complete with `why`, its
  // connections close; a later get reconnects (a rejoined peer).
  virtual void fail_peer(Rank peer, const Status& why) = 0;
  // Closes every connection; outstanding gets fail with kCancelled.
  virtual void shutdown() = 0;
};

}  // namespace hoplite::transport
