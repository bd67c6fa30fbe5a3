#include "hoplite/node.h"

#include <cstring>
#include <unordered_set>

#include "common/host_port.h"
#include "node/node_impl.h"
#include "transport/factory.h"

namespace hoplite {

using boost::system::error_code;
namespace msg = control;

namespace {

// The local address that routes to `host`: connecting a UDP socket sends
// nothing, it only makes the kernel pick a source address.
std::string route_to(const std::string& host) {
  error_code ec;
  asio::io_context io;
  asio::ip::udp::resolver res(io);
  auto eps = res.resolve(host, "9", ec);
  if (ec || eps.empty()) return "127.0.0.1";
  asio::ip::udp::socket s(io);
  s.connect(*eps.begin(), ec);
  if (ec) return "127.0.0.1";
  return s.local_endpoint(ec).address().to_string();
}

}  // namespace

// ---------------------------------------------------------------- start/stop

// The order of ctx.components is the order in which a membership change
// reaches them (context.h): local state tied to a lost rank is dropped
// (directory, serving, fetching, reduce tasks) before directory state is
// re-routed (fetches, locates, acks) and before plans are repaired
// (reduces, then barriers).
void Node::Impl::build_components() {
  ctrl = std::make_unique<node::ControlPlane>(ctx);
  barriers = std::make_unique<node::Barriers>(ctx);
  membership = std::make_unique<node::Membership>(ctx, *ctrl, *barriers);
  directory = std::make_unique<node::DirectoryService>(ctx);
  dir = std::make_unique<node::DirectoryClient>(ctx);
  server = std::make_unique<node::ObjectServer>(
      ctx, [this](const ObjectID& id) { return fetcher->lookup_pending(id); });
  fetcher = std::make_unique<node::Fetcher>(ctx, *server, *dir);
  composites = std::make_unique<node::Composites>(ctx, *fetcher, *server, *dir);
  fetcher->set_composites(composites.get());
  executor = std::make_unique<node::ReduceExecutor>(ctx, *fetcher, *server, *composites, *dir);
  coordinator = std::make_unique<node::ReduceCoordinator>(ctx, *membership, *fetcher, *server, *dir);
  mailbox = std::make_unique<node::Mailbox>(ctx);
  ctx.components = {directory.get(), server.get(),      fetcher.get(), composites.get(),
                    executor.get(),  coordinator.get(), dir.get(),     barriers.get()};
}

Status Node::Impl::start() {
  HOPLITE_RETURN_IF_ERROR(ctx.opts.validate());
  ctx.set_rank(static_cast<node::Rank>(ctx.opts.rank));
  ctx.world = static_cast<std::uint32_t>(ctx.opts.world_size);
  log::set_rank(ctx.opts.rank);

  auto s = store::ObjectStore::create(ctx.opts.store_capacity);
  if (!s.is_ok()) return s.status();
  ctx.store = std::move(s).value();

  auto boot = split_host_port(ctx.opts.bootstrap_address);
  if (!boot.is_ok()) return boot.status();
  const std::string host = ctx.opts.listen_host.empty() ? route_to(boot->first) : ctx.opts.listen_host;

  build_components();
  // Rank 0's control port is the bootstrap port everyone dials. A restarted
  // rank 0 takes it back when its old process has let go of it (later
  // rejoiners dial it there), else any port: its table entry says which.
  if (ctx.me == 0 && ctx.opts.rejoin) {
    if (!ctrl->listen(host, boot->second).is_ok()) {
      LOG_WARN("rank 0 rejoining: bootstrap port " << boot->second << " is taken, listening elsewhere");
      HOPLITE_RETURN_IF_ERROR(ctrl->listen(host, 0));
    }
  } else {
    HOPLITE_RETURN_IF_ERROR(ctrl->listen(host, ctx.me == 0 ? boot->second : 0));
  }

  transport::TransportOptions to;
  to.rank = ctx.me;
  to.token = ctx.opts.token;
  to.listen_host = host;
  to.max_get = ctx.opts.chunk_size;
  auto t = transport::make_transport(ctx.opts.transport, ctx.io, to);
  if (!t.is_ok()) return t.status();
  ctx.transport = std::move(t).value();
  auto r = ctx.transport->register_memory(ctx.store->base(), ctx.store->capacity());
  if (!r.is_ok()) return r.status();
  ctx.region = std::move(r).value();
  // Reads of our arena are checked against the watches we granted.
  ctx.transport->set_access_check(
      [this](transport::Rank peer, const ObjectID& id, std::uint64_t offset, std::uint64_t length) {
        return server->granted(peer, id, offset, length);
      });
  ctx.transport->set_peer_error_handler(
      [this](transport::Rank peer, const Status& why) { membership->data_plane_lost(peer, why); });
  if (ctx.opts.token.empty()) {
    LOG_WARN(
        "rank " << ctx.me
                << ": running WITHOUT a cluster token (HOPLITE_INSECURE): anyone who can reach this node's "
                   "ports can join the cluster, read and overwrite its objects");
  }
  LOG_INFO("rank " << ctx.me << "/" << ctx.world << " control " << host << ":" << ctrl->port() << " data "
                   << ctx.transport->name() << " " << ctx.transport->address() << " store "
                   << ctx.store->capacity() << " B (" << ctx.store->placement() << ")");

  auto deadline = std::chrono::steady_clock::now() + ctx.opts.bootstrap_timeout;
  work.emplace(ctx.io.get_executor());
  progress = std::thread([this] { ctx.io.run(); });
  auto joined_future = membership->joined();
  asio::post(ctx.io, [this, deadline] {
    ctrl->start_accepting();
    membership->start_bootstrap(deadline);
  });
  if (joined_future.wait_until(deadline) != std::future_status::ready) {
    return timeout_error("bootstrap: the cluster did not form within " +
                         std::to_string(ctx.opts.bootstrap_timeout.count()) + " ms (rank 0 at " +
                         ctx.opts.bootstrap_address + ")");
  }
  Status joined_status = joined_future.get();
  if (!joined_status.is_ok()) return joined_status;
  run_sync([this] { membership->after_join(); });
  return Status::ok();
}

void Node::Impl::stop() {
  if (!progress.joinable()) return;
  asio::post(ctx.io, [this] {
    ctx.stopping = true;
    for (auto* c : ctx.components) c->on_stop();
    membership->stop();
    // Let queued frames (a barrier release, a last publish) reach the
    // peers before the sockets close; give up after a bound.
    auto conns = ctrl->close_all_when_flushed();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    auto timer = std::make_shared<asio::steady_timer>(ctx.io);
    auto finish = std::make_shared<std::function<void()>>();
    *finish = [this, conns, deadline, timer, finish] {
      bool flushed = std::none_of(conns.begin(), conns.end(), [](const auto& c) { return c->open(); });
      if (!flushed && std::chrono::steady_clock::now() < deadline) {
        timer->expires_after(std::chrono::milliseconds(2));
        timer->async_wait([finish](error_code) { (*finish)(); });
        return;
      }
      for (auto& c : conns) c->close(Status(StatusCode::kCancelled, "shutdown"));
      ctx.transport->shutdown();
      fetcher->clear();
      server->clear();
      work.reset();
      ctx.io.stop();
      *finish = nullptr;  // break the self-reference
    };
    (*finish)();
  });
  progress.join();
  membership.reset();  // joins the callback thread
}

void Node::Impl::abort_local(const ObjectID& id, const Status& why) {
  fetcher->delete_local(id);
  ctx.send(ctx.shard_of(id), msg::Unpublish{id, ctx.me});
  fetcher->fulfill_waiters(id, why);
}

// ------------------------------------------------------------- public API

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Node::~Node() = default;

Result<std::unique_ptr<Node>> Node::create(const NodeOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  Status st = impl->start();
  if (!st.is_ok()) {
    LOG_ERROR("node start failed: " << st.to_string());
    return st;
  }
  std::unique_ptr<Node> node(new Node(std::move(impl)));
  st = node->probe_links();
  if (!st.is_ok()) {
    // Not fatal: the planner falls back to a conservative model, 1 Gbit/s
    // and 50 us, and says so.
    LOG_WARN("link probe failed (" << st.to_string() << "); assuming 125 MB/s and 50 us");
    node->impl_->ctx.link_bandwidth =
        node->impl_->ctx.opts.link_bandwidth > 0 ? node->impl_->ctx.opts.link_bandwidth : 1.25e8;
    node->impl_->ctx.link_latency =
        node->impl_->ctx.opts.link_latency > 0 ? node->impl_->ctx.opts.link_latency : 50e-6;
  }
  return node;
}

Status Node::probe_links() {
  Impl& impl = *impl_;
  node::NodeContext& m = impl.ctx;
  m.link_bandwidth = m.opts.link_bandwidth;
  m.link_latency = m.opts.link_latency;
  // A rejoiner cannot run the probe: its barriers are not the survivors'.
  if (m.opts.rejoin) {
    if (m.link_bandwidth <= 0) m.link_bandwidth = 1.25e8;
    if (m.link_latency <= 0) m.link_latency = 50e-6;
    return {};
  }
  if (m.world == 1 || (m.link_bandwidth > 0 && m.link_latency > 0)) {
    if (m.link_bandwidth <= 0) m.link_bandwidth = 1e10;  // one node: memory speed, order of magnitude
    if (m.link_latency <= 0) m.link_latency = 1e-6;
    return {};
  }
  using Clock = std::chrono::steady_clock;
  const node::Rank next = (m.me + 1) % m.world;
  // Latency: must_exist lookups answered by the next rank's shard, best of 5.
  double rtt = 1.0;
  for (int i = 0; i < 5; ++i) {
    ObjectID id = ObjectID::random();
    // By hash, not shard_of(): if `next` already failed no id maps to it
    // any more, and the lookup then goes to whoever took its shard.
    while (id.hash() % m.world != next) id = ObjectID::random();
    auto t0 = Clock::now();
    auto r = get(id, GetOptions{true}).wait(m.opts.bootstrap_timeout);
    if (r.is_ok() || r.status().code() != StatusCode::kNotFound) {
      return internal_error("latency probe: unexpected answer " + r.status().to_string());
    }
    rtt = std::min(rtt, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  // Bandwidth: every rank pulls its neighbour's probe at once, so each link
  // carries one stream each way, like a chain does.
  if (!impl.run_sync([&] { return m.alive.empty() || m.alive[next]; })) {
    return peer_failure("bandwidth probe: rank " + std::to_string(next) + " already failed");
  }
  constexpr std::uint64_t kProbe = 2u << 20;
  auto probe = [](node::Rank r) { return ObjectID::from_name("__hoplite/probe/" + std::to_string(r)); };
  std::vector<std::byte> bytes(kProbe, std::byte{0x5a});
  HOPLITE_RETURN_IF_ERROR(put(probe(m.me), bytes));
  HOPLITE_RETURN_IF_ERROR(barrier(m.opts.bootstrap_timeout));
  auto t0 = Clock::now();
  auto v = get(probe(next)).wait(m.opts.bootstrap_timeout);
  if (!v.is_ok()) return v.status();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  v = Status(StatusCode::kCancelled, "released");
  HOPLITE_RETURN_IF_ERROR(barrier(m.opts.bootstrap_timeout));
  HOPLITE_RETURN_IF_ERROR(remove(probe(m.me)));
  HOPLITE_RETURN_IF_ERROR(remove(probe(next), RemoveScope::kLocal));
  if (m.link_latency <= 0) m.link_latency = rtt / 2;
  if (m.link_bandwidth <= 0) m.link_bandwidth = static_cast<double>(kProbe) / std::max(secs - rtt, 1e-6);
  LOG_INFO("link model: latency " << m.link_latency * 1e6 << " us, bandwidth " << m.link_bandwidth / 1e6
                                  << " MB/s");
  return {};
}

int Node::rank() const {
  return static_cast<int>(impl_->ctx.me);
}
int Node::world_size() const {
  return static_cast<int>(impl_->ctx.world);
}
const NodeOptions& Node::options() const {
  return impl_->ctx.opts;
}

Status Node::put(const ObjectID& id, std::span<const std::byte> bytes) {
  auto e = impl_->ctx.store->create_object(id, bytes.size());
  if (!e.is_ok()) return e.status();
  auto entry = std::move(e).value();
  if (!bytes.empty()) std::memcpy(entry->data, bytes.data(), bytes.size());
  entry->seal();
  Status st = impl_->dir->request(impl_->dir->publish_msg(*entry, msg::LocationState::kComplete),
                                  "put of " + id.short_hex());
  asio::post(impl_->ctx.io, [impl = impl_.get(), entry] { impl->sealed(entry); });
  return st;
}

Result<ObjectWriter> Node::create(const ObjectID& id, std::uint64_t size) {
  auto e = impl_->ctx.store->create_object(id, size);
  if (!e.is_ok()) return e.status();
  auto state = std::make_shared<detail::WriterState>();
  state->node = impl_.get();
  state->entry = std::move(e).value();
  Status st = impl_->dir->request(impl_->dir->publish_msg(*state->entry, msg::LocationState::kPartial),
                                  "create of " + id.short_hex());
  if (!st.is_ok()) {
    impl_->ctx.store->erase(id);
    return st;
  }
  return ObjectWriter(std::move(state));
}

ObjectFuture Node::get(const ObjectID& id, GetOptions opts) {
  auto st = std::make_shared<detail::GetState>();
  st->id = id;
  st->report_landed = opts.copy_while_arriving;
  // Fast path: a complete local copy needs no hop through the progress thread.
  if (auto e = impl_->ctx.store->find(id); e && e->sealed()) {
    st->fulfill(ObjectView(id, e->data, e->size, e, -1));
    return ObjectFuture(st);
  }
  asio::post(impl_->ctx.io, [impl = impl_.get(), st, opts] {
    impl->fetcher->start_get(st, opts.must_exist,
                             opts.after >= 0 ? static_cast<node::Rank>(opts.after) : msg::kNoRank,
                             opts.direct);
  });
  return ObjectFuture(st);
}

Status Node::remove(const ObjectID& id, RemoveScope scope) {
  if (scope == RemoveScope::kLocal) {
    impl_->run_sync([&] {
      impl_->fetcher->delete_local(id);
      impl_->ctx.send(impl_->ctx.shard_of(id), msg::Unpublish{id, impl_->ctx.me});
    });
    return {};
  }
  impl_->run_sync([&] { impl_->fetcher->delete_local(id); });
  return impl_->dir->request(msg::Remove{id, 0, impl_->ctx.me}, "remove of " + id.short_hex());
}

bool Node::contains(const ObjectID& id) const {
  auto e = impl_->ctx.store->find(id);
  return e && e->sealed();
}

std::uint64_t Node::local_progress(const ObjectID& id) const {
  auto e = impl_->ctx.store->find(id);
  return e ? e->ready() : 0;
}

std::future<Result<ReduceResult>> Node::reduce_async(const ReduceOptions& opts) {
  auto p = std::make_shared<std::promise<Result<ReduceResult>>>();
  auto f = p->get_future();
  if (opts.inputs.empty()) {
    p->set_value(invalid_argument("reduce needs at least one input"));
    return f;
  }
  if (opts.k > opts.inputs.size()) {
    p->set_value(invalid_argument("reduce of the first " + std::to_string(opts.k) + " of only " +
                                  std::to_string(opts.inputs.size()) + " inputs"));
    return f;
  }
  std::unordered_set<ObjectID> seen(opts.inputs.begin(), opts.inputs.end());
  if (seen.size() != opts.inputs.size() || seen.count(opts.target)) {
    p->set_value(invalid_argument("reduce inputs must be distinct and differ from the target"));
    return f;
  }
  asio::post(impl_->ctx.io, [impl = impl_.get(), opts, p] {
    if (impl->ctx.stopping) return p->set_value(Status(StatusCode::kCancelled, "node shut down"));
    impl->coordinator->start(opts, p);
  });
  return f;
}

Result<ReduceResult> Node::reduce(const ReduceOptions& opts) {
  auto f = reduce_async(opts);
  if (f.wait_for(opts.timeout) != std::future_status::ready) {
    return timeout_error("reduce into " + opts.target.short_hex() + " not complete after " +
                         std::to_string(opts.timeout.count()) + " ms");
  }
  return f.get();
}

Status Node::barrier(std::chrono::milliseconds timeout) {
  return impl_->barriers->wait(timeout);
}

std::vector<int> Node::failed_ranks() const {
  return impl_->membership->failed_ranks();
}

std::uint64_t Node::membership_epoch() const {
  return impl_->membership->epoch();
}

Status Node::send_message(int rank, std::uint16_t channel, std::span<const std::byte> payload) {
  if (rank >= 0 && rank < world_size()) {
    for (int f : failed_ranks()) {
      if (f == rank) return peer_failure("message to rank " + std::to_string(rank) + ", which failed");
    }
  }
  return impl_->mailbox->send(rank, channel, payload);
}

void Node::on_message(std::uint16_t channel, MessageHandler handler) {
  if (handler) {
    impl_->mailbox->subscribe(channel, std::move(handler));
  } else {
    impl_->mailbox->unsubscribe(channel);
  }
}

Result<ObjectLocations> Node::where(const ObjectID& id) const {
  auto f = impl_->dir->where(id);
  if (f.wait_for(impl_->ctx.opts.bootstrap_timeout) != std::future_status::ready) {
    return timeout_error("where " + id.short_hex() + ": no answer from its shard");
  }
  auto r = f.get();
  if (!r.is_ok()) return r.status();
  ObjectLocations out;
  out.known = r->known;
  out.inline_copy = r->has_inline;
  for (auto h : r->holders) out.holders.push_back(static_cast<int>(h));
  return out;
}

void Node::on_membership_change(std::function<void(const MembershipEvent&)> callback) {
  impl_->membership->add_callback(std::move(callback));
}

LinkModel Node::link_model() const {
  return {impl_->ctx.link_bandwidth, impl_->ctx.link_latency};
}

NodeStats Node::stats() const {
  NodeStats s;
  s.objects = impl_->ctx.store->count();
  s.store_used = impl_->ctx.store->used();
  s.store_capacity = impl_->ctx.store->capacity();
  s.bytes_received = impl_->ctx.bytes_received.load();
  auto ts = impl_->run_sync([&] { return impl_->ctx.transport->stats(); });
  s.bytes_served = ts.bytes_served;
  s.rejected_connections = impl_->ctx.rejected.load() + ts.rejected_connections;
  s.protocol_errors = impl_->ctx.protocol_errors.load();
  s.refused_messages = impl_->ctx.refused.load();
  s.watches = impl_->ctx.watches.load();
  s.reduce_tasks = impl_->ctx.reduce_tasks_started.load();
  return s;
}

std::string Node::control_address(int rank) const {
  const auto& p = impl_->ctrl->peer(static_cast<node::Rank>(rank));
  return p.host + ":" + std::to_string(p.control_port);
}

std::string Node::data_address(int rank) const {
  return impl_->ctrl->peer(static_cast<node::Rank>(rank)).transport_address;
}

std::string Node::transport_name() const {
  return impl_->ctx.transport->name();
}

std::string Node::transport_description(int peer) const {
  return impl_->run_sync([&] { return impl_->ctx.transport->describe(static_cast<node::Rank>(peer)); });
}

// ------------------------------------------------------------ ObjectWriter

ObjectWriter& ObjectWriter::operator=(ObjectWriter&& o) noexcept {
  if (this != &o) {
    abort();
    s_ = std::move(o.s_);
  }
  return *this;
}

ObjectWriter::~ObjectWriter() {
  abort();
}

const ObjectID& ObjectWriter::id() const {
  return s_->entry->id;
}

std::span<std::byte> ObjectWriter::data() const {
  if (!s_ || !s_->entry) return {};
  return {s_->entry->data, s_->entry->size};
}

Status ObjectWriter::publish(std::uint64_t bytes) {
  if (!s_ || s_->done) return invalid_argument("publish on an empty writer");
  if (bytes > s_->entry->size) {
    return invalid_argument("publish of " + std::to_string(bytes) + " bytes beyond the object size " +
                            std::to_string(s_->entry->size));
  }
  s_->entry->advance(bytes);
  asio::post(s_->node->ctx.io, [node = s_->node, id = s_->entry->id] { node->server->notify(id); });
  return {};
}

Status ObjectWriter::seal() {
  if (!s_ || s_->done) return invalid_argument("seal on an empty writer");
  Node::Impl* node = s_->node;
  const std::string what = "seal of " + s_->entry->id.short_hex();
  auto f = seal_async();
  return node->dir->wait(f, what);
}

std::future<Status> ObjectWriter::seal_async() {
  if (!s_ || s_->done) {
    std::promise<Status> p;
    p.set_value(invalid_argument("seal on an empty writer"));
    return p.get_future();
  }
  auto entry = s_->entry;
  entry->seal();
  s_->done = true;
  Node::Impl* node = s_->node;
  s_.reset();
  auto f = node->dir->request_async(node->dir->publish_msg(*entry, msg::LocationState::kComplete));
  asio::post(node->ctx.io, [node, entry] { node->sealed(entry); });
  return f;
}

void ObjectWriter::abort() {
  if (!s_ || s_->done) return;
  s_->done = true;
  Node::Impl* node = s_->node;
  ObjectID id = s_->entry->id;
  s_.reset();
  asio::post(node->ctx.io, [node, id] {
    node->abort_local(id, Status(StatusCode::kCancelled, "writer of " + id.short_hex() + " aborted"));
  });
}

}  // namespace hoplite
