#include "control/messages.h"

#include <cstring>

namespace hoplite::control {
namespace {

using wire::WireReader;
using wire::WireWriter;

#define TRY(expr) HOPLITE_RETURN_IF_ERROR(expr)

// The fewest bytes one element of a counted list takes on the wire.
constexpr std::size_t kMinPeerBytes = 4 + 2 + 4 + 4;  // three empty strings and a port
constexpr std::size_t kMinPartBytes = ObjectID::kSize + 4 + 8 + 8;
constexpr std::size_t kMinUpstreamBytes = ObjectID::kSize + 4 + 8;

// A count read from the wire is checked against the bytes left before
// anything is allocated for it. Without this, a 12-byte Table frame claiming
// 65536 peers made the decoder build 6 MB of empty PeerInfo before failing
// on the first one, and a Table is decoded before the hello is checked
// (found through fuzz/table: 1.8k executions/s and 350 MB of peak RSS).
Status check_count(const WireReader& r, std::uint32_t n, std::size_t min_bytes, const char* what) {
  if (n <= r.remaining() / min_bytes) return {};
  return protocol_error(std::string(what) + " of " + std::to_string(n) + " entries in " +
                        std::to_string(r.remaining()) + " bytes");
}

void put_peer(WireWriter& w, const PeerInfo& p) {
  w.str(p.host);
  w.u16(p.control_port);
  w.str(p.transport_address);
  w.bytes(p.remote_key);
}
Status get_peer(WireReader& r, PeerInfo& p) {
  TRY(r.str(p.host, kMaxString));
  TRY(r.u16(p.control_port));
  TRY(r.str(p.transport_address, kMaxString));
  return r.bytes(p.remote_key, kMaxString);
}

void put_parts(WireWriter& w, const std::vector<Part>& parts) {
  w.u32(static_cast<std::uint32_t>(parts.size()));
  for (const auto& p : parts) {
    w.id(p.id);
    w.u32(p.holder);
    w.u64(p.offset);
    w.u64(p.size);
  }
}
// Parts must tile [0, size) in order: anything else would make a reader
// write outside the object or leave holes in it.
Status get_parts(WireReader& r, std::vector<Part>& parts, std::uint64_t size) {
  std::uint32_t n;
  TRY(r.u32(n));
  if (n > kMaxParts) return protocol_error("composite of " + std::to_string(n) + " parts");
  TRY(check_count(r, n, kMinPartBytes, "composite"));
  parts.resize(n);
  std::uint64_t at = 0;
  for (auto& p : parts) {
    TRY(r.id(p.id));
    TRY(r.u32(p.holder));
    TRY(r.u64(p.offset));
    TRY(r.u64(p.size));
    if (p.offset != at || p.size > size - at) return protocol_error("composite parts do not tile the object");
    at += p.size;
  }
  if (at != size) return protocol_error("composite parts do not cover the object");
  return {};
}

Status get_bool(WireReader& r, bool& b) {
  std::uint8_t v;
  TRY(r.u8(v));
  if (v > 1) return protocol_error("boolean field holds " + std::to_string(v));
  b = v != 0;
  return {};
}

template <typename E>
Status get_enum(WireReader& r, E& e, std::uint8_t max) {
  std::uint8_t v;
  TRY(r.u8(v));
  if (v > max) return protocol_error("enum field out of range: " + std::to_string(v));
  e = static_cast<E>(v);
  return {};
}

// One encoder per message; MsgType comes from the overload chosen.
MsgType write(WireWriter& w, const Hello& m) {
  w.u32(m.protocol);
  w.u32(m.rank);
  w.u8(static_cast<std::uint8_t>(m.channel));
  w.fixed(m.nonce);
  return MsgType::kHello;
}
MsgType write(WireWriter& w, const Challenge& m) {
  w.u32(m.rank);
  w.fixed(m.nonce);
  w.fixed(m.mac);
  return MsgType::kChallenge;
}
MsgType write(WireWriter& w, const Proof& m) {
  w.fixed(m.mac);
  return MsgType::kProof;
}
MsgType write(WireWriter& w, const DiagRequest& m) {
  w.u64(m.request);
  return MsgType::kDiagRequest;
}
MsgType write(WireWriter& w, const DiagReply& m) {
  w.u64(m.request);
  w.u32(m.rank);
  w.u32(m.world);
  w.u64(m.epoch);
  w.u32(static_cast<std::uint32_t>(m.failed.size()));
  for (Rank r : m.failed) w.u32(r);
  w.u64(m.objects);
  w.u64(m.store_used);
  w.u64(m.store_capacity);
  return MsgType::kDiagReply;
}
MsgType write(WireWriter& w, const AppMessage& m) {
  w.u16(m.channel);
  w.bytes(m.payload);
  return MsgType::kAppMessage;
}
MsgType write(WireWriter& w, const Where& m) {
  w.id(m.id);
  w.u64(m.request);
  w.u32(m.requester);
  return MsgType::kWhere;
}
MsgType write(WireWriter& w, const WhereReply& m) {
  w.id(m.id);
  w.u64(m.request);
  w.u8(m.known ? 1 : 0);
  w.u8(m.has_inline ? 1 : 0);
  w.u32(static_cast<std::uint32_t>(m.holders.size()));
  for (Rank r : m.holders) w.u32(r);
  return MsgType::kWhereReply;
}
MsgType write(WireWriter& w, const HelloAck& m) {
  w.u32(m.rank);
  return MsgType::kHelloAck;
}
MsgType write(WireWriter& w, const Error& m) {
  w.u16(m.code);
  w.str(m.message);
  return MsgType::kError;
}
MsgType write(WireWriter& w, const Register& m) {
  w.u32(m.rank);
  put_peer(w, m.info);
  return MsgType::kRegister;
}
MsgType write(WireWriter& w, const Table& m) {
  w.u32(static_cast<std::uint32_t>(m.peers.size()));
  for (const auto& p : m.peers) put_peer(w, p);
  w.u32(static_cast<std::uint32_t>(m.failed.size()));
  for (Rank f : m.failed) w.u32(f);
  w.u64(m.barrier);
  return MsgType::kTable;
}
MsgType write(WireWriter& w, const Barrier& m) {
  w.u64(m.epoch);
  w.u32(m.rank);
  return MsgType::kBarrier;
}
MsgType write(WireWriter& w, const BarrierDone& m) {
  w.u64(m.epoch);
  return MsgType::kBarrierDone;
}
MsgType write(WireWriter& w, const Publish& m) {
  w.id(m.id);
  w.u64(m.request);
  w.u64(m.size);
  w.u32(m.rank);
  w.u8(static_cast<std::uint8_t>(m.state));
  w.u8(m.has_inline ? 1 : 0);
  if (m.has_inline) w.bytes(m.inline_data);
  return MsgType::kPublish;
}
MsgType write(WireWriter& w, const PublishAck& m) {
  w.id(m.id);
  w.u64(m.request);
  return MsgType::kPublishAck;
}
MsgType write(WireWriter& w, const Unpublish& m) {
  w.id(m.id);
  w.u32(m.rank);
  return MsgType::kUnpublish;
}
MsgType write(WireWriter& w, const Lookup& m) {
  w.id(m.id);
  w.u64(m.request);
  w.u32(m.requester);
  w.u8(m.must_exist ? 1 : 0);
  w.u8(m.resume ? 1 : 0);
  w.u32(m.after);
  w.u8(m.direct ? 1 : 0);
  return MsgType::kLookup;
}
MsgType write(WireWriter& w, const LookupReply& m) {
  w.id(m.id);
  w.u64(m.request);
  w.u8(static_cast<std::uint8_t>(m.result));
  w.u64(m.size);
  w.u32(m.sender);
  w.bytes(m.inline_data);
  if (m.result == LookupResult::kComposite) put_parts(w, m.parts);
  return MsgType::kLookupReply;
}
MsgType write(WireWriter& w, const Remove& m) {
  w.id(m.id);
  w.u64(m.request);
  w.u32(m.requester);
  return MsgType::kRemove;
}
MsgType write(WireWriter& w, const RemoveAck& m) {
  w.id(m.id);
  w.u64(m.request);
  return MsgType::kRemoveAck;
}
MsgType write(WireWriter& w, const Delete& m) {
  w.id(m.id);
  return MsgType::kDelete;
}
MsgType write(WireWriter& w, const Watch& m) {
  w.id(m.id);
  w.u32(m.requester);
  w.u64(m.stream);
  return MsgType::kWatch;
}
MsgType write(WireWriter& w, const Progress& m) {
  w.id(m.id);
  w.u8(m.present ? 1 : 0);
  w.u64(m.offset);
  w.u64(m.size);
  w.u64(m.ready);
  w.u64(m.stream);
  return MsgType::kProgress;
}
MsgType write(WireWriter& w, const Unwatch& m) {
  w.id(m.id);
  w.u32(m.requester);
  w.u64(m.stream);
  return MsgType::kUnwatch;
}

MsgType write(WireWriter& w, const Locate& m) {
  w.id(m.id);
  w.u64(m.request);
  w.u32(m.requester);
  w.u32(m.inline_max);
  w.u8(m.partial_ok ? 1 : 0);
  return MsgType::kLocate;
}
MsgType write(WireWriter& w, const LocateReply& m) {
  w.id(m.id);
  w.u64(m.request);
  w.u64(m.size);
  w.u32(m.holder);
  w.u8(m.has_inline ? 1 : 0);
  if (m.has_inline) w.bytes(m.inline_data);
  w.u8(m.refused ? 1 : 0);
  return MsgType::kLocateReply;
}
MsgType write(WireWriter& w, const ReduceTask& m) {
  w.u64(m.task);
  w.u32(m.coordinator);
  w.id(m.output);
  w.id(m.input);
  w.u64(m.input_offset);
  w.u64(m.size);
  w.u64(m.start);
  w.u8(m.op);
  w.u8(m.dtype);
  w.u32(static_cast<std::uint32_t>(m.upstreams.size()));
  for (const auto& u : m.upstreams) {
    w.id(u.id);
    w.u32(u.holder);
    w.u64(u.offset);
  }
  w.id(m.target);
  return MsgType::kReduceTask;
}
MsgType write(WireWriter& w, const ReduceRetarget& m) {
  w.u64(m.task);
  w.id(m.old_upstream);
  w.u32(m.holder);
  write(w, m.next);
  return MsgType::kReduceRetarget;
}
MsgType write(WireWriter& w, const ReduceLost& m) {
  w.u64(m.task);
  w.u32(m.failed);
  return MsgType::kReduceLost;
}
MsgType write(WireWriter& w, const PublishComposite& m) {
  w.id(m.id);
  w.u64(m.request);
  w.u64(m.size);
  put_parts(w, m.parts);
  return MsgType::kPublishComposite;
}
MsgType write(WireWriter& w, const Heartbeat& m) {
  w.u32(m.rank);
  w.u64(m.epoch);
  return MsgType::kHeartbeat;
}
MsgType write(WireWriter& w, const Rejoin& m) {
  w.u32(m.rank);
  put_peer(w, m.info);
  return MsgType::kRejoin;
}
MsgType write(WireWriter& w, const PeerUpdate& m) {
  w.u32(m.rank);
  w.u8(m.alive ? 1 : 0);
  put_peer(w, m.info);
  return MsgType::kPeerUpdate;
}
MsgType write(WireWriter& w, const RejoinAt& m) {
  w.u32(m.leader);
  put_peer(w, m.info);
  return MsgType::kRejoinAt;
}
MsgType write(WireWriter& w, const ReduceDone& m) {
  w.u64(m.task);
  w.u16(m.code);
  w.str(m.message);
  return MsgType::kReduceDone;
}
MsgType write(WireWriter& w, const ReduceRelease& m) {
  w.id(m.target);
  return MsgType::kReduceRelease;
}
MsgType write(WireWriter& w, const ReduceCancel& m) {
  w.u64(m.task);
  w.id(m.output);
  return MsgType::kReduceCancel;
}

Status read_task(WireReader& r, ReduceTask& m) {
  TRY(r.u64(m.task));
  TRY(r.u32(m.coordinator));
  TRY(r.id(m.output));
  TRY(r.id(m.input));
  TRY(r.u64(m.input_offset));
  TRY(r.u64(m.size));
  TRY(r.u64(m.start));
  TRY(r.u8(m.op));
  TRY(r.u8(m.dtype));
  if (m.op > 3 || m.dtype > 5) return protocol_error("reduce task with an unknown op or type");
  if (m.start > m.size) return protocol_error("reduce task starts past its end");
  std::uint32_t n;
  TRY(r.u32(n));
  if (n > kMaxUpstreams) return protocol_error("reduce task with " + std::to_string(n) + " upstreams");
  TRY(check_count(r, n, kMinUpstreamBytes, "reduce task"));
  m.upstreams.resize(n);
  for (auto& u : m.upstreams) {
    TRY(r.id(u.id));
    TRY(r.u32(u.holder));
    TRY(r.u64(u.offset));
  }
  TRY(r.id(m.target));
  return Status();
}

Result<Message> read(MsgType type, WireReader& r) {
  switch (type) {
    case MsgType::kHello: {
      Hello m;
      TRY(r.u32(m.protocol));
      TRY(r.u32(m.rank));
      TRY(get_enum(r, m.channel, 1));
      TRY(r.fixed(m.nonce));
      return Message{m};
    }
    case MsgType::kChallenge: {
      Challenge m;
      TRY(r.u32(m.rank));
      TRY(r.fixed(m.nonce));
      TRY(r.fixed(m.mac));
      return Message{m};
    }
    case MsgType::kProof: {
      Proof m;
      TRY(r.fixed(m.mac));
      return Message{m};
    }
    case MsgType::kDiagRequest: {
      DiagRequest m;
      TRY(r.u64(m.request));
      return Message{m};
    }
    case MsgType::kDiagReply: {
      DiagReply m;
      TRY(r.u64(m.request));
      TRY(r.u32(m.rank));
      TRY(r.u32(m.world));
      TRY(r.u64(m.epoch));
      std::uint32_t n;
      TRY(r.u32(n));
      if (n > kMaxWorld) return protocol_error("diagnostics list " + std::to_string(n) + " failed ranks");
      TRY(check_count(r, n, 4, "failed ranks"));
      m.failed.resize(n);
      for (auto& f : m.failed) TRY(r.u32(f));
      TRY(r.u64(m.objects));
      TRY(r.u64(m.store_used));
      TRY(r.u64(m.store_capacity));
      return Message{m};
    }
    case MsgType::kAppMessage: {
      AppMessage m;
      TRY(r.u16(m.channel));
      TRY(r.bytes(m.payload, kMaxAppPayload));
      return Message{m};
    }
    case MsgType::kWhere: {
      Where m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      TRY(r.u32(m.requester));
      return Message{m};
    }
    case MsgType::kWhereReply: {
      WhereReply m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      TRY(get_bool(r, m.known));
      TRY(get_bool(r, m.has_inline));
      std::uint32_t n;
      TRY(r.u32(n));
      if (n > kMaxWorld) return protocol_error("where reply lists " + std::to_string(n) + " holders");
      TRY(check_count(r, n, 4, "holders"));
      m.holders.resize(n);
      for (auto& h : m.holders) TRY(r.u32(h));
      return Message{m};
    }
    case MsgType::kHelloAck: {
      HelloAck m;
      TRY(r.u32(m.rank));
      return Message{m};
    }
    case MsgType::kError: {
      Error m;
      TRY(r.u16(m.code));
      TRY(r.str(m.message, kMaxString));
      return Message{m};
    }
    case MsgType::kRegister: {
      Register m;
      TRY(r.u32(m.rank));
      TRY(get_peer(r, m.info));
      return Message{m};
    }
    case MsgType::kTable: {
      Table m;
      std::uint32_t n;
      TRY(r.u32(n));
      if (n == 0 || n > kMaxWorld) return protocol_error("table of " + std::to_string(n) + " peers");
      TRY(check_count(r, n, kMinPeerBytes, "table"));
      m.peers.resize(n);
      for (auto& p : m.peers) TRY(get_peer(r, p));
      std::uint32_t nf;
      TRY(r.u32(nf));
      if (nf >= n)
        return protocol_error("table of " + std::to_string(n) + " lists " + std::to_string(nf) + " failed");
      TRY(check_count(r, nf, 4, "failed ranks"));
      m.failed.resize(nf);
      std::vector<bool> seen(n, false);
      for (auto& f : m.failed) {
        TRY(r.u32(f));
        if (f >= n || seen[f])
          return protocol_error("table lists failed rank " + std::to_string(f) + " twice or out of range");
        seen[f] = true;
      }
      TRY(r.u64(m.barrier));
      // Barrier numbers stay far below 2^48 (BarrierBook::kMaxEpoch); one
      // above it would wrap a rejoiner's next barrier.
      if (m.barrier > (1ull << 48)) return protocol_error("table names barrier " + std::to_string(m.barrier));
      return Message{m};
    }
    case MsgType::kBarrier: {
      Barrier m;
      TRY(r.u64(m.epoch));
      TRY(r.u32(m.rank));
      return Message{m};
    }
    case MsgType::kBarrierDone: {
      BarrierDone m;
      TRY(r.u64(m.epoch));
      return Message{m};
    }
    case MsgType::kPublish: {
      Publish m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      TRY(r.u64(m.size));
      TRY(r.u32(m.rank));
      TRY(get_enum(r, m.state, 1));
      TRY(get_bool(r, m.has_inline));
      if (m.has_inline) {
        TRY(r.bytes(m.inline_data, kMaxInline));
        if (m.inline_data.size() != m.size) {
          return protocol_error("inline payload of " + std::to_string(m.inline_data.size()) +
                                " bytes for an object of " + std::to_string(m.size));
        }
      }
      return Message{m};
    }
    case MsgType::kPublishAck: {
      PublishAck m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      return Message{m};
    }
    case MsgType::kUnpublish: {
      Unpublish m;
      TRY(r.id(m.id));
      TRY(r.u32(m.rank));
      return Message{m};
    }
    case MsgType::kLookup: {
      Lookup m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      TRY(r.u32(m.requester));
      TRY(get_bool(r, m.must_exist));
      TRY(get_bool(r, m.resume));
      TRY(r.u32(m.after));
      TRY(get_bool(r, m.direct));
      return Message{m};
    }
    case MsgType::kLookupReply: {
      LookupReply m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      TRY(get_enum(r, m.result, 4));
      TRY(r.u64(m.size));
      TRY(r.u32(m.sender));
      TRY(r.bytes(m.inline_data, kMaxInline));
      if (m.result == LookupResult::kComposite) TRY(get_parts(r, m.parts, m.size));
      if (m.result == LookupResult::kInline && m.inline_data.size() != m.size) {
        return protocol_error("inline reply size mismatch");
      }
      return Message{m};
    }
    case MsgType::kRemove: {
      Remove m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      TRY(r.u32(m.requester));
      return Message{m};
    }
    case MsgType::kRemoveAck: {
      RemoveAck m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      return Message{m};
    }
    case MsgType::kDelete: {
      Delete m;
      TRY(r.id(m.id));
      return Message{m};
    }
    case MsgType::kWatch: {
      Watch m;
      TRY(r.id(m.id));
      TRY(r.u32(m.requester));
      TRY(r.u64(m.stream));
      return Message{m};
    }
    case MsgType::kProgress: {
      Progress m;
      TRY(r.id(m.id));
      TRY(get_bool(r, m.present));
      TRY(r.u64(m.offset));
      TRY(r.u64(m.size));
      TRY(r.u64(m.ready));
      TRY(r.u64(m.stream));
      if (m.ready > m.size) return protocol_error("progress beyond the object size");
      return Message{m};
    }
    case MsgType::kUnwatch: {
      Unwatch m;
      TRY(r.id(m.id));
      TRY(r.u32(m.requester));
      TRY(r.u64(m.stream));
      return Message{m};
    }
    case MsgType::kLocate: {
      Locate m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      TRY(r.u32(m.requester));
      TRY(r.u32(m.inline_max));
      TRY(get_bool(r, m.partial_ok));
      return Message{m};
    }
    case MsgType::kLocateReply: {
      LocateReply m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      TRY(r.u64(m.size));
      TRY(r.u32(m.holder));
      TRY(get_bool(r, m.has_inline));
      if (m.has_inline) {
        TRY(r.bytes(m.inline_data, kMaxInline));
        if (m.inline_data.size() != m.size) return protocol_error("inline locate reply size mismatch");
      }
      TRY(get_bool(r, m.refused));
      if (m.refused && m.has_inline) return protocol_error("a refused locate reply carries bytes");
      return Message{m};
    }
    case MsgType::kReduceTask: {
      ReduceTask m;
      TRY(read_task(r, m));
      return Message{m};
    }
    case MsgType::kReduceRetarget: {
      ReduceRetarget m;
      TRY(r.u64(m.task));
      TRY(r.id(m.old_upstream));
      TRY(r.u32(m.holder));
      TRY(read_task(r, m.next));
      return Message{m};
    }
    case MsgType::kReduceLost: {
      ReduceLost m;
      TRY(r.u64(m.task));
      TRY(r.u32(m.failed));
      return Message{m};
    }
    case MsgType::kPublishComposite: {
      PublishComposite m;
      TRY(r.id(m.id));
      TRY(r.u64(m.request));
      TRY(r.u64(m.size));
      TRY(get_parts(r, m.parts, m.size));
      return Message{m};
    }
    case MsgType::kHeartbeat: {
      Heartbeat m;
      TRY(r.u32(m.rank));
      TRY(r.u64(m.epoch));
      return Message{m};
    }
    case MsgType::kRejoin: {
      Rejoin m;
      TRY(r.u32(m.rank));
      TRY(get_peer(r, m.info));
      return Message{m};
    }
    case MsgType::kPeerUpdate: {
      PeerUpdate m;
      TRY(r.u32(m.rank));
      TRY(get_bool(r, m.alive));
      TRY(get_peer(r, m.info));
      return Message{m};
    }
    case MsgType::kRejoinAt: {
      RejoinAt m;
      TRY(r.u32(m.leader));
      TRY(get_peer(r, m.info));
      return Message{m};
    }
    case MsgType::kReduceDone: {
      ReduceDone m;
      TRY(r.u64(m.task));
      TRY(r.u16(m.code));
      TRY(r.str(m.message, kMaxString));
      return Message{m};
    }
    case MsgType::kReduceCancel: {
      ReduceCancel m;
      TRY(r.u64(m.task));
      TRY(r.id(m.output));
      return Message{m};
    }
    case MsgType::kReduceRelease: {
      ReduceRelease m;
      TRY(r.id(m.target));
      return Message{m};
    }
  }
  return protocol_error("unknown control message type " + std::to_string(static_cast<int>(type)));
}

}  // namespace

std::vector<std::uint8_t> encode(const Message& m) {
  WireWriter w;
  w.buffer().resize(wire::kHeaderSize);
  MsgType type = std::visit([&](const auto& msg) { return write(w, msg); }, m);
  auto& buf = w.buffer();
  wire::encode_header(static_cast<std::uint8_t>(type),
                      static_cast<std::uint32_t>(buf.size() - wire::kHeaderSize), buf.data());
  return std::move(buf);
}

Result<Message> decode(std::uint8_t type, std::span<const std::uint8_t> payload) {
  WireReader r(payload);
  auto m = read(static_cast<MsgType>(type), r);
  if (!m.is_ok()) return m.status();
  TRY(r.finish());
  return m;
}

const char* type_name(const Message& m) {
  static constexpr const char* kNames[] = {"Hello",
                                           "HelloAck",
                                           "Error",
                                           "Register",
                                           "Table",
                                           "Barrier",
                                           "BarrierDone",
                                           "Publish",
                                           "PublishAck",
                                           "Unpublish",
                                           "Lookup",
                                           "LookupReply",
                                           "Remove",
                                           "RemoveAck",
                                           "Delete",
                                           "Watch",
                                           "Progress",
                                           "Unwatch",
                                           "Locate",
                                           "LocateReply",
                                           "ReduceTask",
                                           "ReduceDone",
                                           "PublishComposite",
                                           "Heartbeat",
                                           "Rejoin",
                                           "PeerUpdate",
                                           "ReduceCancel",
                                           "ReduceRetarget",
                                           "ReduceLost",
                                           "Challenge",
                                           "Proof",
                                           "DiagRequest",
                                           "DiagReply",
                                           "AppMessage",
                                           "Where",
                                           "WhereReply",
                                           "RejoinAt",
                                           "ReduceRelease"};
  return kNames[m.index()];
}

}  // namespace hoplite::control
