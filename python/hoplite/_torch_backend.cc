// ProcessGroupHoplite: torch.distributed's "hoplite" backend (torch 1.13).
//
// The one place that sees torch's headers, which are C++17 code: this file
// is built with -std=c++17 and reaches hoplite only through its C ABI
// (hoplite/hoplite.h), so the C++20 core and torch's headers never meet.
//
// Each group owns one hoplite node, bootstrapped through the group's c10d
// Store: rank 0 picks a free port and publishes "host:port" and a fresh
// cluster token there (unless HOPLITE_TOKEN is set), the others read them.
// Collectives run in order on one worker thread per group, as torch
// requires of a backend; each returns a Work at once whose wait() honours
// its timeout, and whose future DistributedDataParallel chains on.
// Point-to-point sends are puts (done once the directory knows the
// object); each recv waits on its own thread, so a recv never blocks a
// send queued after it. When a member dies, every outstanding and later
// Work of the group fails with the reason, instead of waiting.
//
// Ownership: torch holds the group (an intrusive_ptr); the group owns the
// node, its worker thread and the Works in its queue. Thread-binding: ops
// may be called from any thread (torch calls them from the user's).
#include <torch/csrc/utils/pybind.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pybind11/chrono.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "hoplite/hoplite.h"

namespace {

using Ms = std::chrono::milliseconds;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("hoplite: " + what);
}

void check(hoplite_status_t st, const std::string& what) {
  if (st != HOPLITE_OK) fail(what + ": " + hoplite_last_error());
}

// A port nobody listens on now (racy, as any launcher's free port is).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    fail("cannot find a free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

hoplite_dtype_t reduce_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return HOPLITE_FLOAT32;
    case at::kDouble: return HOPLITE_FLOAT64;
    case at::kInt: return HOPLITE_INT32;
    case at::kLong: return HOPLITE_INT64;
    case at::kBFloat16: return HOPLITE_BFLOAT16;
    case at::kHalf: return HOPLITE_FLOAT16;
    default: fail(std::string("no reduce kernel for ") + c10::toString(t.scalar_type()));
  }
}

// AVG is a SUM divided afterwards.
hoplite_reduce_op_t reduce_op(const c10d::ReduceOp& op, bool& average) {
  average = false;
  switch (op.op_) {
    case c10d::ReduceOp::SUM: return HOPLITE_OP_SUM;
    case c10d::ReduceOp::AVG: average = true; return HOPLITE_OP_SUM;
    case c10d::ReduceOp::PRODUCT: return HOPLITE_OP_PROD;
    case c10d::ReduceOp::MIN: return HOPLITE_OP_MIN;
    case c10d::ReduceOp::MAX: return HOPLITE_OP_MAX;
    default: fail("unsupported reduce op " + std::to_string(static_cast<int>(op.op_)));
  }
}

void check_cpu(const at::Tensor& t) {
  if (!t.device().is_cpu()) fail("only CPU tensors are supported");
  if (t.is_sparse()) fail("sparse tensors are not supported");
}

const at::Tensor& single(const std::vector<at::Tensor>& ts, const char* op) {
  if (ts.size() != 1)
    fail(std::string(op) + ": one tensor per process (got " + std::to_string(ts.size()) + ")");
  check_cpu(ts[0]);
  return ts[0];
}

std::uint64_t nbytes(const at::Tensor& t) {
  return static_cast<std::uint64_t>(t.numel()) * t.element_size();
}

// The one list of world_size tensors a gather, scatter or reduce_scatter
// takes, checked.
std::vector<at::Tensor> world_list(const std::vector<std::vector<at::Tensor>>& lists, int world,
                                   const char* what) {
  if (lists.size() != 1 || static_cast<int>(lists[0].size()) != world)
    fail(std::string(what) + ": one list of world_size tensors");
  for (const auto& t : lists[0]) check_cpu(t);
  return lists[0];
}

