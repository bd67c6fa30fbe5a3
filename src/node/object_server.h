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
// Bounded (docs/security.md): a rank holds at most kMaxWatchesPerRank
// watches here, and has at most kMaxParkedPerRank waiting for copies
// (kMaxParked in all). Past a bound a Watch is answered "not here" (the
// reader looks elsewhere through the directory), counted in
// NodeStats::refused_messages and logged. Each watch pins its copy's
// extent; a copy that goes (Delete, an aborted transfer) drops its watchers
// and with them the pins, so a watch never keeps a removed extent alive.
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
  // Also told of every notify (gone = false) and drop (gone = true): the
  // reduce executor, whose tasks may read a local input still being written.
  using LocalListener = std::function<void(const ObjectID& id, bool gone)>;
  void set_local_listener(LocalListener l) { local_listener_ = std::move(l); }

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
    count_watches();
  }

  // An honest reader watches each object it reads once per stream, here
  // only while it reads (a chain member, a reduce task's inputs, a
  // composite's parts): a rank reading 16384 objects from one holder at
  // once is far past any collective or task graph we run (a reduce task
  // reads at most a few inputs at a time); the watchers cost ~100 bytes
  // each.
  static constexpr std::size_t kMaxWatchesPerRank = 16384;
  // Watches park only in the moment between the directory naming us a
  // sender and our own lookup's answer, one per reader stream.
  static constexpr std::size_t kMaxParkedPerRank = 4096;
  static constexpr std::size_t kMaxParked = 65536;

 private:
  struct Watcher {
    std::shared_ptr<store::ObjectEntry> pin;
    std::uint64_t sent = 0;
  };
  void on_watch(const msg::Watch& w);
  // A Watch past a bound: counted, and logged at each doubling of the
  // rank's refusals (a peer hammering the limit must not flood the log).
  void refuse(const msg::Watch& w, const std::string& why);
  // Publishes the number of watchers to NodeStats.
  void count_watches();

  NodeContext& ctx_;
  std::function<bool(const ObjectID&)> copy_coming_;
  LocalListener local_listener_;
  // Readers of our objects, by (rank, stream).
  std::unordered_map<ObjectID, std::map<std::pair<Rank, std::uint64_t>, Watcher>> watchers_;
  std::unordered_map<ObjectID, std::vector<std::pair<Rank, std::uint64_t>>> parked_;
  std::unordered_map<Rank, std::size_t> watches_of_;  // watchers_ entries by rank
  std::unordered_map<Rank, std::size_t> parked_of_;   // parked_ entries by rank
  std::unordered_map<Rank, std::uint64_t> refusals_of_;
  std::size_t parked_count_ = 0;
};

}  // namespace hoplite::node
