// The C ABI (include/hoplite/hoplite.h) over the C++ API: each handle owns
// the C++ object it wraps; errors become a code and this thread's message.
#include "hoplite/hoplite.h"

#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "hoplite/collectives.h"
#include "hoplite/node.h"

struct hoplite_node {
  std::unique_ptr<hoplite::Node> node;
  // The buffer collectives of the C API, ordered as the callers' calls.
  std::mutex collectives_mu;
  std::unique_ptr<hoplite::Collectives> collectives;
};
struct hoplite_view {
  hoplite::ObjectView view;
};
struct hoplite_future {
  hoplite::ObjectFuture future;
};
struct hoplite_writer {
  hoplite::ObjectWriter writer;
  std::uint64_t size = 0;
};

namespace {

using hoplite::Status;
using hoplite::StatusCode;

thread_local std::string last_error;

hoplite_status_t code_of(StatusCode c) {
  return static_cast<hoplite_status_t>(static_cast<int>(c));
}

hoplite_status_t fail(const Status& st) {
  last_error = st.to_string();
  return code_of(st.code());
}

hoplite_status_t report(const Status& st) {
  return st.is_ok() ? HOPLITE_OK : fail(st);
}

hoplite_status_t null_argument(const char* what) {
  return fail(hoplite::invalid_argument(std::string(what) + " is NULL"));
}

// A C++ exception must not cross into C: it becomes an internal error.
template <typename F>
hoplite_status_t guarded(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    return fail(Status(StatusCode::kInternal, std::string("unexpected exception: ") + e.what()));
  } catch (...) {
    return fail(Status(StatusCode::kInternal, "unexpected exception"));
  }
}

hoplite::ObjectID to_cpp(const hoplite_object_id_t& id) {
  return hoplite::ObjectID::from_bytes(id.bytes);
}
hoplite_object_id_t to_c(const hoplite::ObjectID& id) {
  hoplite_object_id_t out;
  std::memcpy(out.bytes, id.data(), HOPLITE_OBJECT_ID_SIZE);
  return out;
}

std::chrono::milliseconds timeout_of(int64_t ms) {
  if (ms < 0) return hoplite::Collectives::kDefaultTimeout;
  return std::chrono::milliseconds(ms);
}
std::chrono::milliseconds wait_of(int64_t ms) {
  if (ms < 0) return hoplite::ObjectFuture::kForever;
  return std::chrono::milliseconds(ms);
}

// A caller's struct of an older (smaller) version: the fields it has over
// the defaults.
template <typename T>
T read_versioned(const T& in, T defaults) {
  const std::size_t n = std::min<std::size_t>(in.struct_size, sizeof(T));
  std::memcpy(&defaults, &in, n);
  defaults.struct_size = static_cast<std::uint32_t>(sizeof(T));
  return defaults;
}
// Writes `full` into the caller's struct, up to its size.
template <typename T>
void write_versioned(T* out, const T& full) {
  const std::uint32_t size = out->struct_size;
  std::memcpy(out, &full, std::min<std::size_t>(size, sizeof(T)));
  out->struct_size = size;
}

