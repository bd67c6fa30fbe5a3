#include "node/mailbox.h"

namespace hoplite::node {

Mailbox::Mailbox(NodeContext& ctx) : ctx_(ctx), delivery_(std::make_unique<CallbackThread>()) {
  ctx_.dispatch.on<msg::AppMessage>([this](const ConnPtr& c, msg::AppMessage& m) {
    deliver(static_cast<int>(ctx_.sender(c)), m.channel, std::move(m.payload));
  });
}

Mailbox::~Mailbox() {
  delivery_.reset();
}

void Mailbox::deliver(int from, std::uint16_t channel, std::vector<std::uint8_t> payload) {
  // The subscriber is looked up on the delivery thread, in order with
  // subscribe()'s flush of the held messages, so nothing overtakes them.
  delivery_->post([this, from, channel, p = std::move(payload)]() mutable {
    Handler h;
    {
      std::lock_guard lock(mu_);
      auto it = handlers_.find(channel);
      if (it == handlers_.end()) {
        auto& q = held_[channel];
        auto& bytes = held_bytes_[channel];
        if (q.size() >= kMaxHeldMessages || bytes + p.size() > kMaxHeldBytes) {
          if (dropped_++ == 0) LOG_WARN("application channel " << channel << ": no subscriber, dropping");
          return;
        }
        bytes += p.size();
        q.push_back(Held{from, std::move(p)});
        return;
      }
      h = it->second;
    }
    h(from, std::as_bytes(std::span(p)));
  });
}

void Mailbox::subscribe(std::uint16_t channel, Handler h) {
  {
    std::lock_guard lock(mu_);
    handlers_[channel] = h;
  }
  delivery_->post([this, channel, h] {
    std::deque<Held> q;
    {
      std::lock_guard lock(mu_);
      q = std::move(held_[channel]);
      held_.erase(channel);
      held_bytes_.erase(channel);
    }
    for (auto& m : q) h(m.from, std::as_bytes(std::span(m.payload)));
  });
}

void Mailbox::unsubscribe(std::uint16_t channel) {
  {
    std::lock_guard lock(mu_);
    handlers_.erase(channel);
  }
  std::promise<void> passed;
  auto f = passed.get_future();
  delivery_->post([&passed] { passed.set_value(); });
  f.wait();
}

Status Mailbox::send(int to, std::uint16_t channel, std::span<const std::byte> payload) {
  if (to < 0 || static_cast<std::uint32_t>(to) >= ctx_.world) {
    return invalid_argument("message to rank " + std::to_string(to) + " of " + std::to_string(ctx_.world));
  }
  if (payload.size() > msg::kMaxAppPayload) {
    return invalid_argument("message of " + std::to_string(payload.size()) + " bytes (at most " +
                            std::to_string(msg::kMaxAppPayload) + ")");
  }
  msg::AppMessage m;
  m.channel = channel;
  auto* b = reinterpret_cast<const std::uint8_t*>(payload.data());
  m.payload.assign(b, b + payload.size());
  asio::post(ctx_.io, [this, to, m = std::move(m)] {
    if (ctx_.stopping || !ctx_.alive_rank(static_cast<Rank>(to))) return;
    ctx_.send(static_cast<Rank>(to), m);
  });
  return Status::ok();
}

std::uint64_t Mailbox::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

}  // namespace hoplite::node
