// DirectoryShard: the part of the object directory one node owns.
//
// Objects map to shards by hash(ObjectID) % world. Per object the shard keeps
// its size, its locations as broadcast chains (complete and partial copies),
// small objects' bytes inline, and the lookups waiting for a first copy.
// Every call returns the replies it produced; the caller sends them. No
// sockets, no clocks, so every rule here is unit-tested directly.
//
// Bounded against peers that ask for ever more (docs/security.md):
// - parked requests: a requester has one parked lookup per object (a repeat
//   replaces it) and one parked locate per request id; a rank has at most
//   kMaxParkedPerRank parked here, and all ranks kMaxParked. Past either, a
//   lookup that would wait is answered kRefused (the requester's get fails
//   with a capacity error naming the limit) and a locate that would wait is
//   dropped and counted in refusals() (its reduce runs into its deadline);
//   so is a rank's locate past kMaxLocatesPerObject of one object.
//   Per rank, so one rank asking for ids nobody will put cannot make the
//   shard refuse everyone else.
// - inline bytes: a publishing rank's objects hold at most
//   kMaxInlineBytesPerRank here, all ranks kMaxInlineBytes; past either an
//   object is recorded without its bytes and readers fetch it from a holder
//   (one hop more, nothing lost).
//
// Thread-safety: none; owned by the node's progress thread.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "control/messages.h"
#include "hoplite/object_id.h"
#include "scheduler/broadcast_planner.h"

namespace hoplite::directory {

using control::Rank;

// A lookup answer addressed to the rank that asked.
struct Reply {
  Rank to;
  control::LookupReply reply;
};
struct LocateAnswer {
  Rank to;
  control::LocateReply reply;
};

// The shard that owns `id`: its hash modulo the world, moved on to the
// next live rank when that one is dead (`alive` empty: everyone is).
inline Rank shard_in(const ObjectID& id, std::uint32_t world, const std::vector<bool>& alive) {
  auto r = static_cast<Rank>(id.hash() % world);
  for (std::uint32_t i = 0; i < world && !alive.empty() && !alive[r]; ++i) r = (r + 1) % world;
  return r;
}

class DirectoryShard {
 public:
  // The bounds above; tests shrink them.
  struct Limits {
    std::size_t parked = kMaxParked;
    std::size_t parked_per_rank = kMaxParkedPerRank;
    std::uint64_t inline_bytes = kMaxInlineBytes;
    std::uint64_t inline_bytes_per_rank = kMaxInlineBytesPerRank;
  };
  // Nodes publish objects up to their inline threshold with the bytes once
  // complete; a lookup of one up to `wait_for_inline` bytes that is still
  // being written waits for that, since the answer then carries the bytes
  // (one hop, no transfer) and streaming so little gains nothing. 0: any
  // copy being written streams.
  explicit DirectoryShard(std::uint64_t wait_for_inline = 0) : DirectoryShard(wait_for_inline, Limits{}) {}
  DirectoryShard(std::uint64_t wait_for_inline, Limits limits)
      : wait_for_inline_(wait_for_inline), limits_(limits) {}

  // A parked request costs its record (a few hundred bytes): 2^20 is a few
  // hundred MiB at most.
  static constexpr std::size_t kMaxParked = 1u << 20;
  // Honest ranks park one lookup per object they wait for that is not put
  // yet: the task runtime's outstanding futures (tens of thousands on one
  // rank must work), a reduce coordinator's locates of inputs not yet
  // written. 2^17 leaves room for those, and takes eight ranks to fill
  // kMaxParked.
  static constexpr std::size_t kMaxParkedPerRank = 1u << 17;
  // Locates of one object by one rank: a coordinator locates each input
  // once per reduce, so 64 is many reduces of the same input at once. It
  // keeps each locate's scan of its record short.
  static constexpr std::size_t kMaxLocatesPerObject = 64;
  static constexpr std::uint64_t kMaxInlineBytes = 512ull << 20;
  // 2048 objects at the default 64 KiB inline threshold; past it a rank's
  // small objects are served by their holder, so an honest rank with more
  // loses a hop, not an object.
  static constexpr std::uint64_t kMaxInlineBytesPerRank = 64ull << 20;

  // `rank` holds a copy (complete or, for an origin still being written,
  // partial). Inline objects carry their bytes. Returns the waiting lookups
  // this publish answers.
  std::vector<Reply> publish(const control::Publish& p);
  // Locate requests answered by the last publish (taken by the caller).
  std::vector<LocateAnswer> take_located() { return std::move(located_); }
  // Lookups answered by the last lookup, unpublish or forget_rank besides
  // its own reply: ones waiting to read from a rank that is now planned
  // (or dead), and must_exist ones whose copy being written went away.
  std::vector<Reply> take_answered() { return std::move(answered_); }
  // Declares a composite object (a striped allreduce's result); lookups are
  // answered with its parts.
  std::vector<Reply> publish_composite(const control::PublishComposite& p);
  std::vector<control::Part> parts(const ObjectID& id) const;
  // `rank` dropped its copy.
  void unpublish(const ObjectID& id, Rank rank);
  // Answers now, or parks the lookup until a copy is published (unless
  // must_exist, which answers NotFound instead).
  std::optional<Reply> lookup(const control::Lookup& l);
  // Answers with a rank holding a complete copy, now or when one is
  // published (with the bytes of an inline object up to l.inline_max);
  // never joins a broadcast chain.
  std::optional<LocateAnswer> locate(const control::Locate& l);
  // Forgets the object; returns the ranks that hold copies (to be told to
  // delete them). Parked lookups keep waiting for a new put.
  std::vector<Rank> remove(const ObjectID& id);