// An enum from C may hold any int (a caller's cast); loading such a value
// as the C++ enum type is undefined, so its bytes are read as an int.
template <typename E>
int raw(const E& e) {
  static_assert(sizeof(E) == sizeof(int));
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// The op and dtype a caller passed, checked.
hoplite_status_t check_reduce_kind(const hoplite_reduce_op_t& op, const hoplite_dtype_t& dtype,
                                   hoplite::ReduceOp* o, hoplite::DataType* t) {
  const int ov = raw(op), tv = raw(dtype);
  if (ov < HOPLITE_OP_SUM || ov > HOPLITE_OP_MAX)
    return fail(hoplite::invalid_argument("unknown reduce op " + std::to_string(ov)));
  if (tv < HOPLITE_FLOAT32 || tv > HOPLITE_FLOAT16)
    return fail(hoplite::invalid_argument("unknown dtype " + std::to_string(tv)));
  *o = static_cast<hoplite::ReduceOp>(ov);
  *t = static_cast<hoplite::DataType>(tv);
  return HOPLITE_OK;
}

hoplite_status_t make_node(const hoplite::NodeOptions& o, hoplite_node_t** out) {
  auto node = hoplite::Node::create(o);
  if (!node.is_ok()) return fail(node.status());
  auto h = std::make_unique<hoplite_node>();
  h->node = std::move(node).value();
  h->collectives = std::make_unique<hoplite::Collectives>(*h->node, "hoplite/c");
  *out = h.release();
  return HOPLITE_OK;
}

template <typename F>
hoplite_status_t with_collectives(hoplite_node_t* node, F&& f) {
  if (!node) return null_argument("node");
  std::lock_guard lock(node->collectives_mu);
  return report(f(*node->collectives));
}

std::span<std::byte> bytes_of(void* p, std::uint64_t n) {
  return {static_cast<std::byte*>(p), p ? n : 0};
}
std::span<const std::byte> bytes_of(const void* p, std::uint64_t n) {
  return {static_cast<const std::byte*>(p), p ? n : 0};
}

}  // namespace

