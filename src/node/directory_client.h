// DirectoryClient: this node's requests to the directory that wait for an
// answer (put, create, seal and remove), and what it tells the directory
// about its own copies.
//
// A request goes to the object's shard and is kept until acked; if that
// shard's owner fails first, it is re-sent to the new owner. Callers on user
// threads block in request() until the ack, or a bound.
//
// Also asks a shard where an object is (Where), for the task runtime's
// lineage decisions.
//
// Owns: the pending acks and unacked requests, the pending Where queries;
// the PublishAck, RemoveAck and WhereReply messages.
// Thread-binding: the progress thread, except request() (any user thread).
#pragma once

#include <future>
#include <string>
#include <unordered_map>

#include "node/context.h"

namespace hoplite::node {

// The Publish that announces `e` (its bytes inline when complete and small).
msg::Publish make_publish(const store::ObjectEntry& e, msg::LocationState state, Rank me,
                          std::uint64_t inline_threshold);

class DirectoryClient final : public Component {
 public:
  explicit DirectoryClient(NodeContext& ctx);

  // Posts `m` (a Publish or a Remove) to the shard of m.id and waits for the
  // ack. User threads only.
  template <typename M>
  [[nodiscard]] Status request(M m, const std::string& what) {
    auto f = request_async(std::move(m));
    return wait(f, what);
  }
  // The same without waiting: the future is set by the ack (or the stop).
  template <typename M>
  std::future<Status> request_async(M m) {
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    asio::post(ctx_.io, [this, m, p]() mutable {
      if (ctx_.stopping) return p->set_value(Status(StatusCode::kCancelled, "node shutting down"));
      request_here(std::move(m), [p](Status st) { p->set_value(std::move(st)); });
    });
    return f;
  }

  // Progress thread: sends `m` and calls `done` with its ack (or the stop).
  template <typename M>
  void request_here(M m, std::function<void(Status)> done) {
    m.request = ctx_.next_request();
    track(m.request, m.id, msg::Message(m), std::move(done));
  }

  // Waits for a request's ack, at most the bootstrap timeout. User threads.
  [[nodiscard]] Status wait(std::future<Status>& f, const std::string& what);

  msg::Publish publish_msg(const store::ObjectEntry& e, msg::LocationState state) const {
    return make_publish(e, state, ctx_.me, ctx_.opts.inline_threshold);
  }

  // Who holds `id` now, from its shard (any thread; the future is set by
  // the reply, or the stop).
  std::future<Result<msg::WhereReply>> where(const ObjectID& id);

  void on_shards_moved(const std::vector<bool>& old_alive) override;
  void on_stop() override;

 private:
  struct Unacked {
    ObjectID id;
    Rank sent_to;
    msg::Message message;
    std::function<void(Status)> done;
  };
  void track(std::uint64_t request, const ObjectID& id, msg::Message m, std::function<void(Status)> done);
  void complete(std::uint64_t request);

  struct PendingWhere {
    ObjectID id;
    Rank sent_to;
    std::shared_ptr<std::promise<Result<msg::WhereReply>>> reply;
  };
  void on_where_reply(Rank from, const msg::WhereReply& r);

  NodeContext& ctx_;
  std::unordered_map<std::uint64_t, Unacked> unacked_;
  std::unordered_map<std::uint64_t, PendingWhere> where_;
};

}  // namespace hoplite::node
