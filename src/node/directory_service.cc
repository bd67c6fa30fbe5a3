#include "node/directory_service.h"

namespace hoplite::node {

DirectoryService::DirectoryService(NodeContext& ctx) : ctx_(ctx), shard_(ctx.opts.inline_threshold) {
  auto& d = ctx_.dispatch;
  d.on<msg::Publish>([this](const ConnPtr&, const msg::Publish& p) {
    for (auto& r : shard_.publish(p)) ctx_.send(r.to, r.reply);
    for (auto& a : shard_.take_located()) ctx_.send(a.to, a.reply);
    if (p.request) ctx_.send(p.rank, msg::PublishAck{p.id, p.request});
  });
  d.on<msg::Unpublish>([this](const ConnPtr&, const msg::Unpublish& u) {
    shard_.unpublish(u.id, u.rank);
    send_answered();
  });
  d.on<msg::Lookup>([this](const ConnPtr&, msg::Lookup l) {
    // Reading from a rank that is gone (or never was) would wait forever.
    if (l.after != msg::kNoRank && !ctx_.alive_rank(l.after)) l.after = msg::kNoRank;
    const auto refused = shard_.refusals();
    if (auto r = shard_.lookup(l)) ctx_.send(r->to, r->reply);
    if (shard_.refusals() != refused) count_refusal("Lookup", l.requester, l.id);
    send_answered();
  });
  d.on<msg::Locate>([this](const ConnPtr&, const msg::Locate& l) {
    const auto refused = shard_.refusals();
    if (auto a = shard_.locate(l)) ctx_.send(a->to, a->reply);
    if (shard_.refusals() != refused) count_refusal("Locate", l.requester, l.id);
  });
  d.on<msg::Where>([this](const ConnPtr&, const msg::Where& w) { ctx_.send(w.requester, shard_.where(w)); });
  d.on<msg::Remove>([this](const ConnPtr&, const msg::Remove& r) { on_remove(r); });
  d.on<msg::PublishComposite>([this](const ConnPtr&, const msg::PublishComposite& p) {
    for (auto& r : shard_.publish_composite(p)) ctx_.send(r.to, r.reply);
  });
}

void DirectoryService::count_refusal(const char* what, Rank from, const ObjectID& id) {
  ctx_.refused++;
  // One line per doubling: a peer hammering the limit must not flood the log.
  const auto n = ++refusals_of_[from];
  if ((n & (n - 1)) == 0) {
    LOG_WARN("refused " << what << " of " << id.short_hex() << " from rank " << from << ": it has "
                        << shard_.parked_by(from) << " requests parked here (limit "
                        << directory::DirectoryShard::kMaxParkedPerRank << "), all ranks " << shard_.parked()
                        << " (limit " << directory::DirectoryShard::kMaxParked << "); refusal " << n);
  }
}

void DirectoryService::on_remove(const msg::Remove& r) {
  // A composite's parts go with it.
  for (const auto& part : shard_.parts(r.id))
    ctx_.send(ctx_.shard_of(part.id), msg::Remove{part.id, 0, ctx_.me});
  for (Rank holder : shard_.remove(r.id)) ctx_.send(holder, msg::Delete{r.id});
  ctx_.send(r.requester, msg::RemoveAck{r.id, r.request});
}

}  // namespace hoplite::node