extern "C" {

uint32_t hoplite_version(void) {
  return HOPLITE_C_API_VERSION;
}

const char* hoplite_version_string(void) {
  return HOPLITE_VERSION_STRING;
}

const char* hoplite_last_error(void) {
  return last_error.c_str();
}

const char* hoplite_status_name(hoplite_status_t status) {
  const int v = raw(status);
  if (v < HOPLITE_OK || v > HOPLITE_ERR_INTERNAL) return "unknown status";
  // to_string() returns views of string literals.
  return hoplite::to_string(static_cast<StatusCode>(v)).data();
}

hoplite_object_id_t hoplite_object_id_from_name(const char* name) {
  return to_c(hoplite::ObjectID::from_name(name ? name : ""));
}

hoplite_object_id_t hoplite_object_id_random(void) {
  return to_c(hoplite::ObjectID::random());
}

void hoplite_object_id_hex(hoplite_object_id_t id, char out[41]) {
  const std::string h = to_cpp(id).hex();
  std::memcpy(out, h.c_str(), 41);
}

void hoplite_node_options_init(hoplite_node_options_t* o) {
  if (!o) return;
  const hoplite::NodeOptions d;
  *o = hoplite_node_options_t{};
  o->struct_size = sizeof *o;
  o->rank = d.rank;
  o->world_size = d.world_size;
  o->store_capacity = d.store_capacity;
  o->insecure = d.insecure;
  o->rejoin = d.rejoin;
  o->failure_timeout_ms = static_cast<uint32_t>(d.failure_timeout.count());
  o->bootstrap_timeout_ms = static_cast<uint32_t>(d.bootstrap_timeout.count());
}

hoplite_status_t hoplite_node_create(const hoplite_node_options_t* options, hoplite_node_t** node) {
  if (!options) return null_argument("options");
  if (!node) return null_argument("node");
  *node = nullptr;
  return guarded([&] {
    hoplite_node_options_t defaults;
    hoplite_node_options_init(&defaults);
    const hoplite_node_options_t c = read_versioned(*options, defaults);
    hoplite::NodeOptions o;
    o.rank = c.rank;
    o.world_size = c.world_size;
    if (c.bootstrap_address) o.bootstrap_address = c.bootstrap_address;
    if (c.listen_host) o.listen_host = c.listen_host;
    o.store_capacity = c.store_capacity;
    if (c.transport) o.transport = c.transport;
    if (c.token) o.token = c.token;
    o.insecure = c.insecure != 0;
    o.rejoin = c.rejoin != 0;
    o.failure_timeout = std::chrono::milliseconds(c.failure_timeout_ms);
    o.bootstrap_timeout = std::chrono::milliseconds(c.bootstrap_timeout_ms);
    return make_node(o, node);
  });
}

hoplite_status_t hoplite_node_create_from_env(hoplite_node_t** node) {
  if (!node) return null_argument("node");
  *node = nullptr;
  return guarded([&] {
    auto o = hoplite::NodeOptions::from_environment();
    if (!o.is_ok()) return fail(o.status());
    return make_node(*o, node);
  });
}

void hoplite_node_destroy(hoplite_node_t* node) {
  delete node;
}

int hoplite_node_rank(const hoplite_node_t* node) {
  return node ? node->node->rank() : -1;
}

int hoplite_node_world_size(const hoplite_node_t* node) {
  return node ? node->node->world_size() : -1;
}

hoplite_status_t hoplite_put(hoplite_node_t* node, hoplite_object_id_t id, const void* data, uint64_t size) {
  if (!node) return null_argument("node");
  if (!data && size) return null_argument("data");
  return guarded([&] { return report(node->node->put(to_cpp(id), data, size)); });
}

hoplite_status_t hoplite_create(hoplite_node_t* node, hoplite_object_id_t id, uint64_t size,
                                hoplite_writer_t** writer) {
  if (!node) return null_argument("node");
  if (!writer) return null_argument("writer");
  *writer = nullptr;
  return guarded([&] {
    auto w = node->node->create(to_cpp(id), size);
    if (!w.is_ok()) return fail(w.status());
    *writer = new hoplite_writer{std::move(w).value(), size};
    return HOPLITE_OK;
  });
}

void* hoplite_writer_data(hoplite_writer_t* writer) {
  return writer ? writer->writer.data().data() : nullptr;
}

uint64_t hoplite_writer_size(const hoplite_writer_t* writer) {
  return writer ? writer->size : 0;
}

hoplite_status_t hoplite_writer_publish(hoplite_writer_t* writer, uint64_t bytes) {
  if (!writer) return null_argument("writer");
  return guarded([&] { return report(writer->writer.publish(bytes)); });
}

hoplite_status_t hoplite_writer_seal(hoplite_writer_t* writer) {
  if (!writer) return null_argument("writer");
  return guarded([&] { return report(writer->writer.seal()); });
}

void hoplite_writer_destroy(hoplite_writer_t* writer) {
  delete writer;
}

hoplite_status_t hoplite_get_async(hoplite_node_t* node, hoplite_object_id_t id, uint32_t flags,
                                   hoplite_future_t** future) {
  if (!node) return null_argument("node");
  if (!future) return null_argument("future");
  *future = nullptr;
  return guarded([&] {
    hoplite::GetOptions g;
    g.must_exist = (flags & HOPLITE_GET_MUST_EXIST) != 0;
    *future = new hoplite_future{node->node->get(to_cpp(id), g)};
    return HOPLITE_OK;
  });
}

int hoplite_future_ready(const hoplite_future_t* future) {
  return future && future->future.ready() ? 1 : 0;
}

hoplite_status_t hoplite_future_wait(hoplite_future_t* future, int64_t timeout_ms, hoplite_view_t** view) {
  if (!future) return null_argument("future");
  if (!view) return null_argument("view");
  *view = nullptr;
  return guarded([&] {
    auto v = future->future.wait(wait_of(timeout_ms));
    if (!v.is_ok()) return fail(v.status());
    *view = new hoplite_view{std::move(v).value()};
    return HOPLITE_OK;
  });
}

void hoplite_future_release(hoplite_future_t* future) {
  delete future;
}

hoplite_status_t hoplite_get(hoplite_node_t* node, hoplite_object_id_t id, int64_t timeout_ms, uint32_t flags,
                             hoplite_view_t** view) {
  if (!view) return null_argument("view");
  *view = nullptr;
  hoplite_future_t* f = nullptr;
  if (hoplite_status_t st = hoplite_get_async(node, id, flags, &f); st != HOPLITE_OK) return st;
  const hoplite_status_t st = hoplite_future_wait(f, timeout_ms, view);
  hoplite_future_release(f);
  return st;
}

const void* hoplite_view_data(const hoplite_view_t* view) {
  return view ? view->view.data() : nullptr;
}

uint64_t hoplite_view_size(const hoplite_view_t* view) {
  return view ? view->view.size() : 0;
}

void hoplite_view_release(hoplite_view_t* view) {
  delete view;
}

hoplite_status_t hoplite_remove(hoplite_node_t* node, hoplite_object_id_t id, int scope) {
  if (!node) return null_argument("node");
  if (scope != HOPLITE_REMOVE_LOCAL && scope != HOPLITE_REMOVE_GLOBAL)
    return fail(hoplite::invalid_argument("unknown remove scope " + std::to_string(scope)));
  return guarded([&] {
    return report(node->node->remove(to_cpp(id), scope == HOPLITE_REMOVE_LOCAL
                                                     ? hoplite::RemoveScope::kLocal
                                                     : hoplite::RemoveScope::kGlobal));
  });
}

int hoplite_contains(const hoplite_node_t* node, hoplite_object_id_t id) {
  return node && node->node->contains(to_cpp(id)) ? 1 : 0;
}

void hoplite_reduce_options_init(hoplite_reduce_options_t* o) {
  if (!o) return;
  *o = hoplite_reduce_options_t{};
  o->struct_size = sizeof *o;
  o->op = HOPLITE_OP_SUM;
  o->dtype = HOPLITE_FLOAT32;
  o->timeout_ms = -1;
}

hoplite_status_t hoplite_reduce(hoplite_node_t* node, const hoplite_reduce_options_t* options,
                                hoplite_reduce_result_t* result) {
  if (!node) return null_argument("node");
  if (!options) return null_argument("options");
  hoplite_reduce_options_t defaults;
  hoplite_reduce_options_init(&defaults);
  const hoplite_reduce_options_t c = read_versioned(*options, defaults);
  if (!c.inputs && c.num_inputs) return null_argument("options->inputs");
  hoplite::ReduceOp rop;
  hoplite::DataType rdt;
  if (hoplite_status_t st = check_reduce_kind(c.op, c.dtype, &rop, &rdt); st != HOPLITE_OK) return st;
  return guarded([&] {
    hoplite::ReduceOptions o;
    for (std::size_t i = 0; i < c.num_inputs; ++i) o.inputs.push_back(to_cpp(c.inputs[i]));
    o.target = to_cpp(c.target);
    o.op = rop;
    o.dtype = rdt;
    o.k = c.k;
    o.timeout = timeout_of(c.timeout_ms);
    o.allow_stripes = c.allow_stripes != 0;
    auto r = node->node->reduce(o);
    if (!r.is_ok()) return fail(r.status());
    if (result) {
      hoplite_reduce_result_t full{};
      full.struct_size = sizeof full;
      // The caller's buffer for the used inputs, if its struct has one.
      if (result->struct_size >= offsetof(hoplite_reduce_result_t, num_used)) {
        full.used = result->used;
        full.used_capacity = result->used_capacity;
      }
      full.num_used = r->used.size();
      for (std::size_t i = 0; i < r->used.size() && i < full.used_capacity && full.used; ++i)
        full.used[i] = to_c(r->used[i]);
      full.depth = r->depth;
      full.recomputed = r->recomputed;
      full.restarts = r->restarts;
      full.striped = r->striped ? 1 : 0;
      write_versioned(result, full);
    }
    return HOPLITE_OK;
  });
}

hoplite_status_t hoplite_allreduce(hoplite_node_t* node, const void* send, void* recv, uint64_t count,
                                   hoplite_dtype_t dtype, hoplite_reduce_op_t op, int64_t timeout_ms) {
  hoplite::ReduceOp rop;
  hoplite::DataType t;
  if (hoplite_status_t st = check_reduce_kind(op, dtype, &rop, &t); st != HOPLITE_OK) return st;
  if (count && (!send || !recv)) return null_argument(!send ? "send" : "recv");
  const std::uint64_t bytes = count * hoplite::element_size(t);
  return guarded([&] {
    return with_collectives(node, [&](hoplite::Collectives& c) {
      return c.allreduce(bytes_of(send, bytes), bytes_of(recv, bytes), rop, t, timeout_of(timeout_ms));
    });
  });
}

hoplite_status_t hoplite_reduce_to(hoplite_node_t* node, const void* send, void* recv, uint64_t count,
                                   hoplite_dtype_t dtype, hoplite_reduce_op_t op, int root,
                                   int64_t timeout_ms) {
  hoplite::ReduceOp rop;
  hoplite::DataType t;
  if (hoplite_status_t st = check_reduce_kind(op, dtype, &rop, &t); st != HOPLITE_OK) return st;
  if (!node) return null_argument("node");
  if (count && !send) return null_argument("send");
  if (count && !recv && node->node->rank() == root) return null_argument("recv");
  const std::uint64_t bytes = count * hoplite::element_size(t);
  return guarded([&] {
    return with_collectives(node, [&](hoplite::Collectives& c) {
      return c.reduce(bytes_of(send, bytes), bytes_of(recv, recv ? bytes : 0), root, rop, t,
                      timeout_of(timeout_ms));
    });
  });
}

hoplite_status_t hoplite_broadcast(hoplite_node_t* node, void* buf, uint64_t bytes, int root,
                                   int64_t timeout_ms) {
  if (bytes && !buf) return null_argument("buf");
  return guarded([&] {
    return with_collectives(node, [&](hoplite::Collectives& c) {
      return c.broadcast(bytes_of(buf, bytes), root, timeout_of(timeout_ms));
    });
  });
}

hoplite_status_t hoplite_gather(hoplite_node_t* node, const void* send, uint64_t bytes, void* recv, int root,
                                int64_t timeout_ms) {
  if (!node) return null_argument("node");
  if (bytes && !send) return null_argument("send");
  const bool at_root = node->node->rank() == root;
  if (bytes && at_root && !recv) return null_argument("recv");
  const std::uint64_t total = at_root ? bytes * static_cast<std::uint64_t>(node->node->world_size()) : 0;
  return guarded([&] {
    return with_collectives(node, [&](hoplite::Collectives& c) {
      return c.gather(bytes_of(send, bytes), bytes_of(recv, total), root, timeout_of(timeout_ms));
    });
  });
}

hoplite_status_t hoplite_allgather(hoplite_node_t* node, const void* send, uint64_t bytes, void* recv,
                                   int64_t timeout_ms) {
  if (!node) return null_argument("node");
  if (bytes && (!send || !recv)) return null_argument(!send ? "send" : "recv");
  const std::uint64_t total = bytes * static_cast<std::uint64_t>(node->node->world_size());
  return guarded([&] {
    return with_collectives(node, [&](hoplite::Collectives& c) {
      return c.allgather(bytes_of(send, bytes), bytes_of(recv, total), timeout_of(timeout_ms));
    });
  });
}

hoplite_status_t hoplite_scatter(hoplite_node_t* node, const void* send, void* recv, uint64_t bytes, int root,
                                 int64_t timeout_ms) {
  if (!node) return null_argument("node");
  const bool at_root = node->node->rank() == root;
  if (bytes && !recv) return null_argument("recv");
  if (bytes && at_root && !send) return null_argument("send");
  const std::uint64_t total = at_root ? bytes * static_cast<std::uint64_t>(node->node->world_size()) : 0;
  return guarded([&] {
    return with_collectives(node, [&](hoplite::Collectives& c) {
      return c.scatter(bytes_of(send, total), bytes_of(recv, bytes), root, timeout_of(timeout_ms));
    });
  });
}

hoplite_status_t hoplite_alltoallv(hoplite_node_t* node, const void* send, const uint64_t* send_counts,
                                   void* recv, const uint64_t* recv_counts, int64_t timeout_ms) {
  if (!node) return null_argument("node");
  if (!send_counts || !recv_counts) return null_argument(!send_counts ? "send_counts" : "recv_counts");
  const auto n = static_cast<std::size_t>(node->node->world_size());
  std::span<const std::uint64_t> sc(send_counts, n), rc(recv_counts, n);
  std::uint64_t in = 0, out = 0;
  for (std::size_t i = 0; i < n; ++i) in += sc[i], out += rc[i];
  if ((in && !send) || (out && !recv)) return null_argument(in && !send ? "send" : "recv");
  return guarded([&] {
    return with_collectives(node, [&](hoplite::Collectives& c) {
      return c.alltoall(bytes_of(send, in), sc, bytes_of(recv, out), rc, timeout_of(timeout_ms));
    });
  });
}

hoplite_status_t hoplite_barrier(hoplite_node_t* node, int64_t timeout_ms) {
  return guarded([&] {
    return with_collectives(node, [&](hoplite::Collectives& c) { return c.barrier(timeout_of(timeout_ms)); });
  });
}

size_t hoplite_failed_ranks(const hoplite_node_t* node, int* ranks, size_t capacity) {
  if (!node) return 0;
  const std::vector<int> f = node->node->failed_ranks();
  for (std::size_t i = 0; i < f.size() && i < capacity && ranks; ++i) ranks[i] = f[i];
  return f.size();
}

uint64_t hoplite_membership_epoch(const hoplite_node_t* node) {
  return node ? node->node->membership_epoch() : 0;
}

hoplite_status_t hoplite_on_membership_change(hoplite_node_t* node, hoplite_membership_fn fn, void* user) {
  if (!node) return null_argument("node");
  if (!fn) return null_argument("fn");
  return guarded([&] {
    node->node->on_membership_change([fn, user](const hoplite::MembershipEvent& e) {
      hoplite_membership_event_t c{e.rank, e.alive ? 1 : 0, e.epoch, e.reason.c_str()};
      fn(&c, user);
    });
    return HOPLITE_OK;
  });
}

hoplite_status_t hoplite_node_stats(const hoplite_node_t* node, hoplite_stats_t* stats) {
  if (!node) return null_argument("node");
  if (!stats) return null_argument("stats");
  const hoplite::NodeStats s = node->node->stats();
  hoplite_stats_t full{static_cast<uint32_t>(sizeof full),
                       s.objects,
                       s.store_used,
                       s.store_capacity,
                       s.bytes_received,
                       s.bytes_served,
                       s.rejected_connections,
                       s.protocol_errors,
                       s.refused_messages,
                       s.reduce_tasks};
  write_versioned(stats, full);
  return HOPLITE_OK;
}

const hoplite_api_v1_t* hoplite_api_v1(void) {
  static const hoplite_api_v1_t table = {
      1,
      hoplite_version,
      hoplite_version_string,
      hoplite_last_error,
      hoplite_status_name,
      hoplite_object_id_from_name,
      hoplite_object_id_random,
      hoplite_object_id_hex,
      hoplite_node_options_init,
      hoplite_node_create,
      hoplite_node_create_from_env,
      hoplite_node_destroy,
      hoplite_node_rank,
      hoplite_node_world_size,
      hoplite_put,
      hoplite_create,
      hoplite_writer_data,
      hoplite_writer_size,
      hoplite_writer_publish,
      hoplite_writer_seal,
      hoplite_writer_destroy,
      hoplite_get,
      hoplite_view_data,
      hoplite_view_size,
      hoplite_view_release,
      hoplite_get_async,
      hoplite_future_ready,
      hoplite_future_wait,
      hoplite_future_release,
      hoplite_remove,
      hoplite_contains,
      hoplite_reduce_options_init,
      hoplite_reduce,
      hoplite_allreduce,
      hoplite_reduce_to,
      hoplite_broadcast,
      hoplite_gather,
      hoplite_allgather,
      hoplite_barrier,
      hoplite_failed_ranks,
      hoplite_membership_epoch,
      hoplite_on_membership_change,
      hoplite_node_stats,
      hoplite_scatter,
      hoplite_alltoallv,
  };
  return &table;
}

}  // extern "C"
