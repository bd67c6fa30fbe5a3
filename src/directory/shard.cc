#include "directory/shard.h"

#include <algorithm>
#include <set>

namespace hoplite::directory {

using control::LookupResult;

std::optional<Reply> DirectoryShard::answer(const ObjectID& id, Record& rec, const control::Lookup& l) {
  control::LookupReply r;
  r.id = id;
  r.request = l.request;
  if (rec.has_size && rec.is_composite) {
    r.result = LookupResult::kComposite;
    r.size = rec.size;
    r.parts = rec.parts;
    return Reply{l.requester, std::move(r)};
  }
  if (rec.has_size && rec.is_inline) {
    r.result = LookupResult::kInline;
    r.size = rec.size;
    r.inline_data = rec.inline_data;
    return Reply{l.requester, std::move(r)};
  }
  if (!rec.has_size) return std::nullopt;
  // Small and still being written: the sealed copy's publish answers it
  // inline.
  if (!l.resume && rec.size <= wait_for_inline_ && rec.complete.empty()) return std::nullopt;
  if (!l.resume && l.direct && l.after != control::kNoRank && l.after != l.requester) {
    // The baseline's transfer: from `after` alone, outside every chain.
    if (!rec.planner.sources().count(l.after)) return std::nullopt;
    r.result = LookupResult::kSender;
    r.size = rec.size;
    r.sender = l.after;
    return Reply{l.requester, std::move(r)};
  }
  if (!l.resume && l.after != control::kNoRank && l.after != l.requester) {
    if (auto sender = rec.planner.assign_after(l.requester, l.after)) {
      r.result = LookupResult::kSender;
      r.size = rec.size;
      r.sender = *sender;
      return Reply{l.requester, std::move(r)};
    }
    // Not there yet: wait for it (its own lookup or publish plans it).
    if (!rec.planner.planned(l.after)) return std::nullopt;
  }
  if (l.resume) {
    // The requester's sender died. Its new predecessor in the chain (the
    // dead sender's own sender) is ahead of it and already streaming, so
    // taking over from it closes the gap without a second stream on any
    // link. Failing that, only a complete copy is sure to hold more than
    // the requester (another chain member might hold less, or stream from
    // the requester).
    if (auto pred = rec.planner.predecessor(l.requester); pred && *pred != l.requester) {
      r.result = LookupResult::kSender;
      r.size = rec.size;
      r.sender = *pred;
      return Reply{l.requester, std::move(r)};
    }
    for (Rank c : rec.complete) {
      if (c != l.requester) {
        r.result = LookupResult::kSender;
        r.size = rec.size;
        r.sender = c;
        return Reply{l.requester, std::move(r)};
      }
    }
    return std::nullopt;
  }
  auto sender = rec.planner.assign(l.requester);
  if (!sender) return std::nullopt;
  r.result = LookupResult::kSender;
  r.size = rec.size;
  r.sender = *sender;
  return Reply{l.requester, std::move(r)};
}

std::size_t DirectoryShard::parked_of(const ObjectID& id) const {
  auto it = records_.find(id);
  return it == records_.end() ? 0 : it->second.waiters.size() + it->second.locators.size();
}

std::uint64_t DirectoryShard::inline_of(const ObjectID& id) const {
  auto it = records_.find(id);
  return it == records_.end() ? 0 : it->second.inline_data.size();
}

std::vector<Rank> DirectoryShard::ranks_in(const Record& rec) {
  std::vector<Rank> out;
  out.reserve(rec.waiters.size() + rec.locators.size());
  for (const auto& w : rec.waiters) out.push_back(w.requester);
  for (const auto& l : rec.locators) out.push_back(l.requester);
  return out;
}

void DirectoryShard::count_ranks(const ObjectID& id, int sign) {
  auto it = records_.find(id);
  if (it == records_.end()) return;
  for (Rank r : ranks_in(it->second)) adjust(parked_by_, r, sign);
}

void DirectoryShard::drop_inline(Record& rec) {
  if (rec.inline_from != control::kNoRank)
    adjust(inline_by_, rec.inline_from, -static_cast<std::int64_t>(rec.inline_data.size()));
  rec.inline_from = control::kNoRank;
}

std::vector<Reply> DirectoryShard::publish(const control::Publish& p) {
  return tracked(p.id, [&] { return publish_one(p); });
}

std::optional<Reply> DirectoryShard::lookup(const control::Lookup& l) {
  return tracked(l.id, [&] { return lookup_one(l); });
}

std::optional<LocateAnswer> DirectoryShard::locate(const control::Locate& l) {
  return tracked(l.id, [&] { return locate_one(l); });
}

std::vector<Reply> DirectoryShard::publish_one(const control::Publish& p) {
  Record& rec = records_[p.id];
  rec.has_size = true;
  rec.size = p.size;
  // Past the budget the bytes stay with their holder, which serves them
  // like any other object's.
  // The bytes count in the budget of the rank that brought them first.
  const auto n = static_cast<std::int64_t>(p.inline_data.size());
  if (p.has_inline && rec.is_inline) {
    adjust(inline_by_, rec.inline_from, n - static_cast<std::int64_t>(rec.inline_data.size()));
    rec.inline_data = p.inline_data;
  } else if (p.has_inline && inline_bytes_ + p.inline_data.size() <= limits_.inline_bytes &&
             inline_bytes_of(p.rank) + p.inline_data.size() <= limits_.inline_bytes_per_rank) {
    rec.is_inline = true;
    rec.inline_data = p.inline_data;
    rec.inline_from = p.rank;
    adjust(inline_by_, p.rank, n);
  }
  if (p.state == control::LocationState::kComplete) {
    rec.planner.complete(p.rank);
    if (std::find(rec.complete.begin(), rec.complete.end(), p.rank) == rec.complete.end()) {
      rec.complete.push_back(p.rank);
    }
    std::erase(rec.producing, p.rank);
    for (const auto& l : rec.locators) located_.push_back({l.requester, locate_reply(p.id, rec, l)});
    rec.locators.clear();
  } else {
    rec.planner.add_source(p.rank);
    if (std::find(rec.producing.begin(), rec.producing.end(), p.rank) == rec.producing.end() &&
        std::find(rec.complete.begin(), rec.complete.end(), p.rank) == rec.complete.end()) {
      rec.producing.push_back(p.rank);
    }
    std::erase_if(rec.locators, [&](const control::Locate& l) {
      if (!l.partial_ok) return false;
      located_.push_back({l.requester, locate_reply(p.id, rec, l)});
      return true;
    });
  }
  std::vector<Reply> out;
  std::erase_if(rec.waiters, [&](const control::Lookup& w) {
    if (w.requester != p.rank) return false;
    // The publisher asked before it put: it holds the object now, so its
    // lookup is answered with itself and it stays a source, not a receiver.
    control::LookupReply self{p.id, w.request, control::LookupResult::kSender, rec.size, p.rank, {}, {}};
    out.push_back(Reply{p.rank, std::move(self)});
    return true;
  });
  answer_waiters(p.id, rec);
  for (auto& r : take_answered()) out.push_back(std::move(r));
  return out;
}

std::vector<Reply> DirectoryShard::publish_composite(const control::PublishComposite& p) {
  return tracked(p.id, [&] {
    Record& rec = records_[p.id];
    rec.has_size = true;
    rec.size = p.size;
    rec.is_composite = true;
    rec.parts = p.parts;
    std::vector<Reply> out;
    for (auto& w : rec.waiters) {
      if (auto r = answer(p.id, rec, w)) out.push_back(std::move(*r));
    }
    rec.waiters.clear();
    return out;
  });
}

std::vector<control::Part> DirectoryShard::parts(const ObjectID& id) const {
  auto it = records_.find(id);
  return it == records_.end() ? std::vector<control::Part>{} : it->second.parts;
}

// A must_exist lookup waits for a copy being written; with no copy left it
// is not found after all.
void DirectoryShard::fail_must_exist(const ObjectID& id, Record& rec) {
  if (rec.planner.has_source() || rec.is_inline || rec.is_composite) return;
  std::erase_if(rec.waiters, [&](const control::Lookup& w) {
    if (!w.must_exist) return false;
    control::LookupReply r;
    r.id = id;
    r.request = w.request;
    r.result = LookupResult::kNotFound;
    answered_.push_back(Reply{w.requester, std::move(r)});
    return true;
  });
}

void DirectoryShard::unpublish(const ObjectID& id, Rank rank) {
  tracked(id, [&] {
    unpublish_one(id, rank);
    return 0;
  });
}

void DirectoryShard::unpublish_one(const ObjectID& id, Rank rank) {
  auto it = records_.find(id);
  if (it == records_.end()) return;
  it->second.planner.remove(rank);
  std::erase(it->second.complete, rank);
  std::erase(it->second.producing, rank);
  fail_must_exist(id, it->second);
  if (it->second.planner.empty() && it->second.waiters.empty() && it->second.locators.empty() &&
      !it->second.is_inline && !it->second.is_composite) {
    records_.erase(it);
  }
}

std::optional<Reply> DirectoryShard::lookup_one(const control::Lookup& l) {
  auto it = records_.find(l.id);
  if (it != records_.end()) {
    if (auto r = answer(l.id, it->second, l)) {
      answer_waiters(l.id, it->second);  // some may read from the requester
      return r;
    }
  }
  // A copy being written counts as known: the lookup waits for its seal.
  const bool known = it != records_.end() && it->second.has_size && it->second.planner.has_source();
  if (l.must_exist && !known) {
    control::LookupReply r;
    r.id = l.id;
    r.request = l.request;
    r.result = LookupResult::kNotFound;
    return Reply{l.requester, std::move(r)};
  }
  Record& rec = records_[l.id];
  // One lookup per requester and object: the fetcher never has two in
  // flight, so a repeat replaces the older one instead of piling up.
  auto same = std::find_if(rec.waiters.begin(), rec.waiters.end(),
                           [&](const control::Lookup& w) { return w.requester == l.requester; });
  if (same != rec.waiters.end()) {
    *same = l;
    return std::nullopt;
  }
  if (!may_park(l.requester)) {
    if (rec.waiters.empty() && rec.locators.empty() && !rec.has_size) records_.erase(l.id);
    refusals_++;
    control::LookupReply r;
    r.id = l.id;
    r.request = l.request;
    r.result = LookupResult::kRefused;
    // The limit that was hit, for the requester's error message.
    r.size = parked_by(l.requester) >= limits_.parked_per_rank ? limits_.parked_per_rank : limits_.parked;
    return Reply{l.requester, std::move(r)};
  }
  rec.waiters.push_back(l);
  return std::nullopt;
}

std::vector<Rank> DirectoryShard::remove(const ObjectID& id) {
  return tracked(id, [&] { return remove_one(id); });
}

std::vector<Rank> DirectoryShard::remove_one(const ObjectID& id) {
  auto it = records_.find(id);
  if (it == records_.end()) return {};
  std::vector<Rank> holders = it->second.planner.members();
  drop_inline(it->second);
  auto waiters = std::move(it->second.waiters);
  auto locators = std::move(it->second.locators);
  records_.erase(it);
  if (!waiters.empty() || !locators.empty()) {
    records_[id].waiters = std::move(waiters);
    records_[id].locators = std::move(locators);
  }
  return holders;
}

control::LocateReply DirectoryShard::locate_reply(const ObjectID& id, const Record& rec,
                                                  const control::Locate& l) {
  control::LocateReply r;
  r.id = id;
  r.request = l.request;
  r.size = rec.size;
  const bool complete = !rec.complete.empty();
  r.holder = complete ? rec.complete.front() : rec.producing.front();
  if (complete && rec.is_inline && rec.size <= l.inline_max) {
    r.has_inline = true;
    r.inline_data = rec.inline_data;
  }
  return r;
}

std::optional<LocateAnswer> DirectoryShard::locate_one(const control::Locate& l) {
  Record& rec = records_[l.id];
  if (!rec.complete.empty() || (l.partial_ok && !rec.producing.empty()))
    return LocateAnswer{l.requester, locate_reply(l.id, rec, l)};
  auto same = std::find_if(rec.locators.begin(), rec.locators.end(), [&](const control::Locate& o) {
    return o.requester == l.requester && o.request == l.request;
  });
  const auto mine = std::count_if(rec.locators.begin(), rec.locators.end(),
                                  [&](const control::Locate& o) { return o.requester == l.requester; });
  if (same != rec.locators.end()) {
    *same = l;
  } else if (may_park(l.requester) && static_cast<std::size_t>(mine) < kMaxLocatesPerObject) {
    rec.locators.push_back(l);
  } else {
    refusals_++;
    if (rec.waiters.empty() && rec.locators.empty() && !rec.has_size) records_.erase(l.id);
    // Told, so that its reduce fails now with the reason instead of at
    // its deadline.
    control::LocateReply r;
    r.id = l.id;
    r.request = l.request;
    r.refused = true;
    r.size = static_cast<std::size_t>(mine) >= kMaxLocatesPerObject ? kMaxLocatesPerObject
             : parked_by(l.requester) >= limits_.parked_per_rank    ? limits_.parked_per_rank
                                                                    : limits_.parked;
    return LocateAnswer{l.requester, std::move(r)};
  }
  return std::nullopt;
}

// Answers every waiting lookup that can be answered now. An answer can let
// another waiter read from its requester (Lookup.after), so this goes round
// until nothing moves.
void DirectoryShard::answer_waiters(const ObjectID& id, Record& rec) {
  for (bool progress = true; progress;) {
    progress = false;
    std::erase_if(rec.waiters, [&](const control::Lookup& w) {
      auto r = answer(id, rec, w);
      if (!r) return false;
      answered_.push_back(std::move(*r));
      progress = true;
      return true;
    });
  }
}

void DirectoryShard::forget_rank(Rank rank) {
  for (auto it = records_.begin(); it != records_.end();) {
    Record& rec = it->second;
    parked_ -= rec.waiters.size() + rec.locators.size();
    for (Rank r : ranks_in(rec)) adjust(parked_by_, r, -1);
    inline_bytes_ -= rec.inline_data.size();
    // Waiting to read from the dead rank: the shard chooses instead.
    bool freed = false;
    for (auto& w : rec.waiters) {
      if (w.after == rank) {
        w.after = control::kNoRank;
        freed = true;
      }
    }
    rec.planner.remove(rank);
    std::erase(rec.complete, rank);
    std::erase(rec.producing, rank);
    std::erase_if(rec.waiters, [rank](const auto& w) { return w.requester == rank; });
    std::erase_if(rec.locators, [rank](const auto& l) { return l.requester == rank; });
    if (freed) answer_waiters(it->first, rec);
    fail_must_exist(it->first, rec);
    if (rec.planner.empty() && rec.waiters.empty() && rec.locators.empty() && !rec.is_inline &&
        !rec.is_composite) {
      it = records_.erase(it);
    } else {
      parked_ += rec.waiters.size() + rec.locators.size();
      for (Rank r : ranks_in(rec)) adjust(parked_by_, r, +1);
      inline_bytes_ += rec.inline_data.size();
      ++it;
    }
  }
}

bool DirectoryShard::knows(const ObjectID& id) const {
  auto it = records_.find(id);
  return it != records_.end() && it->second.has_size;
}

std::vector<Rank> DirectoryShard::locations(const ObjectID& id) const {
  auto it = records_.find(id);
  return it == records_.end() ? std::vector<Rank>{} : it->second.planner.members();
}

control::WhereReply DirectoryShard::where(const control::Where& w) const {
  control::WhereReply out;
  out.id = w.id;
  out.request = w.request;
  auto it = records_.find(w.id);
  if (it == records_.end()) return out;
  const Record& rec = it->second;
  out.known = true;
  out.has_inline = rec.is_inline && rec.inline_data.size() == rec.size;
  std::set<Rank> holders(rec.complete.begin(), rec.complete.end());
  holders.insert(rec.planner.sources().begin(), rec.planner.sources().end());
  for (const auto& part : rec.parts) holders.insert(part.holder);
  out.holders.assign(holders.begin(), holders.end());
  return out;
}

std::size_t DirectoryShard::waiting(const ObjectID& id) const {
  auto it = records_.find(id);
  return it == records_.end() ? 0 : it->second.waiters.size();
}

}  // namespace hoplite::directory
