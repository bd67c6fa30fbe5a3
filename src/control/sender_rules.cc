#include "control/sender_rules.h"

#include <string>

namespace hoplite::control {
namespace {

Status claims(const char* type, const char* field, Rank named, Rank from) {
  if (named == from) return {};
  return protocol_error(std::string(type) + "." + field + " names rank " + std::to_string(named) +
                        " but the connection is rank " + std::to_string(from));
}

Status only_from(const char* type, Rank from, Rank holder, const char* role) {
  if (from == holder) return {};
  return protocol_error(std::string(type) + " from rank " + std::to_string(from) + ", which is not the " +
                        role + " (rank " + std::to_string(holder) + ")");
}

struct Rule {
  Rank from;
  Roles roles;

  Status operator()(const Hello&) const { return protocol_error("second hello on a connection"); }
  Status operator()(const Challenge&) const { return protocol_error("challenge after the handshake"); }
  Status operator()(const Proof&) const { return protocol_error("proof after the handshake"); }
  Status operator()(const Register& m) const { return claims("Register", "rank", m.rank, from); }
  Status operator()(const Rejoin& m) const { return claims("Rejoin", "rank", m.rank, from); }
  Status operator()(const Heartbeat& m) const { return claims("Heartbeat", "rank", m.rank, from); }
  Status operator()(const Barrier& m) const { return claims("Barrier", "rank", m.rank, from); }
  Status operator()(const Publish& m) const { return claims("Publish", "rank", m.rank, from); }
  Status operator()(const Unpublish& m) const { return claims("Unpublish", "rank", m.rank, from); }
  Status operator()(const Lookup& m) const { return claims("Lookup", "requester", m.requester, from); }
  Status operator()(const Locate& m) const { return claims("Locate", "requester", m.requester, from); }
  Status operator()(const Remove& m) const { return claims("Remove", "requester", m.requester, from); }
  Status operator()(const Where& m) const { return claims("Where", "requester", m.requester, from); }
  Status operator()(const Watch& m) const { return claims("Watch", "requester", m.requester, from); }
  Status operator()(const Unwatch& m) const { return claims("Unwatch", "requester", m.requester, from); }
  Status operator()(const Table&) const { return only_from("Table", from, roles.bootstrap, "bootstrap"); }
  Status operator()(const PeerUpdate& m) const {
    if (!m.alive) return protocol_error("PeerUpdate of a failure: each member detects failures itself");
    // A rank below the leader we know may lead already (rank 0 came back
    // and took a rejoin before we heard of it), and one whose death we saw
    // may have announced a rejoin just before it died.
    if (from <= roles.bootstrap) return {};
    return only_from("PeerUpdate", from, roles.bootstrap, "bootstrap");
  }
  Status operator()(const BarrierDone&) const {
    return only_from("BarrierDone", from, roles.barrier_leader, "barrier leader");
  }
  // The rest name no sender (replies, tasks, deletes, progress): their
  // components check them against what they asked for. A ReduceTask may come
  // from a task other than its coordinator (a retarget forwards it).
  template <typename M>
  Status operator()(const M&) const {
    return {};
  }
};

}  // namespace

Status check_sender(const Message& m, Rank from, const Roles& roles) {
  if (from == kNoRank) {
    // Tools are authenticated but are not members: they may read, never
    // change membership, the directory or a collective.
    if (std::holds_alternative<Error>(m) || std::holds_alternative<DiagRequest>(m)) return {};
    return protocol_error(std::string("a rank-less connection may not send ") + type_name(m));
  }
  return std::visit(Rule{from, roles}, m);
}

}  // namespace hoplite::control
