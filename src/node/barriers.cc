#include "node/barriers.h"

namespace hoplite::node {

Barriers::Barriers(NodeContext& ctx) : ctx_(ctx), book_(ctx.world) {
  ctx_.dispatch.on<msg::Barrier>([this](const ConnPtr& c, const msg::Barrier& b) { on_arrival(c, b); });
  ctx_.dispatch.on<msg::BarrierDone>([this](const ConnPtr& c, const msg::BarrierDone& d) {
    // Epochs count barriers: one near the top of the range is a forgery
    // that would wrap our next barrier's number round to 0.
    if (d.epoch == 0 || d.epoch > BarrierBook::kMaxEpoch) {
      return ctx_.refuse(ctx_.sender(c), "BarrierDone", "epoch " + std::to_string(d.epoch) + " out of range");
    }
    on_done(d);
  });
}

// Every node books the arrivals sent to it, leader or not: a rank that saw
// the old leader die before we did sends its arrival here already.
void Barriers::on_arrival(const ConnPtr& c, const msg::Barrier& b) {
  if (b.epoch <= book_.last_released()) {
    // Released already (the rank missed it when the old leader died, or
    // this is a rejoiner's catch-up): tell it again.
    if (ctx_.alive_rank(b.rank)) ctx_.send(b.rank, msg::BarrierDone{b.epoch});
    return;
  }
  if (auto st = book_.admissible(b.epoch); !st.is_ok())
    return ctx_.refuse(ctx_.sender(c), "Barrier", st.message());
  LOG_DEBUG("barrier " << b.epoch << " reached by rank " << b.rank);
  book_.record(b.epoch, b.rank);
  if (ctx_.me == ctx_.leader()) {
    for (auto e : book_.release_ready(ctx_.alive)) released(e);
  }
}

Status Barriers::wait(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  std::uint64_t epoch = ++epoch_;
  auto p = std::make_shared<std::promise<Status>>();
  auto f = p->get_future();
  asio::post(ctx_.io, [this, epoch, p] {
    if (ctx_.stopping) return p->set_value(Status(StatusCode::kCancelled, "node shut down"));
    waits_[epoch] = p;
    ctx_.send(ctx_.leader(), msg::Barrier{epoch, ctx_.me});
  });
  if (f.wait_for(timeout) != std::future_status::ready) {
    return timeout_error("barrier " + std::to_string(epoch) + " not reached by every rank within " +
                         std::to_string(timeout.count()) + " ms");
  }
  return f.get();
}

void Barriers::released(std::uint64_t epoch) {
  for (Rank r = 0; r < ctx_.world; ++r) {
    if (ctx_.alive_rank(r)) ctx_.send(r, msg::BarrierDone{epoch});
  }
}

void Barriers::on_done(const msg::BarrierDone& d) {
  LOG_DEBUG("barrier " << d.epoch << " released");
  // A release is a fact for every book: ours closes it too, so that if we
  // lead later we answer late arrivals for it, and our window moves on.
  // Ranks that sent their arrival here (they saw the leader die before we
  // did) may have missed the release: they hear it from us as well.
  for (auto [epoch, r] : book_.close_through(d.epoch)) {
    if (r != ctx_.me && ctx_.alive_rank(r)) ctx_.send(r, msg::BarrierDone{epoch});
  }
  // A rejoiner is told the last released barrier so that its next one
  // carries the survivors' number.
  std::uint64_t cur = epoch_.load();
  while (waits_.empty() && cur < d.epoch && !epoch_.compare_exchange_weak(cur, d.epoch)) {
  }
  auto it = waits_.find(d.epoch);
  if (it != waits_.end()) {
    it->second->set_value(Status::ok());
    waits_.erase(it);
  }
}

// Barriers wait for live ranks only: the dead one may have been the last.
// When the dead one was the leader, the lowest live rank takes over (its
// book already closed every release it heard of, in on_done), and every
// rank sends its open arrivals to it.
void Barriers::on_peer_failed(Rank f) {
  const Rank leader = ctx_.leader();
  const bool was_leader = f < leader;
  auto ready = book_.drop(f, ctx_.alive);
  if (ctx_.me == leader) {
    if (was_leader)
      LOG_INFO("barriers: rank " << f << " led them and failed; rank " << ctx_.me << " takes over");
    for (auto epoch : ready) released(epoch);
    for (auto epoch : book_.release_ready(ctx_.alive)) released(epoch);
  }
  if (was_leader) {
    for (const auto& [epoch, p] : waits_) ctx_.send(leader, msg::Barrier{epoch, ctx_.me});
  }
}

void Barriers::catch_up(std::uint64_t epoch) {
  (void)book_.close_through(epoch);
  std::uint64_t cur = epoch_.load();
  while (cur < epoch && !epoch_.compare_exchange_weak(cur, epoch)) {
  }
}

// A rank below the leader came back (rank 0 restarted): it leads now, and
// has seen none of the open arrivals. A failure moves the lead upwards,
// which on_peer_failed handles.
void Barriers::on_shards_moved(const std::vector<bool>& old_alive) {
  Rank old_leader = ctx_.me;
  for (Rank r = 0; r < ctx_.world; ++r) {
    if (r < old_alive.size() && old_alive[r]) {
      old_leader = r;
      break;
    }
  }
  const Rank leader = ctx_.leader();
  if (leader >= old_leader) return;
  LOG_INFO("barriers: rank " << leader << " rejoined below rank " << old_leader << " and leads them");
  for (const auto& [epoch, p] : waits_) ctx_.send(leader, msg::Barrier{epoch, ctx_.me});
}

void Barriers::on_stop() {
  for (auto& [epoch, p] : waits_) p->set_value(Status(StatusCode::kCancelled, "node shut down"));
  waits_.clear();
}

}  // namespace hoplite::node
