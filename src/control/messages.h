// Control-plane messages: the typed view of every control frame.
//
// encode() turns a message into a complete frame (header + payload);
// decode() validates a payload against its type and returns the message or a
// protocol Status; it never trusts a length it has not checked. The layouts
// are documented byte by byte in docs/wire-protocol.md.
//
// Thread-safety: pure functions over value types.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "auth/handshake.h"
#include "common/wire.h"
#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite::control {

using Rank = std::uint32_t;
inline constexpr Rank kNoRank = 0xffffffffu;
inline constexpr std::uint32_t kMaxString = 4096;
inline constexpr std::uint32_t kMaxInline = 4u << 20;
inline constexpr std::uint32_t kMaxWorld = 65536;
// The control messages' layouts, checked in every hello: 2 added
// Lookup.after, Locate.inline_max and LocateReply's inline bytes; 3 replaced
// the token in the hello by a challenge-response (auth/handshake.h); 4
// added AppMessage, Where, WhereReply and Lookup.direct; 5 added Table's
// failed ranks and last barrier, RejoinAt (any live rank takes rejoins),
// ReduceTask.target and ReduceRelease; 6 added Locate.partial_ok and
// LocateReply.refused.
inline constexpr std::uint32_t kControlProtocol = 6;

enum class MsgType : std::uint8_t {
  kHello = 1,
  kHelloAck = 2,
  kError = 3,
  kRegister = 4,
  kTable = 5,
  kBarrier = 6,
  kBarrierDone = 7,
  kPublish = 10,
  kPublishAck = 11,
  kUnpublish = 12,
  kLookup = 13,
  kLookupReply = 14,
  kRemove = 15,
  kRemoveAck = 16,
  kDelete = 17,
  kWatch = 20,
  kProgress = 21,
  kUnwatch = 22,
  kLocate = 23,
  kLocateReply = 24,
  kReduceTask = 25,
  kReduceDone = 26,
  kPublishComposite = 27,
  kHeartbeat = 28,
  kRejoin = 29,
  kPeerUpdate = 30,
  kReduceCancel = 31,
  kReduceRetarget = 32,
  kReduceLost = 33,
  kChallenge = 34,
  kProof = 35,
  kDiagRequest = 36,
  kDiagReply = 37,
  kAppMessage = 38,
  kWhere = 39,
  kWhereReply = 40,
  kRejoinAt = 41,
  kReduceRelease = 42,
};

enum class Channel : std::uint8_t { kControl = 0, kData = 1 };

