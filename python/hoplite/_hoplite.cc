// _hoplite: the Python binding of the C++ API (pybind11). python/hoplite/
// __init__.py is the module users import; it adds dtype handling and the
// exception classes' names.
//
// Ownership: a Node is shared by the Python objects made from it (views,
// futures, writers), so a view can outlive Node.close() and still pin its
// memory; the C++ node goes when the last of them does, with the GIL
// released (its threads may be waiting for it). Python callbacks are held
// by the Node object and dropped, under the GIL, at close().
// Threads: every call that waits releases the GIL first.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <mutex>

#include "hoplite/collectives.h"
#include "hoplite/node.h"

namespace py = pybind11;
using namespace hoplite;

namespace {

// Exception classes by StatusCode, created in the module init.
py::object g_errors[static_cast<int>(StatusCode::kInternal) + 1];

[[noreturn]] void raise(const Status& st) {
  py::object cls = g_errors[static_cast<int>(st.code())];
  PyErr_SetString(cls.ptr(), st.to_string().c_str());
  throw py::error_already_set();
}

void check(const Status& st) {
  if (!st.is_ok()) raise(st);
}

template <typename T>
T value_or_raise(Result<T> r) {
  if (!r.is_ok()) raise(r.status());
  return std::move(r).value();
}

// Destroys a node without the GIL: its progress and callback threads may be
// waiting for it.
struct ReleaseGilDelete {
  void operator()(Node* n) const {
    if (PyGILState_Check()) {
      py::gil_scoped_release nogil;
      delete n;
    } else {
      delete n;
    }
  }
};

ObjectID to_id(const py::handle& h) {
  if (py::isinstance<py::str>(h)) return ObjectID::from_name(h.cast<std::string>());
  return h.cast<ObjectID>();
}

std::chrono::milliseconds to_timeout(const py::object& seconds) {
  if (seconds.is_none()) return ObjectFuture::kForever;
  const double s = seconds.cast<double>();
  if (s < 0) throw py::value_error("timeout must not be negative");
  return std::chrono::milliseconds(static_cast<long long>(s * 1000.0));
}

std::chrono::milliseconds collective_timeout(const py::object& seconds) {
  return seconds.is_none() ? Collectives::kDefaultTimeout : to_timeout(seconds);
}

// A read-only, zero-copy view of an object; pins it (and its node).
struct PyView {
  ObjectView view;
  std::shared_ptr<Node> node;
};

struct PyFuture {
  ObjectFuture future;
  std::shared_ptr<Node> node;
};

struct PyWriter {
  ObjectWriter writer;
  std::shared_ptr<Node> node;
};

class PyNode {
 public:
  explicit PyNode(std::unique_ptr<Node> n)
      : node_(n.release(), ReleaseGilDelete{}), coll_(std::make_unique<Collectives>(*node_, "hoplite/py")) {}
  ~PyNode() { close(); }

  void close() {
    {
      std::lock_guard lock(cb_->mu);
      cb_->closed = true;
      cb_->fns.clear();  // the GIL is held here
    }
    coll_.reset();
    node_.reset();
  }

  Node& node() const {
    if (!node_) throw py::value_error("the node is closed");
    return *node_;
  }
  const std::shared_ptr<Node>& shared() const {
    node();
    return node_;
  }
  Collectives& collectives() {
    node();
    return *coll_;
  }

  void on_membership_change(py::function fn) {
    Node& n = node();
    bool first;
    {
      std::lock_guard lock(cb_->mu);
      first = cb_->fns.empty() && !cb_->registered;
      cb_->registered = true;
      cb_->fns.push_back(std::move(fn));
    }
    if (!first) return;
    n.on_membership_change([cb = cb_](const MembershipEvent& e) {
      py::gil_scoped_acquire gil;
      std::vector<py::function> fns;
      {
        std::lock_guard lock(cb->mu);
        if (cb->closed) return;
        fns = cb->fns;
      }
      for (auto& f : fns) {
        try {
          f(e.rank, e.alive, e.epoch, e.reason);
        } catch (py::error_already_set& err) {
          err.discard_as_unraisable("hoplite membership callback");
        }
      }
    });
  }