class HopliteWork : public c10d::Work {
 public:
  HopliteWork(int rank, c10d::OpType type, std::vector<at::Tensor> outputs)
      : Work(rank, type),
        outputs_(std::move(outputs)),
        future_(c10::make_intrusive<at::ivalue::Future>(c10::ListType::create(c10::TensorType::get()))) {}

  bool isCompleted() override {
    std::lock_guard lock(mu_);
    return done_;
  }
  bool isSuccess() const override {
    std::lock_guard lock(mu_);
    return done_ && !error_;
  }
  std::exception_ptr exception() const override {
    std::lock_guard lock(mu_);
    return error_;
  }
  std::vector<at::Tensor> result() override { return outputs_; }
  void synchronize() override {}
  bool wait(Ms timeout) override {
    std::unique_lock lock(mu_);
    if (timeout == ::kNoTimeout) {
      cv_.wait(lock, [&] { return done_; });
    } else if (!cv_.wait_for(lock, timeout, [&] { return done_; })) {
      fail("operation not complete after " + std::to_string(timeout.count()) + " ms");
    }
    if (error_) std::rethrow_exception(error_);
    return true;
  }
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override { return future_; }

  // The first call wins (the worker and a member's death may race).
  void finish(std::exception_ptr e) {
    {
      std::lock_guard lock(mu_);
      if (done_) return;
      done_ = true;
      error_ = e;
    }
    cv_.notify_all();
    if (e) {
      future_->setError(e);
    } else {
      future_->markCompleted(c10::IValue(outputs_));
    }
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
  std::vector<at::Tensor> outputs_;
  c10::intrusive_ptr<at::ivalue::Future> future_;
};

class ProcessGroupHoplite : public c10d::ProcessGroup {
 public:
  ProcessGroupHoplite(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, Ms timeout)
      : ProcessGroup(rank, size), timeout_(timeout) {
    std::string address, token = env_or("HOPLITE_TOKEN", "");
    if (rank == 0) {
      address = env_or("MASTER_ADDR", "127.0.0.1") + ":" + std::to_string(free_port());
      if (token.empty()) {
        char hex[41];
        hoplite_object_id_hex(hoplite_object_id_random(), hex);
        token = hex;
      }
      store->set("hoplite/bootstrap", std::vector<uint8_t>(address.begin(), address.end()));
      store->set("hoplite/token", std::vector<uint8_t>(token.begin(), token.end()));
    } else {
      auto a = store->get("hoplite/bootstrap");
      auto t = store->get("hoplite/token");
      address.assign(a.begin(), a.end());
      token.assign(t.begin(), t.end());
    }
    hoplite_node_options_t o;
    hoplite_node_options_init(&o);
    o.rank = rank;
    o.world_size = size;
    o.bootstrap_address = address.c_str();
    const std::string transport = env_or("HOPLITE_TRANSPORT", "auto");
    o.transport = transport.c_str();
    o.token = token.c_str();
    if (const char* cap = std::getenv("HOPLITE_STORE_CAPACITY"))
      o.store_capacity = std::strtoull(cap, nullptr, 10);
    check(hoplite_node_create(&o, &node_), "joining the group");
    check(hoplite_on_membership_change(node_, &ProcessGroupHoplite::on_change, this), "membership callback");
    worker_ = std::thread([this] { run(); });
  }

  ~ProcessGroupHoplite() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (broken_) {
      // The worker may be inside a call that waits for the dead member
      // until its timeout: leave it, and the node it uses, to the process's
      // exit rather than hang here.
      worker_.detach();
      return;
    }
    worker_.join();
    // Leave together: a member that closes while others still talk to it
    // would be reported to them as failed.
    (void)hoplite_barrier(node_, 5000);
    hoplite_node_destroy(node_);
  }

