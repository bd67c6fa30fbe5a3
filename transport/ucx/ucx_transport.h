// UcxTransport: the data plane over UCX (verbs on InfiniBand, shared memory
// and cma on one host, tcp elsewhere), behind the same get interface as
// transport/tcp/.
//
// One UCP context and one worker per node, in UCS_THREAD_MODE_SINGLE: only
// the progress thread touches them. A waiter thread poll()s the worker's
// event fd and posts a pass to the Asio loop; a pass progresses the worker
// until it is idle (bounded by rounds and by 500 us, so control messages
// and heartbeats are not starved by a long transfer) and then arms it
// again, so an idle node sleeps. The store arena is mapped once
// (ucp_mem_map); its packed rkey and base address travel in the bootstrap
// table, and each peer's rkey is unpacked once per endpoint.
//
// A get takes one of two paths:
//  - am (the default): an active message asks the holder, which answers
//    with an active message from its arena that lands in our extent
//    (eager over tcp lanes, rendezvous with ucp_am_recv_data_nbx otherwise);
//  - rma (HOPLITE_UCX_GET=rma): ucp_get_nbx straight from the holder's
//    arena, for transports with native RMA (cma here, rc/dc on InfiniBand).
// docs/perf.md has the figures behind the default: over UCX's tcp a get is
// emulated and 2.3x slower than am on loopback; over cma rma is 1.8x faster
// point to point, but with four ranks on two cores collectives ran 2.8-7.7x
// slower, since cma has no event fd and its gets are polled every 1 ms.
//
// Between hosts, endpoints use UCP_ERR_HANDLING_MODE_PEER: every request
// completes, with an error when its peer dies, and an endpoint error other
// than a timeout is reported through the peer error handler at once. UCX
// 1.13's shared-memory transports have no peer-failure support, so between
// processes of one kernel (when UCX_TLS allows shared memory) endpoints run
// without it and the node's failure detector ends their gets. fail_peer()
// completes a peer's outstanding gets with the given status and closes its
// endpoint; the next get (or a rejoined peer's add_peer) creates a new one.
//
// Ownership: owns the UCP context, worker, memory mapping, endpoints and
// rkeys, and the waiter thread; runs on the io_context given at creation,
// which must outlive it.
// Thread-safety: thread-bound to that io_context's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/asio.h"
#include "transport/transport.h"

namespace hoplite::transport::ucx {

enum class GetPath { kAuto, kRma, kAm };

class EventWaiter;

struct UcxOptions {
  Rank rank = 0;
  std::uint64_t max_get = 64u << 20;  // largest single get
  GetPath path = GetPath::kAuto;
};

// "auto", "rma", "am" -> GetPath.
[[nodiscard]] Result<GetPath> parse_get_path(const std::string& s);

class UcxTransport final : public Transport {
 public:
  [[nodiscard]] static Result<std::unique_ptr<UcxTransport>> create(boost::asio::io_context& io,
                                                                    UcxOptions opts);
  ~UcxTransport() override;

  const char* name() const override { return "ucx"; }
  std::string address() const override { return address_; }
  Result<std::unique_ptr<MemoryRegion>> register_memory(std::byte* base, std::uint64_t length) override;
  Status add_peer(Rank peer, const std::string& address,
                  const std::vector<std::uint8_t>& remote_key) override;
  Endpoint* endpoint(Rank peer) override;
  TransportStats stats() const override { return stats_; }
  std::string describe(Rank peer) const override;
  void set_peer_error_handler(PeerErrorHandler handler) override { on_peer_error_ = std::move(handler); }
  void set_access_check(AccessCheck check) override { access_ = std::move(check); }
  void fail_peer(Rank peer, const Status& why) override;
  void shutdown() override;

  // The path gets to `peer` take (after add_peer).
  GetPath path_to(Rank peer) const;

  struct Handles;
  class Peer;
  struct Op;

 private:
  explicit UcxTransport(boost::asio::io_context& io, UcxOptions opts);
  Status init();

  // Progress: a bounded pass over the worker and the work its callbacks
  // queued; arms the worker and waits on its event fd once idle.
  void post_pass();
  void pass();
  bool drain();
  void wait_events();
  void tick();

  void start_get(Peer& p, const ObjectID& object, std::byte* local, std::uint64_t length,
                 std::uint64_t remote_offset, Completion done);
  // A get's id is also its answer's only credential (UCX accepts active
  // messages from any endpoint): random, so nobody can inject bytes into a
  // get without seeing its request.
  std::uint64_t fresh_get_id();
  void complete(std::uint64_t id, const Status& st);
  void fail_pending(Rank peer, const Status& why);
  void close_endpoint(Peer& p, bool force);
  void serve(Rank requester, std::uint64_t id, const ObjectID& object, std::uint64_t offset,
             std::uint64_t length);

  // UCX's callbacks (ucx_transport.cc); they run inside ucp_worker_progress
  // and only queue work for drain().
  friend struct Callbacks;

  boost::asio::io_context& io_;
  UcxOptions opts_;
  std::unique_ptr<Handles> h_;
  std::unique_ptr<EventWaiter> waiter_;
  std::unique_ptr<boost::asio::steady_timer> tick_;
  std::string address_;  // "ucx:<host identity>:<worker address in hex>"
  std::string host_;
  std::byte* region_base_ = nullptr;
  std::uint64_t region_length_ = 0;
  std::map<Rank, std::unique_ptr<Peer>> peers_;
  std::unique_ptr<Endpoint> local_;

  struct Pending {
    Rank peer;
    std::byte* local;
    std::uint64_t length;
    Completion done;
    std::chrono::steady_clock::time_point started;
    bool reported = false;  // logged as slow
    bool rma = false;       // on the rma path (see pass())
  };
  std::size_t rma_in_flight_ = 0;
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::vector<std::uint64_t> random_ids_;  // refilled from the CSPRNG in batches

  // Filled by callbacks, emptied by drain().
  struct Done {
    std::uint64_t id;
    Status status;
  };
  struct ServeRequest {
    Rank requester;
    std::uint64_t id;
    ObjectID object;
    std::uint64_t offset, length;
  };
  struct RndvData {
    std::uint64_t id;
    void* desc;
    std::uint64_t length;
  };
  struct EpError {
    void* ep;
    int status;
  };
  std::vector<Done> done_;
  std::vector<ServeRequest> serve_;
  std::vector<RndvData> rndv_;
  std::vector<EpError> ep_errors_;
  std::vector<void*> closing_;  // ep close requests not yet complete

  PeerErrorHandler on_peer_error_;
  AccessCheck access_;
  TransportStats stats_;
  bool pass_posted_ = false;
  bool shut_down_ = false;
};

}  // namespace hoplite::transport::ucx
