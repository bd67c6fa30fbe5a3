#include "control/sender_rules.h"

#include <string>

namespace hoplite::control {
namespace {

Status claims(const char* type, const char* field, Rank named, Rank from) {
  if (named == from) return {};
  return protocol_error(std::string(type) + "." + field + " names rank " + std::to_string(named) +
                        " but the connection is rank " + std::to_string(from));
}

Status bootstrap_only(const char* type, Rank from, Rank bootstrap) {
  if (from == bootstrap) return {};
  return protocol_error(std::string(type) + " from rank " + std::to_string(from) +
                        ", which is not the bootstrap (rank " + std::to_string(bootstrap) + ")");
}

struct Rule {
  Rank from;
  Rank bootstrap;

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
  Status operator()(const Watch& m) const { return claims("Watch", "requester", m.requester, from); }
  Status operator()(const Unwatch& m) const { return claims("Unwatch", "requester", m.requester, from); }
  Status operator()(const Table&) const { return bootstrap_only("Table", from, bootstrap); }
  Status operator()(const PeerUpdate&) const { return bootstrap_only("PeerUpdate", from, bootstrap); }
  Status operator()(const BarrierDone&) const { return bootstrap_only("BarrierDone", from, bootstrap); }
  // The rest name no sender (replies, tasks, deletes, progress): their
  // components check them against what they asked for. A ReduceTask may come
  // from a task other than its coordinator (a retarget forwards it).
  template <typename M>
  Status operator()(const M&) const {
    return {};
  }
};

}  // namespace

Status check_sender(const Message& m, Rank from, Rank bootstrap) {
  if (from == kNoRank) {
    // Tools are authenticated but are not members: they may read, never
    // change membership, the directory or a collective.
    if (std::holds_alternative<Error>(m) || std::holds_alternative<DiagRequest>(m)) return {};
    return protocol_error(std::string("a rank-less connection may not send ") + type_name(m));
  }
  return std::visit(Rule{from, bootstrap}, m);
}

}  // namespace hoplite::control