  const std::string getBackendName() const override { return "hoplite"; }

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                           const c10d::BroadcastOptions& opts) override {
    at::Tensor t = single(tensors, "broadcast");
    const int root = static_cast<int>(opts.rootRank);
    return enqueue(c10d::OpType::BROADCAST, {t}, [this, t, root] {
      in_contiguous(t, [&](at::Tensor& c) {
        check(hoplite_broadcast(node_, c.data_ptr(), nbytes(c), root, ms()), "broadcast");
      });
    });
  }

  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                           const c10d::AllreduceOptions& opts) override {
    at::Tensor t = single(tensors, "allreduce");
    bool avg;
    const hoplite_reduce_op_t op = reduce_op(opts.reduceOp, avg);
    const hoplite_dtype_t dt = reduce_dtype(t);
    return enqueue(c10d::OpType::ALLREDUCE, {t}, [this, t, op, dt, avg] {
      in_contiguous(t, [&](at::Tensor& c) {
        check(hoplite_allreduce(node_, c.data_ptr(), c.data_ptr(), c.numel(), dt, op, ms()), "allreduce");
        if (avg) c.div_(getSize());
      });
    });
  }

  c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor>& tensors,
                                        const c10d::ReduceOptions& opts) override {
    at::Tensor t = single(tensors, "reduce");
    bool avg;
    const hoplite_reduce_op_t op = reduce_op(opts.reduceOp, avg);
    const hoplite_dtype_t dt = reduce_dtype(t);
    const int root = static_cast<int>(opts.rootRank);
    return enqueue(c10d::OpType::REDUCE, {t}, [this, t, op, dt, avg, root] {
      in_contiguous(t, [&](at::Tensor& c) {
        check(hoplite_reduce_to(node_, c.data_ptr(), c.data_ptr(), c.numel(), dt, op, root, ms()), "reduce");
        if (avg && getRank() == root) c.div_(getSize());
      });
    });
  }

  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                           std::vector<at::Tensor>& inputs,
                                           const c10d::AllgatherOptions&) override {
    at::Tensor in = single(inputs, "allgather");
    std::vector<at::Tensor> outs = world_list(outputs, getSize(), "allgather");
    return enqueue(c10d::OpType::ALLGATHER, outs, [this, in, outs] {
      at::Tensor src = in.contiguous();
      at::Tensor all = at::empty({getSize(), src.numel()}, src.options());
      check(hoplite_allgather(node_, src.data_ptr(), nbytes(src), all.data_ptr(), ms()), "allgather");
      for (int r = 0; r < getSize(); ++r) outs[r].copy_(all[r].view(outs[r].sizes()));
    });
  }

  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                 const c10d::AllgatherOptions&) override {
    check_cpu(input);
    check_cpu(output);
    if (output.numel() != input.numel() * getSize()) fail("_allgather_base: output is not world_size inputs");
    at::Tensor in = input, out = output;
    return enqueue(c10d::OpType::_ALLGATHER_BASE, {out}, [this, in, out] {
      at::Tensor src = in.contiguous();
      in_contiguous(out, [&](at::Tensor& c) {
        check(hoplite_allgather(node_, src.data_ptr(), nbytes(src), c.data_ptr(), ms()), "allgather");
      });
    });
  }

  c10::intrusive_ptr<c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs,
                                        std::vector<at::Tensor>& inputs,
                                        const c10d::GatherOptions& opts) override {
    at::Tensor in = single(inputs, "gather");
    const int root = static_cast<int>(opts.rootRank);
    std::vector<at::Tensor> outs;
    if (getRank() == root) outs = world_list(outputs, getSize(), "gather");
    return enqueue(c10d::OpType::GATHER, outs, [this, in, outs, root] {
      at::Tensor src = in.contiguous();
      const bool mine = getRank() == root;
      at::Tensor all = at::empty({mine ? getSize() : 0, src.numel()}, src.options());
      check(hoplite_gather(node_, src.data_ptr(), nbytes(src), mine ? all.data_ptr() : nullptr, root, ms()),
            "gather");
      for (int r = 0; mine && r < getSize(); ++r) outs[r].copy_(all[r].view(outs[r].sizes()));
    });
  }

  c10::intrusive_ptr<c10d::Work> scatter(std::vector<at::Tensor>& outputs,
                                         std::vector<std::vector<at::Tensor>>& inputs,
                                         const c10d::ScatterOptions& opts) override {
    at::Tensor out = single(outputs, "scatter");
    const int root = static_cast<int>(opts.rootRank);
    std::vector<at::Tensor> ins;
    if (getRank() == root) ins = world_list(inputs, getSize(), "scatter");
    return enqueue(c10d::OpType::SCATTER, {out}, [this, out, ins, root] {
      std::vector<at::Tensor> flat;
      for (const auto& t : ins) flat.push_back(t.reshape({-1}));
      at::Tensor all = flat.empty() ? at::empty({0}, out.options()) : at::cat(flat);
      in_contiguous(out, [&](at::Tensor& c) {
        check(hoplite_scatter(node_, all.data_ptr(), c.data_ptr(), nbytes(c), root, ms()), "scatter");
      });
    });
  }

  c10::intrusive_ptr<c10d::Work> reduce_scatter(std::vector<at::Tensor>& outputs,
                                                std::vector<std::vector<at::Tensor>>& inputs,
                                                const c10d::ReduceScatterOptions& opts) override {
    at::Tensor out = single(outputs, "reduce_scatter");
    std::vector<at::Tensor> ins = world_list(inputs, getSize(), "reduce_scatter");
    bool avg;
    const hoplite_reduce_op_t op = reduce_op(opts.reduceOp, avg);
    const hoplite_dtype_t dt = reduce_dtype(out);
    return enqueue(c10d::OpType::REDUCE_SCATTER, {out}, [this, out, ins, op, dt, avg] {
      std::vector<at::Tensor> flat;
      for (const auto& t : ins) flat.push_back(t.reshape({-1}));
      reduce_scatter_flat(at::cat(flat), out, op, dt, avg);
    });
  }

  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                      const c10d::ReduceScatterOptions& opts) override {
    check_cpu(input);
    check_cpu(output);
    if (input.numel() != output.numel() * getSize())
      fail("_reduce_scatter_base: input is not world_size outputs");
    bool avg;
    const hoplite_reduce_op_t op = reduce_op(opts.reduceOp, avg);
    const hoplite_dtype_t dt = reduce_dtype(output);
    at::Tensor in = input, out = output;
    return enqueue(c10d::OpType::_REDUCE_SCATTER_BASE, {out},
                   [this, in, out, op, dt, avg] { reduce_scatter_flat(in.reshape({-1}), out, op, dt, avg); });
  }

  c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input,
                                               std::vector<int64_t>& out_splits,
                                               std::vector<int64_t>& in_splits,
                                               const c10d::AllToAllOptions&) override {
    check_cpu(input);
    check_cpu(output);
    const int n = getSize();
    auto rows = [n](const at::Tensor& t, std::vector<int64_t> s) {
      if (s.empty()) {
        if (t.size(0) % n != 0) fail("alltoall_base: dimension 0 does not split evenly");
        s.assign(n, t.size(0) / n);
      }
      if (static_cast<int>(s.size()) != n) fail("alltoall_base: world_size split sizes");
      return s;
    };
    const auto is = rows(input, in_splits), os = rows(output, out_splits);
    std::vector<at::Tensor> ins = input.split_with_sizes(is), outs = output.split_with_sizes(os);
    return enqueue(c10d::OpType::ALLTOALL_BASE, {output}, [this, ins, outs] { exchange(ins, outs); });
  }

  c10::intrusive_ptr<c10d::Work> alltoall(std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
                                          const c10d::AllToAllOptions&) override {
    if (static_cast<int>(inputs.size()) != getSize() || static_cast<int>(outputs.size()) != getSize())
      fail("alltoall: world_size inputs and outputs");
    for (const auto& t : inputs) check_cpu(t);
    std::vector<at::Tensor> ins = inputs, outs = outputs;
    return enqueue(c10d::OpType::ALLTOALL, outs, [this, ins, outs] { exchange(ins, outs); });
  }

  c10::intrusive_ptr<c10d::Work> send(std::vector<at::Tensor>& tensors, int dst, int tag) override {
    at::Tensor t = single(tensors, "send").contiguous();
    auto work = c10::make_intrusive<HopliteWork>(getRank(), c10d::OpType::SEND, std::vector<at::Tensor>{t});
    try {
      if (broken_) fail(broken_reason());
      check(hoplite_put(node_, p2p_id(getRank(), dst, tag), t.data_ptr(), nbytes(t)), "send");
      work->finish(nullptr);
    } catch (...) {
      work->finish(std::current_exception());
    }
    return work;
  }

  c10::intrusive_ptr<c10d::Work> recv(std::vector<at::Tensor>& tensors, int src, int tag) override {
    at::Tensor t = single(tensors, "recv");
    auto work = c10::make_intrusive<HopliteWork>(getRank(), c10d::OpType::RECV, std::vector<at::Tensor>{t});
    const hoplite_object_id_t oid = p2p_id(src, getRank(), tag);
    track(work);
    // The thread holds the group, which may otherwise go first.
    auto self = c10::intrusive_ptr<ProcessGroupHoplite>::unsafe_reclaim_from_nonowning(this);
    std::thread([this, self, work, t, oid]() mutable {
      try {
        fetch_into(oid, t, "recv");
        check(hoplite_remove(node_, oid, HOPLITE_REMOVE_GLOBAL), "recv");
        work->finish(nullptr);
      } catch (...) {
        work->finish(std::current_exception());
      }
    }).detach();
    return work;
  }

  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions&) override {
    return enqueue(c10d::OpType::BARRIER, {}, [this] { check(hoplite_barrier(node_, ms()), "barrier"); });
  }

 private:
  struct Job {
    c10::intrusive_ptr<HopliteWork> work;
    std::function<void()> run;
  };

  int64_t ms() const { return timeout_.count(); }

  std::string broken_reason() {
    std::lock_guard lock(mu_);
    return reason_;
  }

  c10::intrusive_ptr<c10d::Work> enqueue(c10d::OpType type, std::vector<at::Tensor> outputs,
                                         std::function<void()> run) {
    auto work = c10::make_intrusive<HopliteWork>(getRank(), type, std::move(outputs));
    {
      std::lock_guard lock(mu_);
      if (broken_) {
        work->finish(std::make_exception_ptr(std::runtime_error("hoplite: " + reason_)));
        return work;
      }
      queue_.push_back({work, std::move(run)});
      pending_.push_back(work);
    }
    cv_.notify_all();
    return work;
  }

  void track(const c10::intrusive_ptr<HopliteWork>& w) {
    std::lock_guard lock(mu_);
    pending_.push_back(w);
  }

  void run() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      try {
        if (broken_) fail(broken_reason());
        job.run();
        job.work->finish(nullptr);
      } catch (...) {
        job.work->finish(std::current_exception());
      }
      std::lock_guard lock(mu_);
      pending_.erase(
          std::remove_if(pending_.begin(), pending_.end(), [](const auto& w) { return w->isCompleted(); }),
          pending_.end());
    }
  }

  // A member died: nothing of this group can complete any more.
  static void on_change(const hoplite_membership_event_t* e, void* self) {
    if (e->alive) return;
    auto* pg = static_cast<ProcessGroupHoplite*>(self);
    std::vector<c10::intrusive_ptr<HopliteWork>> fail_now;
    {
      std::lock_guard lock(pg->mu_);
      pg->broken_ = true;
      pg->reason_ = "rank " + std::to_string(e->rank) + " of the group failed (" + e->reason + ")";
      fail_now.swap(pg->pending_);
    }
    const std::string why = "hoplite: " + pg->broken_reason();
    for (auto& w : fail_now) w->finish(std::make_exception_ptr(std::runtime_error(why)));
  }

  // Runs `f` on a contiguous version of `t`, copying back if it had to copy.
  template <typename F>
  void in_contiguous(const at::Tensor& t, F&& f) {
    at::Tensor c = t.contiguous();
    f(c);
    if (!c.is_same(t)) t.copy_(c);
  }

  hoplite_object_id_t p2p_id(int from, int to, int tag) {
    std::lock_guard lock(mu_);
    const std::uint64_t seq = p2p_seq_[{from, to, tag}]++;
    const std::string name = group_ + "/p2p/" + std::to_string(from) + "/" + std::to_string(to) + "/" +
                             std::to_string(tag) + "/" + std::to_string(seq);
    return hoplite_object_id_from_name(name.c_str());
  }

  // Gets `oid` and copies it into `t` (sizes must agree).
  void fetch_into(const hoplite_object_id_t& oid, const at::Tensor& t, const char* what) {
    hoplite_view_t* v = nullptr;
    check(hoplite_get(node_, oid, ms(), 0, &v), what);
    const std::uint64_t size = hoplite_view_size(v);
    if (size != nbytes(t)) {
      hoplite_view_release(v);
      fail(std::string(what) + ": received " + std::to_string(size) + " bytes for a tensor of " +
           std::to_string(nbytes(t)));
    }
    in_contiguous(t, [&](at::Tensor& c) { std::memcpy(c.data_ptr(), hoplite_view_data(v), size); });
    hoplite_view_release(v);
  }

  // ins[d] goes to rank d; outs[s] comes from rank s (hoplite_alltoallv:
  // all runs in flight at once).
  void exchange(const std::vector<at::Tensor>& ins, const std::vector<at::Tensor>& outs) {
    std::vector<uint64_t> in_counts, out_counts;
    std::vector<at::Tensor> flat;
    for (const auto& t : ins) {
      in_counts.push_back(nbytes(t));
      flat.push_back(t.reshape({-1}).view(at::kByte));
    }
    for (const auto& t : outs) out_counts.push_back(nbytes(t));
    at::Tensor send = at::cat(flat);
    at::Tensor recv =
        at::empty({static_cast<int64_t>(std::accumulate(out_counts.begin(), out_counts.end(), uint64_t{0}))},
                  send.options());
    check(
        hoplite_alltoallv(node_, send.data_ptr(), in_counts.data(), recv.data_ptr(), out_counts.data(), ms()),
        "alltoall");
    int64_t at = 0;
    for (std::size_t s = 0; s < outs.size(); ++s) {
      const auto c = static_cast<int64_t>(out_counts[s]);
      outs[s].copy_(recv.narrow(0, at, c).view(outs[s].scalar_type()).view(outs[s].sizes()));
      at += c;
    }
  }

  void reduce_scatter_flat(const at::Tensor& in, const at::Tensor& out, hoplite_reduce_op_t op,
                           hoplite_dtype_t dt, bool avg) {
    at::Tensor all = in.contiguous().clone();
    check(hoplite_allreduce(node_, all.data_ptr(), all.data_ptr(), all.numel(), dt, op, ms()),
          "reduce_scatter");
    at::Tensor mine = all.narrow(0, getRank() * out.numel(), out.numel());
    if (avg) mine.div_(getSize());
    out.copy_(mine.view(out.sizes()));
  }

  Ms timeout_;
  hoplite_node_t* node_ = nullptr;
  const std::string group_ = "torch";
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::vector<c10::intrusive_ptr<HopliteWork>> pending_;
  std::map<std::tuple<int, int, int>, std::uint64_t> p2p_seq_;
  bool stop_ = false;
  std::atomic<bool> broken_{false};
  std::string reason_;
  std::thread worker_;
};

}  // namespace

PYBIND11_MODULE(_torch_backend, m) {
  m.doc() = "torch.distributed backend 'hoplite' (import hoplite.torch to register it)";
  // Registers c10d::ProcessGroup with pybind11 (shared with torch's own
  // extension), so this class can derive from it.
  py::module_::import("torch.distributed");
  py::class_<ProcessGroupHoplite, c10::intrusive_ptr<ProcessGroupHoplite>, c10d::ProcessGroup>(
      m, "ProcessGroupHoplite")
      .def(py::init<const c10::intrusive_ptr<c10d::Store>&, int, int, Ms>(), py::arg("store"),
           py::arg("rank"), py::arg("size"), py::arg("timeout"), py::call_guard<py::gil_scoped_release>());
}
