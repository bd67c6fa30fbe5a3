// BroadcastPlanner: receiver-driven chains for one object.
//
// Each chain's head holds a complete copy (or is the object's origin while it
// is still being written); every other member holds a partial copy streaming
// from its predecessor. A new receiver is given the tail of the shortest
// chain and appended to it, so it is a valid sender from that moment. When a
// member completes, it becomes the head of a chain of its own with its
// successors, so later receivers fan out across copies. A chain whose head
// was removed (its source died or aborted) takes no new receivers.
//
// Pure: no sockets, no clocks; unit-tested over arrival sequences.
// Thread-safety: none; owned by one directory shard.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <unordered_set>
#include <vector>

namespace hoplite::scheduler {

using Rank = std::uint32_t;

class BroadcastPlanner {
 public:
  // A node holds a copy that can head a chain (an origin, or a completed
  // receiver). Idempotent.
  void add_source(Rank r);
  // `receiver` wants the object: returns its sender and appends it to that
  // sender's chain, or nullopt when no copy exists yet (the caller keeps the
  // receiver waiting). A receiver already planned is re-planned.
  std::optional<Rank> assign(Rank receiver);
  // `receiver` wants to read from `after` (a ring order): appended after it
  // when `after` ends a chain that a source feeds. nullopt when `after` is
  // not planned yet, or is followed already (then assign() decides).
  std::optional<Rank> assign_after(Rank receiver, Rank after);
  bool planned(Rank r) const { return find(r).has_value(); }
  // The receiver now holds the complete object.
  void complete(Rank r) { add_source(r); }
  // The node no longer holds (or will not get) the object.
  void remove(Rank r);
  // The member right before `r` in its chain: it streams from the same
  // head and is ahead of `r`, so it can take over when the sender between
  // them died (after remove() of that sender). nullopt for a head or a
  // rank that is not planned.
  std::optional<Rank> predecessor(Rank r) const;

  bool empty() const { return chains_.empty(); }
  // A chain can take receivers only while its head is a source.
  bool has_source() const { return !sources_.empty(); }
  std::vector<Rank> members() const;
  // Origins and complete copies.
  const std::set<Rank>& sources() const { return sources_; }
  const std::vector<std::vector<Rank>>& chains() const { return chains_; }

 private:
  // (chain index, position) of r, if it is planned.
  std::optional<std::pair<std::size_t, std::size_t>> find(Rank r) const;
  std::vector<std::vector<Rank>> chains_;
  std::set<Rank> sources_;            // origins and complete copies
  std::unordered_set<Rank> planned_;  // every member of a chain
};

}  // namespace hoplite::scheduler