// The handshake (auth/handshake.h): Hello, Challenge, Proof, then HelloAck.
struct Hello {
  std::uint32_t protocol = kControlProtocol;
  Rank rank = kNoRank;  // kNoRank: not a member (tools, tests)
  Channel channel = Channel::kControl;
  auth::Nonce nonce{};
};
struct Challenge {
  Rank rank = kNoRank;  // the acceptor
  auth::Nonce nonce{};
  auth::Mac mac{};
};
struct Proof {
  auth::Mac mac{};
};
struct HelloAck {
  Rank rank = kNoRank;
};
struct Error {
  std::uint16_t code = 0;  // a StatusCode
  std::string message;
};
struct PeerInfo {
  std::string host;
  std::uint16_t control_port = 0;
  std::string transport_address;         // backend-specific, opaque here
  std::vector<std::uint8_t> remote_key;  // the peer's store region
};
struct Register {
  Rank rank = kNoRank;
  PeerInfo info;
};
// The bootstrap table. At the formation every rank is alive and no
// barrier has run; a rejoiner's table also says who is dead and which
// barrier was released last, so it starts from its contact's view.
struct Table {
  std::vector<PeerInfo> peers;  // index = rank
  std::vector<Rank> failed;     // ranks < peers.size(), each once
  std::uint64_t barrier = 0;    // the last barrier released
};
struct Barrier {
  std::uint64_t epoch = 0;
  Rank rank = kNoRank;
};
struct BarrierDone {
  std::uint64_t epoch = 0;
};
enum class LocationState : std::uint8_t { kPartial = 0, kComplete = 1 };
struct Publish {
  ObjectID id;
  std::uint64_t request = 0;  // non-zero: the shard answers with PublishAck
  std::uint64_t size = 0;
  Rank rank = kNoRank;
  LocationState state = LocationState::kComplete;
  bool has_inline = false;
  std::vector<std::uint8_t> inline_data;
};
struct PublishAck {
  ObjectID id;
  std::uint64_t request = 0;
};
struct Unpublish {
  ObjectID id;
  Rank rank = kNoRank;
};
struct Lookup {
  ObjectID id;
  std::uint64_t request = 0;
  Rank requester = kNoRank;
  bool must_exist = false;  // answer NotFound now instead of waiting
  // The requester already holds a prefix (its sender died): answer with a
  // source that has at least as much, and keep the requester where it is
  // in its chain, since its successors stream from it.
  bool resume = false;
  // Read from this rank's copy, once it has one (a ring-ordered allgather:
  // each node reads from its predecessor); kNoRank: the shard chooses.
  Rank after = kNoRank;
  // Only `after` may send it, and the requester joins no chain (the task
  // runtime's direct transfer policy).
  bool direct = false;
};
// kComposite: the object is made of parts held elsewhere (a striped
// allreduce's result); `parts` says which, and the reader pulls each part
// from its holder into its place.
// kRefused: the shard's parked-request limit was hit (docs/security.md);
// `size` carries the limit.
enum class LookupResult : std::uint8_t {
  kSender = 0,
  kInline = 1,
  kNotFound = 2,
  kComposite = 3,
  kRefused = 4
};
struct Part {
  ObjectID id;
  Rank holder = kNoRank;
  std::uint64_t offset = 0;  // in the composite object
  std::uint64_t size = 0;
};
inline constexpr std::uint32_t kMaxParts = 4096;
struct LookupReply {
  ObjectID id;
  std::uint64_t request = 0;
  LookupResult result = LookupResult::kNotFound;
  std::uint64_t size = 0;
  Rank sender = kNoRank;
  std::vector<std::uint8_t> inline_data;
  std::vector<Part> parts;  // kComposite only
};
struct Remove {
  ObjectID id;
  std::uint64_t request = 0;
  Rank requester = kNoRank;
};
struct RemoveAck {
  ObjectID id;
  std::uint64_t request = 0;
};
struct Delete {
  ObjectID id;
};
// `stream` is chosen by the reader and echoed in every Progress, so one node
// can read the same object for two purposes (a get and a reduce) at once.
struct Watch {
  ObjectID id;
  Rank requester = kNoRank;
  std::uint64_t stream = 0;
};
// Progress.size when present is false: the sender dropped the object on
// purpose (a cancelled or superseded reduce output) and will not have it
// again; without it, an absent object may still be on its way.
inline constexpr std::uint64_t kWithdrawn = ~0ull;
struct Progress {
  ObjectID id;
  bool present = false;      // false: the sender has no copy (any more)
  std::uint64_t offset = 0;  // of the object in the sender's store region
  std::uint64_t size = 0;
  std::uint64_t ready = 0;  // bytes [0, ready) are valid at the sender
  std::uint64_t stream = 0;
};
struct Unwatch {
  ObjectID id;
  Rank requester = kNoRank;
  std::uint64_t stream = 0;
};

// "Tell me when a complete copy exists and where": how a reduce learns the
// arrival order of its inputs without joining their broadcast chains.
struct Locate {
  ObjectID id;
  std::uint64_t request = 0;
  Rank requester = kNoRank;
  // An object the directory holds inline and of at most this many bytes
  // comes back with its bytes (0: never): a small reduce then folds at the
  // coordinator instead of running tasks.
  std::uint32_t inline_max = 0;
  // A copy still being written by its producer will do (a reduce that
  // starts on inputs as they are written); else only a complete copy.
  bool partial_ok = false;
};
struct LocateReply {
  ObjectID id;
  std::uint64_t request = 0;
  std::uint64_t size = 0;
  Rank holder = kNoRank;
  bool has_inline = false;
  std::vector<std::uint8_t> inline_data;  // size bytes when has_inline
  // The shard will not wait for this object: it holds as many waiting
  // requests (of this requester, for this object, or in all) as it may
  // (size: that limit; holder: kNoRank).
  bool refused = false;
};
struct Upstream {
  ObjectID id;
  Rank holder = kNoRank;
  std::uint64_t offset = 0;  // where this task's range starts in that object
};
inline constexpr std::uint32_t kMaxUpstreams = 64;
// One position of a reduce tree-chain: output = input[offset, offset+size)
// op every upstream, streamed chunk by chunk.
struct ReduceTask {
  std::uint64_t task = 0;
  Rank coordinator = kNoRank;
  ObjectID output;
  ObjectID input;
  std::uint64_t input_offset = 0;
  std::uint64_t size = 0;
  // Bytes [0, start) are not computed: a resumed position whose reader
  // already folded that prefix from the task it replaces.
  std::uint64_t start = 0;
  std::uint8_t op = 0;     // a ReduceOp
  std::uint8_t dtype = 0;  // a DataType
  std::vector<Upstream> upstreams;
  // The reduce's target: if the coordinator dies before it releases the
  // reduce, the node fails its gets of the target (docs/architecture.md).
  ObjectID target;
};
// Read-only diagnostics, the one thing a rank-less (tool) connection may
// ask for; answered on the same connection.
struct DiagRequest {
  std::uint64_t request = 0;
};
struct DiagReply {
  std::uint64_t request = 0;
  Rank rank = kNoRank;
  std::uint32_t world = 0;
  std::uint64_t epoch = 0;  // membership epoch
  std::vector<Rank> failed;
  std::uint64_t objects = 0;
  std::uint64_t store_used = 0;
  std::uint64_t store_capacity = 0;
};

