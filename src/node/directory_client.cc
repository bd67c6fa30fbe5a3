#include "node/directory_client.h"

namespace hoplite::node {

msg::Publish make_publish(const store::ObjectEntry& e, msg::LocationState state, Rank me,
                          std::uint64_t inline_threshold) {
  msg::Publish p;
  p.id = e.id;
  p.size = e.size;
  p.rank = me;
  p.state = state;
  if (state == msg::LocationState::kComplete && e.size <= inline_threshold) {
    p.has_inline = true;
    auto* b = reinterpret_cast<const std::uint8_t*>(e.data);
    p.inline_data.assign(b, b + e.size);
  }
  return p;
}

DirectoryClient::DirectoryClient(NodeContext& ctx) : ctx_(ctx) {
  ctx_.dispatch.on<msg::PublishAck>(
      [this](const ConnPtr&, const msg::PublishAck& a) { complete(a.request); });
  ctx_.dispatch.on<msg::RemoveAck>([this](const ConnPtr&, const msg::RemoveAck& a) { complete(a.request); });
  ctx_.dispatch.on<msg::WhereReply>(
      [this](const ConnPtr& c, const msg::WhereReply& r) { on_where_reply(ctx_.sender(c), r); });
}

std::future<Result<msg::WhereReply>> DirectoryClient::where(const ObjectID& id) {
  auto p = std::make_shared<std::promise<Result<msg::WhereReply>>>();
  auto f = p->get_future();
  asio::post(ctx_.io, [this, id, p] {
    if (ctx_.stopping) return p->set_value(Status(StatusCode::kCancelled, "node shutting down"));
    msg::Where w{id, ctx_.next_request(), ctx_.me};
    Rank to = ctx_.shard_of(id);
    where_[w.request] = PendingWhere{id, to, p};
    ctx_.send(to, w);
  });
  return f;
}

void DirectoryClient::on_where_reply(Rank from, const msg::WhereReply& r) {
  auto it = where_.find(r.request);
  if (it == where_.end() || it->second.id != r.id) {
    return ctx_.refuse(from, "WhereReply", "no such query pending");
  }
  if (from != it->second.sent_to) return ctx_.refuse(from, "WhereReply", "not from the object's shard");
  auto reply = std::move(it->second.reply);
  where_.erase(it);
  reply->set_value(r);
}

void DirectoryClient::track(std::uint64_t request, const ObjectID& id, msg::Message m,
                            std::function<void(Status)> done) {
  Rank to = ctx_.shard_of(id);
  auto& u = unacked_[request];
  u = Unacked{id, to, std::move(m), std::move(done)};
  ctx_.send(to, u.message);
}

Status DirectoryClient::wait(std::future<Status>& f, const std::string& what) {
  if (f.wait_for(ctx_.opts.bootstrap_timeout) != std::future_status::ready) {
    return timeout_error(what + ": no answer from the directory after " +
                         std::to_string(ctx_.opts.bootstrap_timeout.count()) + " ms");
  }
  return f.get();
}

// A put, create, seal or remove waiting for its shard's answer completes.
void DirectoryClient::complete(std::uint64_t request) {
  auto it = unacked_.find(request);
  if (it == unacked_.end()) return;
  auto done = std::move(it->second.done);
  unacked_.erase(it);
  if (done) done(Status::ok());
}

// Requests still waiting for an ack from a shard that moved.
void DirectoryClient::on_shards_moved(const std::vector<bool>&) {
  for (auto& [req, u] : unacked_) {
    Rank now = ctx_.shard_of(u.id);
    if (now == u.sent_to) continue;
    u.sent_to = now;
    ctx_.send(now, u.message);
  }
  for (auto& [req, w] : where_) {
    Rank now = ctx_.shard_of(w.id);
    if (now == w.sent_to) continue;
    w.sent_to = now;
    ctx_.send(now, msg::Where{w.id, req, ctx_.me});
  }
}

void DirectoryClient::on_stop() {
  for (auto& [req, u] : unacked_) {
    if (u.done) u.done(Status(StatusCode::kCancelled, "node shut down"));
  }
  unacked_.clear();
  for (auto& [req, w] : where_) w.reply->set_value(Status(StatusCode::kCancelled, "node shut down"));
  where_.clear();
}

}  // namespace hoplite::node
