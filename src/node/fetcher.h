// Fetcher: brings objects into the local store for gets.
//
// A get of an object not held here waits locally and asks the object's
// shard (Lookup). The answer is the bytes themselves (small objects), a
// composite's parts (handed to Composites), or a sender: a node with a
// complete or partial copy, at the tail of a broadcast chain. The fetcher
// then watches the sender (Watch/Progress, served by its ObjectServer) and
// reads chunks that the sender has with one-sided gets, pipeline_depth in
// flight, straight into the destination extent. What arrived in order is
// served on at once (our own ObjectServer), so chains stream. A sender that
// dies or drops its copy is replaced: the transfer resumes from its last
// contiguous byte from another copy (Lookup with resume), a bounded number
// of times.
//
// Owns: the local waiters of gets, pending lookups, inbound transfers (of
// whole objects and of composite parts), their streams; LookupReply, Delete
// and Progress on its own streams.
// Thread-binding: the progress thread.
#pragma once

#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "hoplite/object_view.h"
#include "node/context.h"

namespace hoplite::node {

class Composites;
class DirectoryClient;
class ObjectServer;

// One part of a composite object, read into its place in the composite's
// extent; Composites counts the parts.
struct PartTransfer {
  ObjectID id;
  ObjectID composite;
  std::shared_ptr<store::ObjectEntry> entry;  // a view peers read, or the composite itself
  std::byte* dest = nullptr;
  std::uint64_t offset = 0;  // of the part in the composite (dest - offset is the composite's extent)
  std::uint64_t size = 0;
  Rank sender = 0;
  Rank producer = 0;    // where the part is made (the fallback sender)
  bool serves = false;  // `entry` is a view served to peers as it grows
};

class Fetcher final : public Component {
 public:
  Fetcher(NodeContext& ctx, ObjectServer& server, DirectoryClient& dir);
  void set_composites(Composites* c) { composites_ = c; }

  void start_get(const std::shared_ptr<detail::GetState>& st, bool must_exist, Rank after = msg::kNoRank,
                 bool direct = false);
  void start_lookup(const ObjectID& id, bool must_exist, Rank after = msg::kNoRank, bool direct = false);
  // A local get of `id` waits; with must_exist it must not wait for a put.
  bool has_waiters(const ObjectID& id) const { return waiters_.count(id) > 0; }
  bool must_exist(const ObjectID& id) const { return must_exist_ids_.count(id) > 0; }
  // A copy of `id` is on its way here (our lookup is in flight).
  bool lookup_pending(const ObjectID& id) const { return lookups_pending_.count(id) > 0; }
  bool receiving(const ObjectID& id) const { return inbound_.count(id) > 0; }
  // Waiting lookups of `id` look again (its copy is being replaced).
  void relookup_if_waiting(const ObjectID& id) {
    if (has_waiters(id)) start_lookup(id, must_exist(id));
  }

  void fulfill_waiters(const ObjectID& id, const Result<ObjectView>& r);
  // A copy was completed here (put, seal, reduce output): serve and answer.
  void on_local_sealed(const std::shared_ptr<store::ObjectEntry>& e);
  // Drops the local copy of `id` and everything reading into it.
  void delete_local(const ObjectID& id);
  ObjectView view_of(const std::shared_ptr<store::ObjectEntry>& e) const;

  // Composite parts (Composites): registered first, then started once all
  // are registered; ended early when the composite is given up.
  void add_part(const PartTransfer& p);
  void start_part(const ObjectID& part);
  void end_part(const ObjectID& part, const ObjectID& composite);

  void on_peer_lost(Rank r) override;
  void on_shards_moved(const std::vector<bool>& old_alive) override;
  void on_stop() override;
  // After the sockets closed: nothing is read any more.
  void clear() { inbound_.clear(); }

 private:
  struct Inbound {
    std::shared_ptr<store::ObjectEntry> entry;
    Rank sender = 0;
    std::uint64_t gen = 0;
    std::uint64_t remote_offset = 0;
    std::uint64_t sender_ready = 0;
    std::uint64_t next = 0;        // first byte not yet requested
    std::uint64_t contiguous = 0;  // all bytes below are received
    unsigned in_flight = 0;
    std::map<std::uint64_t, std::uint64_t> done;  // completed ranges above `contiguous`
    // Set for a part of a composite object: the bytes land at `dest` inside
    // the composite's extent, and completion is counted there.
    ObjectID composite;
    std::byte* dest = nullptr;
    std::uint64_t part_offset = 0;
    std::uint64_t size = 0;
    int watch_retries = 0;
    bool resuming = false;     // the sender died; a new one is being looked up
    std::uint64_t stream = 0;  // of the current Watch
    Rank producer = 0;         // composite parts: where the part is made
    bool serves = false;       // composite parts: `entry` is a view peers read
    int resumes = 0;
  };

  void on_lookup_reply(const msg::LookupReply& r);
  void handle_lookup_reply(const msg::LookupReply& r);
  void on_progress(const msg::Progress& p, Rank from);
  void watch(const ObjectID& id);
  void end_stream(Inbound& in);
  void pump(const ObjectID& id);
  void on_chunk(const ObjectID& id, std::uint64_t gen, std::uint64_t offset, std::uint64_t len, Status st);
  // Tells the gets that copy while the object arrives that `in`'s bytes
  // [from, to) (of the transfer) are in.
  void report_landed(const Inbound& in, const ObjectID& id, std::uint64_t from, std::uint64_t to);
  void finish(const ObjectID& id);
  void abort(const ObjectID& id, const Status& why, bool retry);
  void resume(const ObjectID& id, const Status& why);

  NodeContext& ctx_;
  ObjectServer& server_;
  DirectoryClient& dir_;
  Composites* composites_ = nullptr;
  std::uint8_t stream_owner_ = 0;
  std::uint64_t next_gen_ = 1;
  std::unordered_map<ObjectID, Inbound> inbound_;
  std::unordered_map<std::uint64_t, ObjectID> stream_to_inbound_;
  std::unordered_set<ObjectID> lookups_pending_;
  std::unordered_set<ObjectID> must_exist_ids_;  // gets that must not wait for a put
  std::unordered_map<ObjectID, std::vector<std::shared_ptr<detail::GetState>>> waiters_;
  std::unordered_map<ObjectID, int> source_of_;
};

}  // namespace hoplite::node
