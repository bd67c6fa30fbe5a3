// Sender rules: which rank may send which control message.
//
// A connection speaks only for the rank its handshake authenticated. A
// message that names its sender (Publish.rank, Lookup.requester, ...) must
// name that rank; the bootstrap's messages (Table, PeerUpdate) come only
// from the rank that runs the bootstrap (the one we joined through, then
// the leader), a BarrierDone only from the barrier leader; a rank-less tool connection may send only
// read-only requests (DiagRequest). What needs per-object state (a Progress from the rank being watched, a
// ReduceDone from the task's rank, a LookupReply someone asked for) is checked by the component that holds
// the state.
//
// Thread-safety: a pure function.
#pragma once

#include "control/messages.h"

namespace hoplite::control {

// Who holds the roles whose messages only they may send.
struct Roles {
  Rank bootstrap = 0;       // Table, PeerUpdate: our join contact, then the leader
  Rank barrier_leader = 0;  // BarrierDone: the lowest live rank
};

// ok, or a protocol error saying what was refused. `from` is the
// authenticated rank (kNoRank for a tool).
[[nodiscard]] Status check_sender(const Message& m, Rank from, const Roles& roles);

}  // namespace hoplite::control