// An opaque message for a layer above the node (the task runtime): the
// node only carries it to the subscriber of `channel` on the receiving
// node, with the rank the connection authenticated as.
inline constexpr std::uint32_t kMaxAppPayload = 4u << 20;
struct AppMessage {
  std::uint16_t channel = 0;
  std::vector<std::uint8_t> payload;
};
// "Which members hold `id` now": answered at once by the object's shard
// (the task runtime asks it when a task's node died, to tell a result
// that survives elsewhere from one that must be recomputed).
struct Where {
  ObjectID id;
  std::uint64_t request = 0;
  Rank requester = kNoRank;
};
struct WhereReply {
  ObjectID id;
  std::uint64_t request = 0;
  bool known = false;         // the shard has a record of the object
  bool has_inline = false;    // the shard holds its bytes (readable with no holder)
  std::vector<Rank> holders;  // ranks that head a broadcast chain: complete copies, or the origin
};

// Liveness: sent to every member every heartbeat interval.
struct Heartbeat {
  Rank rank = kNoRank;
  std::uint64_t epoch = 0;  // the sender's membership epoch, for logs
};
// A restarted process asks the leader (the lowest live rank) to take its
// old rank back.
struct Rejoin {
  Rank rank = kNoRank;
  PeerInfo info;
};
// A member that does not lead answers a Rejoin with where the leader is.
struct RejoinAt {
  Rank leader = kNoRank;
  PeerInfo info;
};
// The leader tells every member that `rank` is back (with its new
// addresses). alive = false is refused: each member detects failures itself.
struct PeerUpdate {
  Rank rank = kNoRank;
  bool alive = true;
  PeerInfo info;
};
// Declares `id` as the concatenation of `parts` (which tile [0, size)).
struct PublishComposite {
  ObjectID id;
  std::uint64_t request = 0;
  std::uint64_t size = 0;
  std::vector<Part> parts;
};
struct ReduceDone {
  std::uint64_t task = 0;
  std::uint16_t code = 0;  // a StatusCode; 0 = ok
  std::string message;
};
// The coordinator no longer needs a task (a participant below it died and
// its path is recomputed): stop it and drop its output, which is not
// reported as done.
struct ReduceCancel {
  std::uint64_t task = 0;
  ObjectID output;
};

// To a task whose upstream (a failed position) is being replaced by the
// same computation elsewhere: keep what was folded from it, read the rest
// from `next.output`, and forward `next` to its holder with `start` set to
// the first byte still needed.
struct ReduceRetarget {
  std::uint64_t task = 0;
  ObjectID old_upstream;
  Rank holder = kNoRank;  // where next.output is made (or, without a task, held)
  ReduceTask next;        // next.task == 0: nothing to forward, read next.output
};
// From a task to its coordinator: the holder of one of its upstreams died;
// the task keeps its progress and waits for a retarget or a cancel.
struct ReduceLost {
  std::uint64_t task = 0;
  Rank failed = kNoRank;
};
// From a coordinator to the ranks that ran its tasks: the reduce into
// `target` is complete, so what its tasks left here (the target's copy, the
// stripes) is a result now and outlives the coordinator.
struct ReduceRelease {
  ObjectID target;
};

using Message =
    std::variant<Hello, HelloAck, Error, Register, Table, Barrier, BarrierDone, Publish, PublishAck,
                 Unpublish, Lookup, LookupReply, Remove, RemoveAck, Delete, Watch, Progress, Unwatch, Locate,
                 LocateReply, ReduceTask, ReduceDone, PublishComposite, Heartbeat, Rejoin, PeerUpdate,
                 ReduceCancel, ReduceRetarget, ReduceLost, Challenge, Proof, DiagRequest, DiagReply,
                 AppMessage, Where, WhereReply, RejoinAt, ReduceRelease>;

// A complete frame: header + payload.
std::vector<std::uint8_t> encode(const Message& m);
[[nodiscard]] Result<Message> decode(std::uint8_t type, std::span<const std::uint8_t> payload);
const char* type_name(const Message& m);

}  // namespace hoplite::control
