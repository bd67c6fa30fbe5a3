// DirectoryService: hosts this node's shard of the object directory on the
// control plane.
//
// The shard itself (directory/shard.h) is pure; this component feeds it the
// directory messages addressed to this node and sends the replies it
// produces: lookups answered or parked until a put, locates, publishes and
// their acks, removes (telling every holder to delete its copy, a
// composite's parts included) and composite declarations. A failed rank is
// forgotten by the shard: it holds nothing and waits for nothing. Requests
// the shard refuses at its limits are counted in NodeStats::refused_messages
// and logged (at each doubling of a rank's count).
//
// Owns: the shard; Publish, Unpublish, Lookup, Locate, Remove and
// PublishComposite.
// Thread-binding: the progress thread.
#pragma once

#include "directory/shard.h"
#include "node/context.h"

namespace hoplite::node {

class DirectoryService final : public Component {
 public:
  explicit DirectoryService(NodeContext& ctx);

  void on_peer_lost(Rank r) override {
    shard_.forget_rank(r);
    send_answered();
  }

 private:
  void send_answered() {
    for (auto& a : shard_.take_answered()) ctx_.send(a.to, a.reply);
  }
  void on_remove(const msg::Remove& r);
  void count_refusal(const char* what, Rank from, const ObjectID& id);

  NodeContext& ctx_;
  directory::DirectoryShard shard_;
  std::unordered_map<Rank, std::uint64_t> refusals_of_;
};

}  // namespace hoplite::node