  // A member failed: it holds nothing and waits for nothing any more.
  void forget_rank(Rank rank);

  // Who holds `id` now (complete copies and its origin), and whether the
  // shard has its bytes; answered at once, changes nothing.
  control::WhereReply where(const control::Where& w) const;

  // Introspection for tests and stats.
  bool knows(const ObjectID& id) const;
  std::vector<Rank> locations(const ObjectID& id) const;
  std::size_t waiting(const ObjectID& id) const;
  std::size_t size() const { return records_.size(); }
  std::size_t parked() const { return parked_; }
  std::size_t parked_by(Rank r) const {
    auto it = parked_by_.find(r);
    return it == parked_by_.end() ? 0 : it->second;
  }
  std::uint64_t inline_bytes() const { return inline_bytes_; }
  std::uint64_t inline_bytes_of(Rank r) const {
    auto it = inline_by_.find(r);
    return it == inline_by_.end() ? 0 : it->second;
  }
  // Requests refused at a limit so far (lookups answered kRefused, locates
  // dropped): the service counts and logs the new ones.
  std::uint64_t refusals() const { return refusals_; }

 private:
  struct Record {
    bool has_size = false;
    std::uint64_t size = 0;
    bool is_inline = false;
    bool is_composite = false;
    std::vector<control::Part> parts;
    std::vector<std::uint8_t> inline_data;
    Rank inline_from = control::kNoRank;  // whose budget the bytes count in
    scheduler::BroadcastPlanner planner;
    std::vector<control::Lookup> waiters;
    std::vector<Rank> complete;  // holders of a complete copy, oldest first
    // Producers of a copy being written (a streaming put, a reduce output),
    // oldest first, until they seal it.
    std::vector<Rank> producing;
    std::vector<control::Locate> locators;
  };
  std::optional<Reply> answer(const ObjectID& id, Record& rec, const control::Lookup& l);
  void answer_waiters(const ObjectID& id, Record& rec);
  void fail_must_exist(const ObjectID& id, Record& rec);
  // A complete copy's holder (else, for a partial_ok locate, a producer's),
  // and the bytes too when inline, complete and wanted.
  static control::LocateReply locate_reply(const ObjectID& id, const Record& rec, const control::Locate& l);

  std::size_t parked_of(const ObjectID& id) const;
  std::uint64_t inline_of(const ObjectID& id) const;
  // Adds (sign +1) or takes away (-1) what `id`'s record counts in the
  // per-rank tables.
  void count_ranks(const ObjectID& id, int sign);
  // Runs f (which changes only `id`'s record) and keeps the totals. While
  // f runs they still hold the record as it was.
  template <typename F>
  auto tracked(const ObjectID& id, F f) {
    const std::size_t p0 = parked_of(id);
    const std::uint64_t i0 = inline_of(id);
    std::vector<Rank> before;
    if (auto it = records_.find(id); it != records_.end()) before = ranks_in(it->second);
    auto r = f();
    parked_ = parked_ + parked_of(id) - p0;
    inline_bytes_ = inline_bytes_ + inline_of(id) - i0;
    for (Rank b : before) adjust(parked_by_, b, -1);
    count_ranks(id, +1);
    return r;
  }
  // The requesters of a record's parked requests, one entry per request.
  static std::vector<Rank> ranks_in(const Record& rec);
  template <typename T>
  static void adjust(std::unordered_map<Rank, T>& m, Rank r, std::int64_t d) {
    auto& v = m[r];
    v = static_cast<T>(static_cast<std::int64_t>(v) + d);
    if (v == 0) m.erase(r);
  }
  // Room for one more parked request of `r`.
  bool may_park(Rank r) const { return parked_ < limits_.parked && parked_by(r) < limits_.parked_per_rank; }
  void drop_inline(Record& rec);
  std::vector<Reply> publish_one(const control::Publish& p);
  void unpublish_one(const ObjectID& id, Rank rank);
  std::vector<Rank> remove_one(const ObjectID& id);
  std::optional<Reply> lookup_one(const control::Lookup& l);
  std::optional<LocateAnswer> locate_one(const control::Locate& l);

  std::unordered_map<ObjectID, Record> records_;
  std::size_t parked_ = 0;                             // waiters and locators, all records
  std::uint64_t inline_bytes_ = 0;                     // inline_data, all records
  std::unordered_map<Rank, std::size_t> parked_by_;    // parked requests by requester
  std::unordered_map<Rank, std::uint64_t> inline_by_;  // inline_data by inline_from
  std::uint64_t refusals_ = 0;
  std::vector<LocateAnswer> located_;
  std::vector<Reply> answered_;
  std::uint64_t wait_for_inline_;
  Limits limits_;
};

}  // namespace hoplite::directory
