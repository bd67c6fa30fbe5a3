// Membership: who is in the cluster, who is alive, and what a change means.
//
// Bootstrap: every rank dials rank 0 and registers its control and data
// addresses; rank 0 hands out the table once all have. A restarted process
// rejoins under its old rank instead, through the leader (the lowest live
// rank, as for barriers): it asks rank 0's address or any contact it was
// given, a member that does not lead answers with the leader's address
// (RejoinAt), and the leader sends it a table with the current view and
// tells the others in a PeerUpdate. So rank 0 may die and come back like
// any rank. Failure detection: heartbeats every failure_timeout/4
// and a FailureDetector over the silence, short-cut by a broken control
// connection. A failure is announced to every component in three phases
// (see Component in context.h): drop what is tied to the rank, re-route
// directory state whose shard moved, repair plans that used the rank. User
// threads read a copy of the view, and a callback runs on a thread of its
// own for every change.
//
// Owns: the membership view (ctx.alive), the epoch, the detector and its
// timer, rank 0's registrations, the join contacts and connection, the join
// promise, the callback thread; Register, Table, Heartbeat, Rejoin,
// RejoinAt, PeerUpdate and Error.
// Thread-binding: the progress thread, except failed_ranks(), epoch() and
// add_callback() (any thread, under a mutex).
#pragma once

#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "hoplite/node.h"
#include "node/callback_thread.h"
#include "node/context.h"
#include "node/control_plane.h"
#include "node/failure_detector.h"

namespace hoplite::node {

class Barriers;

class Membership final : public ControlEvents {
 public:
  Membership(NodeContext& ctx, ControlPlane& ctrl, Barriers& barriers);

  // Progress thread: rank 0 waits for registrations, the others dial it
  // (retrying until `deadline`). The future is set once the table is in.
  void start_bootstrap(std::chrono::steady_clock::time_point deadline);
  std::future<Status> joined() { return joined_.get_future(); }
  // Progress thread, after the join: heartbeats start.
  void after_join();

  void declare_failed(Rank f, const std::string& why, bool silent = false);

  // ControlEvents.
  void heard_from(Rank r) override;
  void connection_lost(Rank r, const Status& why) override;
  Rank bootstrap_rank() const override;
  // The data plane saw its endpoint to `r` fail (a UCX peer error): as
  // good a sign as a broken control connection.
  void data_plane_lost(Rank r, const Status& why);

  // Any thread.
  std::vector<int> failed_ranks() const;
  std::uint64_t epoch() const;
  void add_callback(std::function<void(const MembershipEvent&)> cb);

  void stop();

 private:
  void bootstrap_connect(std::chrono::steady_clock::time_point deadline);
  // The next join attempt, at contacts_[next_contact_], after `delay`.
  void retry_join(std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds delay);
  void watch_join(std::chrono::steady_clock::time_point deadline, const ConnPtr& c);
  void on_rejoin_at(const ConnPtr& c, const msg::RejoinAt& a);
  void install_table(const msg::Table& t);
  void on_register(const ConnPtr& c, const msg::Register& r);
  void on_error(const ConnPtr& c, const msg::Error& e);
  void on_rejoin(const ConnPtr& c, const msg::Rejoin& r);
  void on_peer_update(const msg::PeerUpdate& u);
  void start_heartbeats();
  void heartbeat_tick();
  void reroute(const std::vector<bool>& old_alive);
  void publish_view(const MembershipEvent* ev);
  void fail_join(Status st);

  NodeContext& ctx_;
  ControlPlane& ctrl_;
  Barriers& barriers_;
  FailureDetector detector_;
  std::uint64_t epoch_ = 0;
  std::shared_ptr<asio::steady_timer> heartbeat_timer_;
  std::promise<Status> joined_;
  bool joined_set_ = false;
  std::map<Rank, std::pair<msg::PeerInfo, ConnPtr>> registrations_;  // rank 0
  // Where a joining node dials: rank 0's address, then the rejoin contacts
  // (a RejoinAt puts the leader's first). join_ is the connection that
  // carries our Register or Rejoin; its rank sends our table.
  std::vector<std::string> contacts_;
  std::size_t next_contact_ = 0;
  std::chrono::steady_clock::time_point deadline_{};
  ConnPtr join_;

  mutable std::mutex mu_;  // guards the copies below, read by user threads
  std::vector<int> failed_copy_;
  std::uint64_t epoch_copy_ = 0;
  std::vector<std::function<void(const MembershipEvent&)>> callbacks_list_;
  std::unique_ptr<CallbackThread> callbacks_;
};

}  // namespace hoplite::node
