// Composites: gets of composite objects (a striped allreduce's result).
//
// A composite is declared in the directory as a list of parts, each made
// on one node. A get reads every part into its place in one extent of the
// local store (the Fetcher moves the bytes); holders of a part read the
// others around the ring of holders (part j flows h_j -> h_j+1 -> ...) and
// serve each part on as a view of the extent while it grows, so each node
// receives from one peer and sends to one, as in a ring allgather. When the
// last part lands the composite is sealed and published like any copy. A
// producer that dies fails the assembly; the waiting gets then look the
// object up again (the allreduce repairs its stripes and declares it again)
// a few times. The parts that were complete are kept meanwhile, and a new
// declaration that keeps them (same part id, same place) takes them from
// here instead of reading them again.
//
// Owns: assemblies in progress, the part views kept after assembly (ring
// successors still read them), the retry counts, the complete parts of
// failed assemblies until they are looked up again.
// Thread-binding: the progress thread.
#pragma once

#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "node/context.h"

namespace hoplite::node {

class DirectoryClient;
class Fetcher;
class ObjectServer;

class Composites final : public Component {
 public:
  Composites(NodeContext& ctx, Fetcher& fetcher, ObjectServer& server, DirectoryClient& dir);

  // The directory answered a lookup with a composite's parts.
  void start(const msg::LookupReply& r);
  void part_done(const ObjectID& composite, const ObjectID& part);
  // By value: the caller's id may live in a part record this ends.
  void fail(ObjectID composite, const Status& why);
  // `id` is a composite being assembled here (not yet a copy).
  bool assembling(const ObjectID& id) const { return gets_.count(id) > 0; }
  // `id` was deleted here: its part views go with it.
  void forget(const ObjectID& id);
  // A reduce task takes over `id`: an assembly of the same id that still
  // uses `entry` stops, and its views are withdrawn.
  void abandon(const ObjectID& id, const std::shared_ptr<store::ObjectEntry>& entry);

 private:
  struct Assembly {
    std::shared_ptr<store::ObjectEntry> entry;
    std::vector<msg::Part> parts;
    std::unordered_set<ObjectID> done;  // parts complete in `entry`
    std::vector<ObjectID> views;        // parts registered as views of `entry`
    std::size_t remaining = 0;
  };
  // A failed assembly's complete parts (its extent, out of the store's
  // index but pinned here). One per composite; dropped at the next lookup's
  // start, at the final failure, or after a few failure timeouts.
  struct Salvage {
    std::shared_ptr<store::ObjectEntry> entry;
    std::vector<msg::Part> parts;
  };

  void dismantle(std::unordered_map<ObjectID, Assembly>::iterator it);
  void finish(std::unordered_map<ObjectID, Assembly>::iterator it);
  // Copies part `p` from a salvaged assembly into `a`, if it has it.
  bool take_salvaged(const Salvage* old, const msg::Part& p, Assembly& a);

  NodeContext& ctx_;
  Fetcher& fetcher_;
  ObjectServer& server_;
  DirectoryClient& dir_;
  std::unordered_map<ObjectID, Assembly> gets_;
  std::unordered_map<ObjectID, std::vector<ObjectID>> views_;
  std::unordered_map<ObjectID, int> retries_;
  std::unordered_map<ObjectID, Salvage> salvage_;
};

}  // namespace hoplite::node