 private:
  struct Callbacks {
    std::mutex mu;
    bool closed = false;
    bool registered = false;
    std::vector<py::function> fns;
  };
  std::shared_ptr<Node> node_;
  std::unique_ptr<Collectives> coll_;
  std::shared_ptr<Callbacks> cb_ = std::make_shared<Callbacks>();
};

std::unique_ptr<PyNode> make_node(const NodeOptions& o) {
  Result<std::unique_ptr<Node>> n = Status(StatusCode::kInternal, "unset");
  {
    py::gil_scoped_release nogil;
    n = Node::create(o);
  }
  return std::make_unique<PyNode>(value_or_raise(std::move(n)));
}

py::buffer_info read_only(const py::buffer& b) {
  return b.request(false);
}

py::buffer_info writable(const py::buffer& b) {
  py::buffer_info info = b.request(true);
  if (info.readonly) throw py::value_error("the output buffer is read-only");
  return info;
}

std::size_t byte_size(const py::buffer_info& info) {
  return static_cast<std::size_t>(info.size) * static_cast<std::size_t>(info.itemsize);
}

// Collectives need contiguous memory: a strided array would be read as if
// it were dense.
void require_contiguous(const py::buffer_info& info, const char* what) {
  py::ssize_t expect = info.itemsize;
  for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] > 1 && info.strides[d] != expect)
      throw py::value_error(std::string(what) + " must be C-contiguous");
    expect *= info.shape[d];
  }
}

std::span<const std::byte> in_span(const py::buffer_info& info) {
  return {static_cast<const std::byte*>(info.ptr), byte_size(info)};
}
std::span<std::byte> out_span(const py::buffer_info& info) {
  return {static_cast<std::byte*>(info.ptr), byte_size(info)};
}

// A collective from `in` into `out`: both checked and held, the call made
// without the GIL.
template <typename F>
void run_collective(const py::buffer& in, const py::buffer& out, F&& f) {
  py::buffer_info i = read_only(in), o = writable(out);
  require_contiguous(i, "input");
  require_contiguous(o, "output");
  Status st;
  {
    py::gil_scoped_release nogil;
    st = f(in_span(i), out_span(o));
  }
  check(st);
}

}  // namespace

