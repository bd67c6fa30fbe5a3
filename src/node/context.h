// NodeContext: what the components of one node share, and the seams
// between them.
//
// A node is a set of components (control plane, membership, directory
// service and client, object server, fetcher, composites, barriers, reduce
// coordinator and executor), each owning its own state and the messages it
// handles. They share only what is here: the options and identity, the
// progress thread's io_context, the store and the data plane, the
// membership view (written by Membership alone), a dispatch table by
// message type that each component fills with its handlers, a router for
// Progress messages by stream id, and the ordered list of components that
// membership changes are announced to.
//
// Ownership: owned by Node::Impl, outlives every component.
// Thread-binding: the progress thread, except the members marked
// otherwise (immutable after start, or atomic).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <variant>
#include <vector>

#include "common/asio.h"
#include "common/log.h"
#include "control/connection.h"
#include "control/messages.h"
#include "directory/shard.h"
#include "hoplite/object_id.h"
#include "hoplite/options.h"
#include "store/object_store.h"
#include "transport/transport.h"

namespace hoplite::node {

namespace asio = boost::asio;
using boost::system::error_code;
using control::Rank;
namespace msg = control;
using ConnPtr = std::shared_ptr<control::Connection>;

// A message type's position in msg::Message: the dispatch table's index.
template <typename M, typename V = msg::Message>
struct MessageIndex;
template <typename M, typename... Ts>
struct MessageIndex<M, std::variant<Ts...>> {
  static constexpr std::size_t value = [] {
    constexpr bool is[] = {std::is_same_v<M, Ts>...};
    for (std::size_t i = 0; i < sizeof...(Ts); ++i) {
      if (is[i]) return i;
    }
    return sizeof...(Ts);
  }();
  static_assert(value < sizeof...(Ts), "not a control message");
};

// Message type -> the one handler of the component that owns it. A type
// nobody registered is a protocol error at the receiver (the control plane
// counts and drops it).
class Dispatcher {
 public:
  using Handler = std::function<void(const ConnPtr&, msg::Message&)>;

  template <typename M, typename F>
  void on(F f) {
    auto& slot = handlers_[MessageIndex<M>::value];
    if (slot) LOG_ERROR("two handlers for " << msg::type_name(msg::Message(M{})));
    slot = [f = std::move(f)](const ConnPtr& c, msg::Message& m) { f(c, std::get<M>(m)); };
  }
  // False when no component handles this type.
  bool dispatch(const ConnPtr& c, msg::Message& m) const {
    const auto& h = handlers_[m.index()];
    if (!h) return false;
    h(c, m);
    return true;
  }

 private:
  std::array<Handler, std::variant_size_v<msg::Message>> handlers_;
};

// Progress messages answer a reader's Watch and carry the reader's stream
// id. A stream id names its owner in its top byte, so each reading
// component (the fetcher, the reduce executor) gets its own streams without
// a shared map.
class StreamRouter {
 public:
  // `from`: the rank the Progress came from; the owner checks it is the
  // rank that stream watches.
  using Handler = std::function<void(const msg::Progress&, Rank from)>;
  std::uint8_t add_owner(Handler h) {
    owners_.push_back(std::move(h));
    return static_cast<std::uint8_t>(owners_.size());
  }
  std::uint64_t next(std::uint8_t owner) { return (static_cast<std::uint64_t>(owner) << 56) | ++counter_; }
  void route(const msg::Progress& p, Rank from) const {
    const auto owner = static_cast<std::size_t>(p.stream >> 56);
    if (owner >= 1 && owner <= owners_.size()) owners_[owner - 1](p, from);
  }

