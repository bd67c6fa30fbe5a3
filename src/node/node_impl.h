// Node::Impl: wires a node's components together and owns its progress
// thread.
//
// Private to src/node/. Every component lives here, built once the node
// knows its rank, in the order membership changes reach them; they talk
// through NodeContext (context.h) and the narrow calls of each other's
// headers. The public methods (node.cc) hand work to the progress thread
// with asio::post and wait on futures.
#pragma once

#include <future>
#include <thread>

#include "hoplite/node.h"
#include "node/barriers.h"
#include "node/composites.h"
#include "node/context.h"
#include "node/control_plane.h"
#include "node/directory_client.h"
#include "node/directory_service.h"
#include "node/fetcher.h"
#include "node/mailbox.h"
#include "node/membership.h"
#include "node/object_server.h"
#include "node/reduce_coordinator.h"
#include "node/reduce_executor.h"

namespace hoplite {

namespace asio = boost::asio;

namespace detail {
// Shared by an ObjectWriter and the node; the node outlives every writer by
// contract (documented on Node).
struct WriterState {
  Node::Impl* node = nullptr;
  std::shared_ptr<store::ObjectEntry> entry;
  bool done = false;
};
}  // namespace detail

class Node::Impl {
 public:
  explicit Impl(NodeOptions o) : ctx(std::move(o)) {}
  ~Impl() { stop(); }

  Status start();
  void stop();

  // Runs `f` on the progress thread and returns its result (user threads).
  template <typename F>
  auto run_sync(F&& f) {
    std::packaged_task<decltype(f())()> task(std::forward<F>(f));
    auto fut = task.get_future();
    asio::post(ctx.io, [&task] { task(); });
    return fut.get();
  }
  // Progress thread: a local copy was sealed; drop a local copy.
  void sealed(const std::shared_ptr<store::ObjectEntry>& e) { fetcher->on_local_sealed(e); }
  void abort_local(const ObjectID& id, const Status& why);

  node::NodeContext ctx;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread progress;

  std::unique_ptr<node::ControlPlane> ctrl;
  std::unique_ptr<node::Barriers> barriers;
  std::unique_ptr<node::Membership> membership;
  std::unique_ptr<node::DirectoryService> directory;
  std::unique_ptr<node::DirectoryClient> dir;
  std::unique_ptr<node::ObjectServer> server;
  std::unique_ptr<node::Fetcher> fetcher;
  std::unique_ptr<node::Composites> composites;
  std::unique_ptr<node::ReduceExecutor> executor;
  std::unique_ptr<node::ReduceCoordinator> coordinator;
  std::unique_ptr<node::Mailbox> mailbox;

 private:
  void build_components();
};

}  // namespace hoplite