PYBIND11_MODULE(_hoplite, m) {
  m.doc() = "Hoplite: dynamic, fault-tolerant collective communication (C++ core)";

  // Exceptions by group: one base class, one subclass per StatusCode.
  py::object base = py::reinterpret_steal<py::object>(
      PyErr_NewException("hoplite.HopliteError", PyExc_RuntimeError, nullptr));
  m.attr("HopliteError") = base;
  struct Spec {
    StatusCode code;
    const char* name;
    PyObject* also;
  };
  const Spec specs[] = {
      {StatusCode::kInvalidArgument, "InvalidArgumentError", PyExc_ValueError},
      {StatusCode::kNotFound, "NotFoundError", PyExc_KeyError},
      {StatusCode::kAlreadyExists, "AlreadyExistsError", nullptr},
      {StatusCode::kTimeout, "TimeoutError", PyExc_TimeoutError},
      {StatusCode::kCapacity, "CapacityError", PyExc_MemoryError},
      {StatusCode::kPeerFailure, "PeerFailureError", PyExc_ConnectionError},
      {StatusCode::kProtocol, "ProtocolError", nullptr},
      {StatusCode::kCancelled, "CancelledError", nullptr},
      {StatusCode::kInternal, "InternalError", nullptr},
  };
  for (const auto& s : specs) {
    py::tuple bases = s.also ? py::make_tuple(base, py::handle(s.also)) : py::make_tuple(base);
    py::object cls = py::reinterpret_steal<py::object>(
        PyErr_NewException((std::string("hoplite.") + s.name).c_str(), bases.ptr(), nullptr));
    m.attr(s.name) = cls;
    g_errors[static_cast<int>(s.code)] = cls;
  }
  g_errors[0] = base;

  py::class_<ObjectID>(m, "ObjectID")
      .def_static("from_name", &ObjectID::from_name, py::arg("name"))
      .def_static("random", &ObjectID::random)
      .def_static("from_hex", [](const std::string& h) { return value_or_raise(ObjectID::from_hex(h)); })
      .def_property_readonly("hex", &ObjectID::hex)
      .def("__bytes__",
           [](const ObjectID& id) {
             return py::bytes(reinterpret_cast<const char*>(id.data()), ObjectID::kSize);
           })
      .def("__eq__", [](const ObjectID& a, const ObjectID& b) { return a == b; })
      .def("__hash__", [](const ObjectID& id) { return std::hash<ObjectID>{}(id); })
      .def("__repr__", [](const ObjectID& id) { return "ObjectID('" + id.hex() + "')"; });

  py::class_<PyView>(m, "ObjectView", py::buffer_protocol())
      .def_buffer([](PyView& v) {
        return py::buffer_info(const_cast<std::byte*>(v.view.data()), 1, "B", 1,
                               {static_cast<py::ssize_t>(v.view.size())}, {1}, /*readonly=*/true);
      })
      .def_property_readonly("id", [](const PyView& v) { return v.view.id(); })
      .def_property_readonly("source", [](const PyView& v) { return v.view.source(); })
      .def("__len__", [](const PyView& v) { return v.view.size(); })
      .def("tobytes", [](const PyView& v) {
        return py::bytes(reinterpret_cast<const char*>(v.view.data()), v.view.size());
      });

  py::class_<PyFuture>(m, "ObjectFuture")
      .def("done", [](const PyFuture& f) { return f.future.ready(); })
      .def(
          "result",
          [](const PyFuture& f, const py::object& timeout) {
            const auto t = to_timeout(timeout);
            Result<ObjectView> r = Status(StatusCode::kInternal, "unset");
            {
              py::gil_scoped_release nogil;
              r = f.future.wait(t);
            }
            return PyView{value_or_raise(std::move(r)), f.node};
          },
          py::arg("timeout") = py::none());

  py::class_<PyWriter>(m, "ObjectWriter", py::buffer_protocol())
      .def_buffer([](PyWriter& w) {
        auto d = w.writer.data();
        return py::buffer_info(d.data(), 1, "B", 1, {static_cast<py::ssize_t>(d.size())}, {1}, false);
      })
      .def("publish",
           [](PyWriter& w, std::uint64_t bytes) {
             py::gil_scoped_release nogil;
             check(w.writer.publish(bytes));
           })
      .def("seal", [](PyWriter& w) {
        Status st;
        {
          py::gil_scoped_release nogil;
          st = w.writer.seal();
        }
        check(st);
      });

  py::class_<ReduceResult>(m, "ReduceResult")
      .def_readonly("used", &ReduceResult::used)
      .def_readonly("depth", &ReduceResult::depth)
      .def_readonly("striped", &ReduceResult::striped)
      .def_readonly("recomputed", &ReduceResult::recomputed)
      .def_readonly("restarts", &ReduceResult::restarts);

  py::class_<PyNode>(m, "Node")
      // No arguments: from the launcher's environment (hoplite.Node.from_env).
      .def(py::init([] {
        auto o = NodeOptions::from_environment();
        return make_node(value_or_raise(std::move(o)));
      }))
      .def(py::init([](int rank, int world_size, const std::string& bootstrap_address,
                       const std::string& listen_host, std::uint64_t store_capacity,
                       const std::string& transport, const std::string& token, bool insecure, bool rejoin,
                       double failure_timeout) {
             NodeOptions o;
             o.rank = rank;
             o.world_size = world_size;
             o.bootstrap_address = bootstrap_address;
             o.listen_host = listen_host;
             o.store_capacity = store_capacity;
             o.transport = transport;
             o.token = token;
             o.insecure = insecure;
             o.rejoin = rejoin;
             o.failure_timeout = std::chrono::milliseconds(static_cast<long long>(failure_timeout * 1000));
             return make_node(o);
           }),
           py::kw_only(), py::arg("rank"), py::arg("world_size"), py::arg("bootstrap_address"),
           py::arg("listen_host") = "", py::arg("store_capacity") = NodeOptions{}.store_capacity,
           py::arg("transport") = "auto", py::arg("token") = "", py::arg("insecure") = false,
           py::arg("rejoin") = false, py::arg("failure_timeout") = 0.8)
      .def("close", &PyNode::close)
      .def_property_readonly("rank", [](const PyNode& n) { return n.node().rank(); })
      .def_property_readonly("world_size", [](const PyNode& n) { return n.node().world_size(); })
      .def_property_readonly("transport", [](const PyNode& n) { return n.node().transport_name(); })
      .def(
          "put",
          [](PyNode& n, const py::object& id, const py::buffer& data) {
            py::buffer_info info = read_only(data);
            require_contiguous(info, "data");
            Status st;
            {
              py::gil_scoped_release nogil;
              st = n.node().put(to_id(id), info.ptr, byte_size(info));
            }
            check(st);
          },
          py::arg("id"), py::arg("data"))
      .def(
          "create",
          [](PyNode& n, const py::object& id, std::uint64_t size) {
            return PyWriter{value_or_raise(n.node().create(to_id(id), size)), n.shared()};
          },
          py::arg("id"), py::arg("size"))
      .def(
          "get_async",
          [](PyNode& n, const py::object& id, bool must_exist) {
            GetOptions g;
            g.must_exist = must_exist;
            return PyFuture{n.node().get(to_id(id), g), n.shared()};
          },
          py::arg("id"), py::kw_only(), py::arg("must_exist") = false)
      .def(
          "get",
          [](PyNode& n, const py::object& id, const py::object& timeout, bool must_exist) {
            GetOptions g;
            g.must_exist = must_exist;
            const auto t = to_timeout(timeout);
            ObjectFuture f = n.node().get(to_id(id), g);
            Result<ObjectView> r = Status(StatusCode::kInternal, "unset");
            {
              py::gil_scoped_release nogil;
              r = f.wait(t);
            }
            return PyView{value_or_raise(std::move(r)), n.shared()};
          },
          py::arg("id"), py::arg("timeout") = py::none(), py::kw_only(), py::arg("must_exist") = false)
      .def(
          "remove",
          [](PyNode& n, const py::object& id, bool local) {
            Status st;
            const ObjectID oid = to_id(id);
            {
              py::gil_scoped_release nogil;
              st = n.node().remove(oid, local ? RemoveScope::kLocal : RemoveScope::kGlobal);
            }
            check(st);
          },
          py::arg("id"), py::kw_only(), py::arg("local") = false)
      .def("contains", [](const PyNode& n, const py::object& id) { return n.node().contains(to_id(id)); })
      .def("_reduce",
           [](PyNode& n, const std::vector<py::object>& inputs, const py::object& target,
              const std::string& op, const std::string& dtype, std::size_t k, const py::object& timeout,
              bool allow_stripes) {
             ReduceOptions o;
             for (const auto& i : inputs) o.inputs.push_back(to_id(i));
             o.target = to_id(target);
             o.op = value_or_raise(parse_reduce_op(op));
             o.dtype = value_or_raise(parse_data_type(dtype));
             o.k = k;
             o.timeout = collective_timeout(timeout);
             o.allow_stripes = allow_stripes;
             Result<ReduceResult> r = Status(StatusCode::kInternal, "unset");
             {
               py::gil_scoped_release nogil;
               r = n.node().reduce(o);
             }
             return value_or_raise(std::move(r));
           })
      .def("_allreduce",
           [](PyNode& n, const py::buffer& in, const py::buffer& out, const std::string& op,
              const std::string& dtype, const py::object& timeout) {
             const ReduceOp rop = value_or_raise(parse_reduce_op(op));
             const DataType dt = value_or_raise(parse_data_type(dtype));
             const auto t = collective_timeout(timeout);
             Collectives& c = n.collectives();
             run_collective(in, out, [&](auto i, auto o) { return c.allreduce(i, o, rop, dt, t); });
           })
      .def("_reduce_to",
           [](PyNode& n, const py::buffer& in, const py::buffer& out, int root, const std::string& op,
              const std::string& dtype, const py::object& timeout) {
             const ReduceOp rop = value_or_raise(parse_reduce_op(op));
             const DataType dt = value_or_raise(parse_data_type(dtype));
             const auto t = collective_timeout(timeout);
             Collectives& c = n.collectives();
             run_collective(in, out, [&](auto i, auto o) { return c.reduce(i, o, root, rop, dt, t); });
           })
      .def("_broadcast",
           [](PyNode& n, const py::buffer& buf, int root, const py::object& timeout) {
             py::buffer_info b = writable(buf);
             require_contiguous(b, "buffer");
             const auto t = collective_timeout(timeout);
             Status st;
             {
               py::gil_scoped_release nogil;
               st = n.collectives().broadcast(out_span(b), root, t);
             }
             check(st);
           })
      .def("_gather",
           [](PyNode& n, const py::buffer& in, const py::buffer& out, int root, bool all,
              const py::object& timeout) {
             const auto t = collective_timeout(timeout);
             Collectives& c = n.collectives();
             run_collective(in, out, [&](auto i, auto o) {
               return all ? c.allgather(i, o, t) : c.gather(i, o, root, t);
             });
           })
      .def(
          "barrier",
          [](PyNode& n, const py::object& timeout) {
            const auto t = collective_timeout(timeout);
            Status st;
            {
              py::gil_scoped_release nogil;
              st = n.collectives().barrier(t);
            }
            check(st);
          },
          py::arg("timeout") = py::none())
      .def("failed_ranks", [](const PyNode& n) { return n.node().failed_ranks(); })
      .def_property_readonly("membership_epoch", [](const PyNode& n) { return n.node().membership_epoch(); })
      .def("on_membership_change", &PyNode::on_membership_change, py::arg("callback"))
      .def("stats", [](const PyNode& n) {
        const NodeStats s = n.node().stats();
        py::dict d;
        d["objects"] = s.objects;
        d["store_used"] = s.store_used;
        d["store_capacity"] = s.store_capacity;
        d["bytes_received"] = s.bytes_received;
        d["bytes_served"] = s.bytes_served;
        d["rejected_connections"] = s.rejected_connections;
        d["protocol_errors"] = s.protocol_errors;
        d["refused_messages"] = s.refused_messages;
        d["reduce_tasks"] = s.reduce_tasks;
        return d;
      });
}