 private:
  std::vector<Handler> owners_;
  std::uint64_t counter_ = 0;
};

// What membership changes mean to a component, announced in three phases
// to every component in registration order (Membership::declare_failed):
// first each drops what is tied to the lost rank, then each re-sends to the
// new owners what it had sent to shards that moved, then plans that used
// the rank are repaired. A rejoin or a learned failure runs only the
// second phase.
class Component {
 public:
  virtual ~Component() = default;
  virtual void on_peer_lost(Rank) {}
  virtual void on_shards_moved(const std::vector<bool>& /*old_alive*/) {}
  virtual void on_peer_failed(Rank) {}
  // The node is shutting down: fail what users wait for.
  virtual void on_stop() {}
};

// Sends control messages to a rank (the control plane implements it; a
// message to ourselves takes the same dispatch path, minus the socket).
class Messenger {
 public:
  virtual ~Messenger() = default;
  virtual void send_to(Rank r, const msg::Message& m) = 0;
};

// A reader whose sender does not have the object yet (a reduce task or a
// stripe not started there, a ring predecessor not yet reading) watches
// again after this long: 1 ms first, since it is usually a matter of one
// message, doubling to 20 ms.
inline std::chrono::milliseconds watch_retry_delay(int retries) {
  return std::chrono::milliseconds(std::min(20, 1 << std::clamp(retries - 1, 0, 5)));
}

struct NodeContext {
  explicit NodeContext(NodeOptions o) : opts(std::move(o)) {
    dispatch.on<msg::Progress>(
        [this](const ConnPtr& c, const msg::Progress& p) { streams.route(p, sender(c)); });
  }

  // Immutable after start.
  NodeOptions opts;
  Rank me = 0;
  std::uint32_t world = 1;

  asio::io_context io;
  bool stopping = false;

  std::unique_ptr<store::ObjectStore> store;  // thread-safe
  std::unique_ptr<transport::Transport> transport;
  std::unique_ptr<transport::MemoryRegion> region;

  // By rank; empty until the node joined (everyone counts as alive then).
  // Written only by Membership.
  std::vector<bool> alive;

  Dispatcher dispatch;
  StreamRouter streams;
  std::vector<Component*> components;
  Messenger* messenger = nullptr;

  // Link model for reduce planning, from options or the start-up probe.
  // Written before any reduce runs, read on the progress thread.
  double link_bandwidth = 0;  // bytes/s
  double link_latency = 0;    // s

  // Counters read by Node::stats() from user threads.
  std::atomic<std::uint64_t> bytes_received{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> protocol_errors{0};
  // Messages refused by the sender rules or a component's own check.
  std::atomic<std::uint64_t> refused{0};
  // Watchers of our copies now (ObjectServer).
  std::atomic<std::uint64_t> watches{0};
  std::atomic<std::uint64_t> reduce_tasks_started{0};

  void send(Rank r, const msg::Message& m) {
    if (messenger) messenger->send_to(r, m);
  }
  // Request ids, task ids and locate ids come from one sequence.
  std::uint64_t next_request() { return next_request_++; }
  // Request and task ids carry the issuing rank in their top 16 bits, so
  // tasks of different coordinators never share an id at an executor.
  void set_rank(Rank r) {
    me = r;
    next_request_ = (static_cast<std::uint64_t>(r) << 48) | 1;
  }

  bool alive_rank(Rank r) const { return r < world && (alive.empty() || alive[r]); }
  // The lowest live rank: it leads the barriers (rank 0 until it fails).
  Rank leader() const {
    for (Rank r = 0; r < world; ++r) {
      if (alive_rank(r)) return r;
    }
    return me;
  }
  // Who sent a dispatched message: the connection's authenticated rank, or
  // us for a message we posted to ourselves.
  Rank sender(const ConnPtr& c) const { return c ? c->peer : me; }
  // A message from an authenticated peer that does not fit what we asked
  // for or run: dropped, counted and logged (docs/security.md).
  void refuse(Rank from, const char* what, const std::string& why) {
    refused++;
    LOG_WARN("refused " << what << " from rank " << from << ": " << why);
  }
  // The directory shard of an object: its hash's rank, or the next live
  // rank after it when that one failed (soft state moves with membership).
  Rank shard_of(const ObjectID& id) const { return shard_in(id, alive); }
  // The same rule under a given membership view (empty: everyone alive).
  Rank shard_in(const ObjectID& id, const std::vector<bool>& view) const {
    return directory::shard_in(id, world, view);
  }

  // Runs `f` on the progress thread after `d`, unless the node stops first.
  template <typename F>
  void after(std::chrono::steady_clock::duration d, F f) {
    auto timer = std::make_shared<asio::steady_timer>(io, d);
    timer->async_wait([this, timer, f = std::move(f)](error_code) mutable {
      if (!stopping) f();
    });
  }

 private:
  std::uint64_t next_request_ = 1;
};

}  // namespace hoplite::node
