#include "node/barriers.h"

namespace hoplite::node {

Barriers::Barriers(NodeContext& ctx) : ctx_(ctx), book_(ctx.world) {
  ctx_.dispatch.on<msg::Barrier>([this](const ConnPtr& c, const msg::Barrier& b) {
    if (ctx_.me != 0) return;
    if (auto st = book_.admissible(b.epoch); !st.is_ok())
      return ctx_.refuse(ctx_.sender(c), "Barrier", st.message());
    LOG_DEBUG("barrier " << b.epoch << " reached by rank " << b.rank);
    if (book_.arrive(b.epoch, b.rank, ctx_.alive)) released(b.epoch);
  });
  ctx_.dispatch.on<msg::BarrierDone>([this](const ConnPtr& c, const msg::BarrierDone& d) {
    // Epochs count barriers: one near the top of the range is a forgery
    // that would wrap our next barrier's number round to 0.
    if (d.epoch == 0 || d.epoch > BarrierBook::kMaxEpoch) {
      return ctx_.refuse(ctx_.sender(c), "BarrierDone", "epoch " + std::to_string(d.epoch) + " out of range");
    }
    on_done(d);
  });
}

Status Barriers::wait(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  std::uint64_t epoch = ++epoch_;
  auto p = std::make_shared<std::promise<Status>>();
  auto f = p->get_future();
  asio::post(ctx_.io, [this, epoch, p] {
    if (ctx_.stopping) return p->set_value(Status(StatusCode::kCancelled, "node shut down"));
    waits_[epoch] = p;
    ctx_.send(0, msg::Barrier{epoch, ctx_.me});
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
void Barriers::on_peer_failed(Rank f) {
  if (ctx_.me != 0) return;
  for (auto epoch : book_.drop(f, ctx_.alive)) released(epoch);
}

void Barriers::on_stop() {
  for (auto& [epoch, p] : waits_) p->set_value(Status(StatusCode::kCancelled, "node shut down"));
  waits_.clear();
}

}  // namespace hoplite::node
