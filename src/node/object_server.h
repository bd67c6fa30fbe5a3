// ObjectServer: serves this node's copies to readers on other nodes.
//
// A reader sends Watch for an object (with a stream id of its own); the
// server pins the copy and answers with Progress: where the bytes are in
// its region and how many are valid. As a partial copy grows (a chain
// member still receiving, a reduce task still folding, a streaming put)
// every watcher hears the new valid length, which is what lets chains
// stream. Unwatch unpins. A copy that goes away tells its watchers, who find
// another through the directory.
//
// Bounded: a rank holds at most kMaxWatchesPerRank watches here (each pins
// an extent, removed or not) and kMaxParked watches wait for copies in all;
// past either, a Watch is answered "not here" and the reader looks
// elsewhere.
//
// Owns: the watchers of local objects and the watches that arrived before
// the copy did (parked); Watch and Unwatch.
// Thread-binding: the progress thread.
#pragma once

#include <map>
#include <unordered_map>
#include <vector>

#include "node/context.h"

namespace hoplite::node {

class ObjectServer final : public Component {
 public:
  // `copy_coming(id)`: a copy of `id` is on its way here (our own lookup is
  // in flight), so a watch for it waits instead of being told "not here".
  ObjectServer(NodeContext& ctx, std::function<bool(const ObjectID&)> copy_coming);

  // The local copy of `id` grew: tell every watcher how far.
  void notify(const ObjectID& id);
  // The local copy of `id` is gone. `withdrawn`: it will not come back
  // (a cancelled reduce output), so readers must not wait for it.
  void drop(const ObjectID& id, bool withdrawn = false);
  // Our lookup of `id` was answered: serve the watches that waited for it.
  void replay_parked(const ObjectID& id);

  // The data plane's access check: `peer` may read [offset, +length) of
  // the region for `id` only while it watches our copy of `id` (the
  // Progress we sent it is the grant), and only bytes already valid.
  [[nodiscard]] Status granted(Rank peer, const ObjectID& id, std::uint64_t offset,
                               std::uint64_t length) const;

  void on_peer_lost(Rank r) override;
  // After the sockets closed: nothing is served any more.
  void clear() {
    watchers_.clear();
    watches_of_.clear();
  }

 private:
  static constexpr std::size_t kMaxWatchesPerRank = 16384;
  static constexpr std::size_t kMaxParked = 65536;

  struct Watcher {
    std::shared_ptr<store::ObjectEntry> pin;
    std::uint64_t sent = 0;
  };
  void on_watch(const msg::Watch& w);

  NodeContext& ctx_;
  std::function<bool(const ObjectID&)> copy_coming_;
  // Readers of our objects, by (rank, stream).
  std::unordered_map<ObjectID, std::map<std::pair<Rank, std::uint64_t>, Watcher>> watchers_;
  std::unordered_map<ObjectID, std::vector<std::pair<Rank, std::uint64_t>>> parked_;
  std::unordered_map<Rank, std::size_t> watches_of_;  // watchers_ entries by rank
  std::size_t parked_count_ = 0;
};

}  // namespace hoplite::node
