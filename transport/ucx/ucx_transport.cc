#include "transport/ucx/ucx_transport.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <poll.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "common/hex.h"
#include "common/log.h"
#include "common/wire.h"
#include "transport/local_endpoint.h"
#include "transport/ucx/am_headers.h"

namespace hoplite::transport::ucx {

namespace asio = boost::asio;

namespace {

constexpr const char* kAddressPrefix = "ucx:";
constexpr unsigned kAmGet = 1;   // receiver -> holder: send me [offset, +length)
constexpr unsigned kAmData = 2;  // holder -> receiver: the bytes (or an error status)
// A pass progresses the worker at most this often before it yields to the
// other handlers of the io_context.
constexpr int kProgressPerPass = 256;
constexpr auto kPassBudget = std::chrono::microseconds(500);
// While gets are outstanding, a timer also passes now and then: cheap
// insurance against a missed wake-up, counted in the log if it ever helps.
constexpr auto kTick = std::chrono::milliseconds(20);
constexpr auto kRmaTick = std::chrono::milliseconds(1);

std::string ucs_text(ucs_status_t st) {
  return ucs_status_string(st);
}

Status ucx_error(const std::string& what, ucs_status_t st) {
  StatusCode code = StatusCode::kPeerFailure;
  if (st == UCS_ERR_CANCELED) code = StatusCode::kCancelled;
  if (st == UCS_ERR_NO_MEMORY || st == UCS_ERR_NO_RESOURCE) code = StatusCode::kCapacity;
  if (st == UCS_ERR_INVALID_PARAM) code = StatusCode::kInvalidArgument;
  return Status(code, what + ": " + ucs_text(st));
}

// What ucp_ep_print_info says about the endpoint's lanes: one "lane[i]:"
// line each, e.g. "lane[1]:  8:cma/memory.0 md[2] -> md[2]/cma/sysdev[255] rma_bw#0".
std::vector<std::string> lane_lines(ucp_ep_h ep) {
  char* buf = nullptr;
  std::size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (!f) return {};
  ucp_ep_print_info(ep, f);
  std::fclose(f);
  std::vector<std::string> lanes;
  std::istringstream in(std::string(buf, len));
  std::free(buf);
  for (std::string line; std::getline(in, line);) {
    auto at = line.find("lane[");
    if (at == std::string::npos) continue;
    line = line.substr(at);
    // Squeeze runs of blanks: the report aligns columns for a terminal.
    std::string squeezed;
    for (char c : line) {
      if (c == ' ' && !squeezed.empty() && squeezed.back() == ' ') continue;
      squeezed.push_back(c);
    }
    lanes.push_back(squeezed);
  }
  return lanes;
}

// Which kernel this process runs on: processes with the same boot id can
// reach each other through shared memory and cma (network namespaces share
// the kernel, /dev/shm and the pid space).
std::string host_identity() {
  std::string id;
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, f)) id = buf;
    std::fclose(f);
  }
  std::erase_if(id, [](char c) { return !std::isxdigit(static_cast<unsigned char>(c)); });
  return id.empty() ? "unknown" : id;
}

// Whether UCX_TLS lets UCX pick a shared-memory transport.
bool shared_memory_allowed() {
  const char* tls = std::getenv("UCX_TLS");
  if (!tls || !*tls) return true;
  std::string s(tls);
  if (s[0] == '^') return true;  // an exclusion list leaves something of sm in all but odd cases
  for (const char* t : {"all", "sm", "shm", "posix", "sysv", "cma", "xpmem", "knem"}) {
    std::size_t at = 0;
    while ((at = s.find(t, at)) != std::string::npos) {
      std::size_t end = at + std::strlen(t);
      bool starts = at == 0 || s[at - 1] == ',';
      bool ends = end == s.size() || s[end] == ',';
      if (starts && ends) return true;
      at = end;
    }
  }
  return false;
}

}  // namespace

// Waits, on a thread of its own, for the worker's event fd with poll():
// level-triggered, as UCX's wake-up protocol expects (arm, then sleep until
// the fd is readable). Asio's epoll reactor registers descriptors
// edge-triggered, and an edge that arrives while no wait is queued is lost;
// under load that left holders asleep with requests in their queues. The
// thread only watches: every UCX call stays on the progress thread.
class EventWaiter {
 public:
  EventWaiter(int fd, std::function<void()> wake) : fd_(fd), wake_(std::move(wake)) {
    if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) stop_pipe_[0] = stop_pipe_[1] = -1;
    t_ = std::thread([this] { run(); });
  }
  ~EventWaiter() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (stop_pipe_[1] >= 0) (void)!::write(stop_pipe_[1], "x", 1);
    t_.join();
    for (int fd : stop_pipe_) {
      if (fd >= 0) ::close(fd);
    }
  }
  // Progress thread, after ucp_worker_arm said UCS_OK.
  void arm() {
    {
      std::lock_guard<std::mutex> l(mu_);
      armed_ = true;
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return armed_ || stop_; });
        if (stop_) return;
      }
      pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      int n = ::poll(fds, stop_pipe_[0] >= 0 ? 2 : 1, -1);
      if (n < 0 && errno == EINTR) continue;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stop_) return;
        armed_ = false;
      }
      wake_();
    }
  }

  int fd_;
  std::function<void()> wake_;
  int stop_pipe_[2] = {-1, -1};
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool stop_ = false;
  std::thread t_;
};

Result<GetPath> parse_get_path(const std::string& s) {
  if (s.empty() || s == "auto") return GetPath::kAuto;
  if (s == "rma") return GetPath::kRma;
  if (s == "am") return GetPath::kAm;
  return invalid_argument("HOPLITE_UCX_GET must be auto, rma or am, not '" + s + "'");
}

// The UCX objects of one node, destroyed in reverse order of creation.
struct UcxTransport::Handles {
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  ucp_mem_h memh = nullptr;
  int efd = -1;

  ~Handles() {
    if (memh) ucp_mem_unmap(context, memh);
    if (worker) ucp_worker_destroy(worker);
    if (context) ucp_cleanup(context);
  }
};

// One request in flight inside UCX; freed by its callback.
struct UcxTransport::Op {
  enum Kind {
    kGet,      // rma get or rendezvous receive: its completion completes the get
    kRequest,  // an am get's request: only its failure says something
    kServe,    // our answer to a peer's am get
  };
  UcxTransport* t;
  Kind kind;
  std::uint64_t id;                  // the Pending it completes (kGet, kRequest)
  std::vector<std::uint8_t> header;  // an active message's header lives until the send completes
};

// The way to one peer: its endpoint, its unpacked rkey, and what is needed
// to create both again (a get after fail_peer).
class UcxTransport::Peer final : public Endpoint {
 public:
  Peer(UcxTransport& t, Rank rank, std::vector<std::uint8_t> address, std::vector<std::uint8_t> rkey,
       std::uint64_t remote_base, std::uint64_t remote_length)
      : t_(t),
        rank_(rank),
        address_(std::move(address)),
        packed_rkey_(std::move(rkey)),
        remote_base_(remote_base),
        remote_length_(remote_length) {}

  void get(const ObjectID& id, std::byte* local, std::uint64_t length, std::uint64_t remote_offset,
           Completion done) override {
    t_.start_get(*this, id, local, length, remote_offset, std::move(done));
  }
  std::size_t in_flight() const override { return in_flight_; }

  Status connect() {
    ucp_ep_params_t p{};
    p.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                   UCP_EP_PARAM_FIELD_ERR_HANDLER;
    p.address = reinterpret_cast<const ucp_address_t*>(address_.data());
    p.err_mode = peer_mode_ ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
    p.err_handler.cb = &Peer::on_error;
    p.err_handler.arg = &t_;
    ucs_status_t st = ucp_ep_create(t_.h_->worker, &p, &ep_);
    if (st != UCS_OK) {
      ep_ = nullptr;
      return ucx_error("ucx: endpoint to rank " + std::to_string(rank_), st);
    }
    st = ucp_ep_rkey_unpack(ep_, packed_rkey_.data(), &rkey_);
    if (st != UCS_OK) {
      rkey_ = nullptr;
      t_.close_endpoint(*this, true);
      return ucx_error("ucx: rank " + std::to_string(rank_) + "'s remote key", st);
    }
    lanes_ = lane_lines(ep_);
    // auto is am: with four ranks on this 2-core host, broadcast and
    // allreduce of 256 MiB ran 2.8x and 7.7x faster than over cma's rma
    // (docs/perf.md); rma wins only point to point.
    path_ = t_.opts_.path == GetPath::kRma ? GetPath::kRma : GetPath::kAm;
    // Over tcp, answers go eager: rendezvous adds a handshake per chunk and
    // was measured 9 % slower on the emulated cluster (docs/perf.md).
    eager_ = false;
    for (const auto& l : lanes_) {
      if (l.find("am_bw") != std::string::npos && l.find("tcp/") != std::string::npos) eager_ = true;
    }
    return {};
  }

  static void on_error(void* arg, ucp_ep_h ep, ucs_status_t status);

  UcxTransport& t_;
  Rank rank_;
  std::vector<std::uint8_t> address_;
  std::vector<std::uint8_t> packed_rkey_;
  std::uint64_t remote_base_;
  std::uint64_t remote_length_;
  ucp_ep_h ep_ = nullptr;
  ucp_rkey_h rkey_ = nullptr;
  std::vector<std::string> lanes_;
  GetPath path_ = GetPath::kAm;
  bool peer_mode_ = true;  // UCP_ERR_HANDLING_MODE_PEER
  bool eager_ = false;     // answer am gets with eager messages
  std::size_t in_flight_ = 0;
};

// The callbacks UCX calls from inside ucp_worker_progress. None of them
// posts or completes anything: they queue, and drain() acts once the
// worker has returned.
struct Callbacks {
  static void send_done(void* request, ucs_status_t status, void* user_data) {
    auto* op = static_cast<UcxTransport::Op*>(user_data);
    using Op = UcxTransport::Op;
    if (op->kind == Op::kGet || (op->kind == Op::kRequest && status != UCS_OK)) {
      op->t->done_.push_back({op->id, status == UCS_OK ? Status::ok() : ucx_error("ucx: get", status)});
    } else if (op->kind == Op::kServe && status != UCS_OK && status != UCS_ERR_CANCELED) {
      LOG_INFO("ucx: serving a get: " << ucs_text(status));
    }
    delete op;
    ucp_request_free(request);
  }
  static void recv_done(void* request, ucs_status_t status, std::size_t, void* user_data) {
    send_done(request, status, user_data);
  }
  static ucs_status_t am_get(void* arg, const void* header, std::size_t header_length, void*, std::size_t,
                             const ucp_am_recv_param_t*) {
    auto* t = static_cast<UcxTransport*>(arg);
    auto h = am::decode_get({static_cast<const std::uint8_t*>(header), header_length});
    if (!h.is_ok()) {
      LOG_WARN("dropping a get request: " << h.status().message());
      return UCS_OK;
    }
    t->serve_.push_back({h->requester, h->id, h->object, h->offset, h->length});
    return UCS_OK;
  }
  static ucs_status_t am_data(void* arg, const void* header, std::size_t header_length, void* data,
                              std::size_t length, const ucp_am_recv_param_t* param) {
    auto* t = static_cast<UcxTransport*>(arg);
    auto h = am::decode_data({static_cast<const std::uint8_t*>(header), header_length});
    if (!h.is_ok()) {
      LOG_WARN("dropping get data: " << h.status().message());
      return UCS_OK;
    }
    const std::uint64_t id = h->id;
    const std::uint16_t code = h->status;
    auto it = t->pending_.find(id);
    // A get already failed (its peer was declared dead): drop the bytes.
    if (it == t->pending_.end()) return UCS_OK;
    if (code != 0) {
      t->done_.push_back({id, Status(wire::status_code(code),
                                     "rank " + std::to_string(it->second.peer) + " rejected a get")});
      return UCS_OK;
    }
    if (length != it->second.length) {
      t->done_.push_back({id, protocol_error("ucx: get answered with " + std::to_string(length) +
                                             " bytes, not " + std::to_string(it->second.length))});
      return UCS_OK;
    }
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
      t->rndv_.push_back({id, data, length});
      return UCS_INPROGRESS;
    }
    std::memcpy(it->second.local, data, length);
    t->done_.push_back({id, Status::ok()});
    return UCS_OK;
  }
};

void UcxTransport::Peer::on_error(void* arg, ucp_ep_h ep, ucs_status_t status) {
  static_cast<UcxTransport*>(arg)->ep_errors_.push_back({ep, static_cast<int>(status)});
}

UcxTransport::UcxTransport(asio::io_context& io, UcxOptions opts) : io_(io), opts_(std::move(opts)) {}

Result<std::unique_ptr<UcxTransport>> UcxTransport::create(asio::io_context& io, UcxOptions opts) {
  std::unique_ptr<UcxTransport> t(new UcxTransport(io, std::move(opts)));
  HOPLITE_RETURN_IF_ERROR(t->init());
  return t;
}

Status UcxTransport::init() {
  h_ = std::make_unique<Handles>();
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);  // honours UCX_TLS, UCX_NET_DEVICES, ...
  if (st != UCS_OK) return ucx_error("ucx: reading the configuration", st);
  ucp_params_t p{};
  p.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  p.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  p.mt_workers_shared = 0;
  st = ucp_init(&p, config, &h_->context);
  ucp_config_release(config);
  if (st != UCS_OK) {
    h_->context = nullptr;
    return ucx_error("ucx: ucp_init", st);
  }
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  st = ucp_worker_create(h_->context, &wp, &h_->worker);
  if (st != UCS_OK) {
    h_->worker = nullptr;
    return ucx_error("ucx: ucp_worker_create", st);
  }
  ucp_address_t* addr = nullptr;
  std::size_t addr_len = 0;
  st = ucp_worker_get_address(h_->worker, &addr, &addr_len);
  if (st != UCS_OK) return ucx_error("ucx: worker address", st);
  host_ = host_identity();
  address_ = kAddressPrefix + host_ + ":" + to_hex({reinterpret_cast<const std::uint8_t*>(addr), addr_len});
  ucp_worker_release_address(h_->worker, addr);

  for (unsigned id : {kAmGet, kAmData}) {
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = id;
    hp.cb = id == kAmGet ? &Callbacks::am_get : &Callbacks::am_data;
    hp.arg = this;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    st = ucp_worker_set_am_recv_handler(h_->worker, &hp);
    if (st != UCS_OK) return ucx_error("ucx: active message handler", st);
  }

  st = ucp_worker_get_efd(h_->worker, &h_->efd);
  if (st != UCS_OK) return ucx_error("ucx: worker event fd", st);
  waiter_ = std::make_unique<EventWaiter>(h_->efd, [this] { asio::post(io_, [this] { pass(); }); });
  tick_ = std::make_unique<asio::steady_timer>(io_);
  post_pass();
  tick();
  return {};
}

UcxTransport::~UcxTransport() {
  shutdown();
}

Result<std::unique_ptr<MemoryRegion>> UcxTransport::register_memory(std::byte* base, std::uint64_t length) {
  if (h_->memh) return invalid_argument("ucx transport: one region per node");
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = base;
  mp.length = length;
  ucs_status_t st = ucp_mem_map(h_->context, &mp, &h_->memh);
  if (st != UCS_OK) {
    h_->memh = nullptr;
    return ucx_error("ucx: mapping the store arena (" + std::to_string(length) + " B)", st);
  }
  void* packed = nullptr;
  std::size_t packed_len = 0;
  st = ucp_rkey_pack(h_->context, h_->memh, &packed, &packed_len);
  if (st != UCS_OK) return ucx_error("ucx: packing the arena's rkey", st);
  auto key = am::encode_region_key(
      {reinterpret_cast<std::uint64_t>(base), length,
       std::vector<std::uint8_t>(static_cast<const std::uint8_t*>(packed),
                                 static_cast<const std::uint8_t*>(packed) + packed_len)});
  ucp_rkey_buffer_release(packed);
  region_base_ = base;
  region_length_ = length;

  class Region final : public MemoryRegion {
   public:
    Region(std::byte* b, std::uint64_t l, std::vector<std::uint8_t> k) : b_(b), l_(l), k_(std::move(k)) {}
    std::byte* base() const override { return b_; }
    std::uint64_t length() const override { return l_; }
    std::vector<std::uint8_t> remote_key() const override { return k_; }

   private:
    std::byte* b_;
    std::uint64_t l_;
    std::vector<std::uint8_t> k_;
  };
  return std::unique_ptr<MemoryRegion>(new Region(base, length, std::move(key)));
}

Status UcxTransport::add_peer(Rank peer, const std::string& address,
                              const std::vector<std::uint8_t>& remote_key) {
  if (shut_down_) return Status(StatusCode::kCancelled, "ucx transport shut down");
  if (address.rfind(kAddressPrefix, 0) != 0) {
    return invalid_argument("rank " + std::to_string(peer) + "'s data plane is not ucx (address '" +
                            address.substr(0, 40) + "'); every rank must use the same transport");
  }
  std::string_view rest = std::string_view(address).substr(std::strlen(kAddressPrefix));
  auto colon = rest.find(':');
  if (colon == std::string_view::npos)
    return invalid_argument("ucx address of rank " + std::to_string(peer) + " has no host part");
  const bool same_host = rest.substr(0, colon) == host_;
  auto worker_addr = from_hex(rest.substr(colon + 1));
  if (!worker_addr.is_ok())
    return invalid_argument("ucx address of rank " + std::to_string(peer) + ": not hex");
  auto key = am::decode_region_key(remote_key);
  if (!key.is_ok())
    return Status(key.status().code(), "rank " + std::to_string(peer) + ": " + key.status().message());
  const std::uint64_t base = key->base, length = key->length;
  std::vector<std::uint8_t> rkey = std::move(key->rkey);
  // A rejoined peer replaces the old way to it; whatever was in flight on
  // the old endpoint belongs to the dead process.
  if (auto it = peers_.find(peer); it != peers_.end()) {
    fail_pending(peer, peer_failure("rank " + std::to_string(peer) + " was replaced"));
    close_endpoint(*it->second, true);
    peers_.erase(it);
  }
  auto p = std::make_unique<Peer>(*this, peer, std::move(worker_addr).value(), std::move(rkey), base, length);
  // UCX 1.13's shared-memory transports (posix, sysv, cma) have no
  // peer-failure handling, and UCP_ERR_HANDLING_MODE_PEER leaves them out:
  // on one host the endpoint would fall back to tcp over loopback. There
  // the endpoint runs without UCX's error handling, and the node's failure
  // detector (the control connection breaks the moment a process dies)
  // completes the gets through fail_peer(). Between hosts, peer mode.
  p->peer_mode_ = !(same_host && shared_memory_allowed());
  if (const char* em = std::getenv("HOPLITE_UCX_ERR_MODE")) {
    if (std::string(em) == "peer") p->peer_mode_ = true;
    if (std::string(em) == "none") p->peer_mode_ = false;
  }
  HOPLITE_RETURN_IF_ERROR(p->connect());
  peers_[peer] = std::move(p);
  post_pass();
  return {};
}

Endpoint* UcxTransport::endpoint(Rank peer) {
  if (peer == opts_.rank) {
    if (!local_) local_ = std::make_unique<LocalEndpoint>(io_, region_base_, region_length_);
    return local_.get();
  }
  auto it = peers_.find(peer);
  return it == peers_.end() ? nullptr : it->second.get();
}

GetPath UcxTransport::path_to(Rank peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() ? opts_.path : it->second->path_;
}

std::string UcxTransport::describe(Rank peer) const {
  std::ostringstream os;
  const char* tls = std::getenv("UCX_TLS");
  const char* dev = std::getenv("UCX_NET_DEVICES");
  os << "ucx " << UCP_API_MAJOR << "." << UCP_API_MINOR << " UCX_TLS=" << (tls ? tls : "(unset)");
  if (dev) os << " UCX_NET_DEVICES=" << dev;
  auto it = peers_.find(peer);
  if (it != peers_.end() && it->second->ep_) {
    os << "; to rank " << peer << " gets via " << (it->second->path_ == GetPath::kRma ? "rma" : "am")
       << ", error mode " << (it->second->peer_mode_ ? "peer" : "none") << ", lanes:";
    for (const auto& l : it->second->lanes_) os << " [" << l << "]";
  }
  return os.str();
}

void UcxTransport::start_get(Peer& p, const ObjectID& object, std::byte* local, std::uint64_t length,
                             std::uint64_t remote_offset, Completion done) {
  auto fail_later = [this](Completion d, Status st) {
    asio::post(io_, [d = std::move(d), st = std::move(st)] { d(st); });
  };
  if (shut_down_)
    return fail_later(std::move(done), Status(StatusCode::kCancelled, "ucx transport shut down"));
  if (length > opts_.max_get) {
    return fail_later(std::move(done), invalid_argument("get of " + std::to_string(length) +
                                                        " bytes exceeds the chunk limit"));
  }
  if (remote_offset > p.remote_length_ || length > p.remote_length_ - remote_offset) {
    return fail_later(std::move(done),
                      invalid_argument("get outside rank " + std::to_string(p.rank_) + "'s region"));
  }
  if (!p.ep_) {
    Status st = p.connect();
    if (!st.is_ok()) return fail_later(std::move(done), st);
  }
  const std::uint64_t id = fresh_get_id();
  auto* op = new Op{this, Op::kGet, id, {}};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  rp.cb.send = &Callbacks::send_done;
  rp.user_data = op;
  const auto at = reinterpret_cast<std::uintptr_t>(local),
             base = reinterpret_cast<std::uintptr_t>(region_base_);
  const bool in_region = at >= base && at - base <= region_length_ && length <= region_length_ - (at - base);
  if (in_region && h_->memh) {
    rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    rp.memh = h_->memh;
  }
  ucs_status_ptr_t req;
  if (p.path_ == GetPath::kRma) {
    req = ucp_get_nbx(p.ep_, local, length, p.remote_base_ + remote_offset, p.rkey_, &rp);
  } else {
    op->header = am::encode_get({id, object, remote_offset, length, opts_.rank});
    op->kind = Op::kRequest;
    rp.op_attr_mask &= ~static_cast<std::uint32_t>(UCP_OP_ATTR_FIELD_MEMH);
    req = ucp_am_send_nbx(p.ep_, kAmGet, op->header.data(), op->header.size(), nullptr, 0, &rp);
  }
  if (UCS_PTR_IS_ERR(req)) {
    delete op;
    return fail_later(std::move(done),
                      ucx_error("ucx: get from rank " + std::to_string(p.rank_), UCS_PTR_STATUS(req)));
  }
  pending_.emplace(id, Pending{p.rank_, local, length, std::move(done), std::chrono::steady_clock::now(),
                               false, p.path_ == GetPath::kRma});
  if (p.path_ == GetPath::kRma) rma_in_flight_++;
  p.in_flight_++;
  stats_.gets++;
  post_pass();
}

void UcxTransport::complete(std::uint64_t id, const Status& st) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // already failed with its peer
  Pending pd = std::move(it->second);
  pending_.erase(it);
  if (pd.rma) rma_in_flight_--;
  if (auto p = peers_.find(pd.peer); p != peers_.end()) p->second->in_flight_--;
  if (st.is_ok()) stats_.bytes_read += pd.length;
  pd.done(st.is_ok() ? st : Status(st.code(), "rank " + std::to_string(pd.peer) + ": " + st.message()));
}

void UcxTransport::fail_pending(Rank peer, const Status& why) {
  std::vector<std::uint64_t> ids;
  for (auto& [id, pd] : pending_) {
    if (pd.peer == peer) ids.push_back(id);
  }
  for (auto id : ids) {
    auto it = pending_.find(id);
    if (it == pending_.end()) continue;
    Pending pd = std::move(it->second);
    pending_.erase(it);
    if (pd.rma) rma_in_flight_--;
    pd.done(why);
  }
  if (auto p = peers_.find(peer); p != peers_.end()) p->second->in_flight_ = 0;
}

void UcxTransport::close_endpoint(Peer& p, bool force) {
  if (p.rkey_) ucp_rkey_destroy(p.rkey_);  // an rkey goes before its endpoint
  p.rkey_ = nullptr;
  if (!p.ep_) return;
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  // UCX allows a forced close only when both sides run in peer mode.
  rp.flags = force && p.peer_mode_ ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t req = ucp_ep_close_nbx(p.ep_, &rp);
  p.ep_ = nullptr;
  if (req && !UCS_PTR_IS_ERR(req)) closing_.push_back(req);
  post_pass();
}

std::uint64_t UcxTransport::fresh_get_id() {
  for (;;) {
    if (random_ids_.empty()) {
      random_ids_.resize(256);
      if (RAND_bytes(reinterpret_cast<unsigned char*>(random_ids_.data()),
                     static_cast<int>(random_ids_.size() * sizeof(std::uint64_t))) != 1) {
        LOG_ERROR("ucx: RAND_bytes failed");
        std::abort();
      }
    }
    std::uint64_t id = random_ids_.back();
    random_ids_.pop_back();
    if (id != 0 && !pending_.count(id)) return id;
  }
}

// The holder answers to the requester's endpoint, made from the address in
// the authenticated bootstrap table, never to whoever sent the request: a
// forged request sends the bytes to a member, which drops an answer it did
// not ask for.
void UcxTransport::serve(Rank requester, std::uint64_t id, const ObjectID& object, std::uint64_t offset,
                         std::uint64_t length) {
  auto it = peers_.find(requester);
  if (it == peers_.end() || !it->second->ep_) {
    LOG_WARN("ucx: get request from rank " << requester << ", which has no endpoint here; dropped");
    return;
  }
  // A bad range is the reader's bug: answer with an error, keep serving.
  Status access = length <= opts_.max_get && offset <= region_length_ && length <= region_length_ - offset
                      ? Status()
                      : invalid_argument("outside the region");
  if (access.is_ok() && access_) access = access_(requester, object, offset, length);
  const bool ok = access.is_ok();
  if (!ok) {
    stats_.refused_gets++;
    LOG_WARN("ucx: refused rank " << requester << " [" << offset << ", +" << length << ") of "
                                  << object.short_hex() << ": " << access.message());
  }
  auto* op = new Op{this, Op::kServe, 0, am::encode_data({id, static_cast<std::uint16_t>(access.code())})};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  rp.cb.send = &Callbacks::send_done;
  rp.user_data = op;
  if (it->second->eager_) {
    rp.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = UCP_AM_SEND_FLAG_EAGER;
  }
  if (ok && h_->memh) {
    rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    rp.memh = h_->memh;
  }
  ucs_status_ptr_t req = ucp_am_send_nbx(it->second->ep_, kAmData, op->header.data(), op->header.size(),
                                         ok ? region_base_ + offset : nullptr, ok ? length : 0, &rp);
  if (UCS_PTR_IS_ERR(req)) {
    delete op;
    LOG_INFO("ucx: answering rank " << requester << ": " << ucs_text(UCS_PTR_STATUS(req)));
    return;
  }
  if (ok) stats_.bytes_served += length;
}

void UcxTransport::post_pass() {
  if (pass_posted_ || shut_down_) return;
  pass_posted_ = true;
  asio::post(io_, [this] { pass(); });
}

void UcxTransport::pass() {
  pass_posted_ = false;
  if (shut_down_) return;
  // Bounded by time as well as by rounds: one busy pass held the thread for
  // 100-200 ms on the emulated cluster, long enough for heartbeats to lapse.
  const auto budget = std::chrono::steady_clock::now() + kPassBudget;
  for (int i = 0; i < kProgressPerPass && std::chrono::steady_clock::now() < budget; ++i) {
    bool progressed = ucp_worker_progress(h_->worker) != 0;
    bool acted = drain();
    if (progressed || acted) continue;
    ucs_status_t st = ucp_worker_arm(h_->worker);
    if (st == UCS_ERR_BUSY) continue;  // events arrived meanwhile
    if (st != UCS_OK) LOG_WARN("ucx: arming the worker: " << ucs_text(st));
    return wait_events();
  }
  post_pass();  // still busy: let the other handlers run first
}

bool UcxTransport::drain() {
  bool acted = false;
  while (!done_.empty() || !serve_.empty() || !rndv_.empty() || !ep_errors_.empty()) {
    acted = true;
    auto errors = std::move(ep_errors_);
    ep_errors_.clear();
    for (const auto& e : errors) {
      for (auto& [rank, p] : peers_) {
        if (p->ep_ != e.ep) continue;
        const auto status = static_cast<ucs_status_t>(e.status);
        Status why = ucx_error("ucx endpoint to rank " + std::to_string(rank) + " failed", status);
        LOG_INFO(why.to_string());
        fail_pending(rank, why);  // the gets resume elsewhere; the next one reconnects
        close_endpoint(*p, true);
        // A reset or an unreachable peer is evidence of death; a timeout is
        // UCX's own judgement of silence, which the heartbeats make better
        // (under load on the emulated cluster UCX timed out live peers).
        if (status != UCS_ERR_ENDPOINT_TIMEOUT && on_peer_error_) on_peer_error_(rank, why);
        break;
      }
    }
    auto serve = std::move(serve_);
    serve_.clear();
    for (const auto& q : serve) this->serve(q.requester, q.id, q.object, q.offset, q.length);
    auto rndv = std::move(rndv_);
    rndv_.clear();
    for (const auto& d : rndv) {
      auto it = pending_.find(d.id);
      if (it == pending_.end()) {
        ucp_am_data_release(h_->worker, d.desc);
        continue;
      }
      auto* op = new Op{this, Op::kGet, d.id, {}};
      ucp_request_param_t rp{};
      rp.op_attr_mask =
          UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
      rp.cb.recv_am = &Callbacks::recv_done;
      rp.user_data = op;
      if (h_->memh) {
        rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
        rp.memh = h_->memh;
      }
      ucs_status_ptr_t req = ucp_am_recv_data_nbx(h_->worker, d.desc, it->second.local, d.length, &rp);
      if (UCS_PTR_IS_ERR(req)) {
        delete op;
        complete(d.id, ucx_error("ucx: receiving a chunk", UCS_PTR_STATUS(req)));
      }
    }
    auto done = std::move(done_);
    done_.clear();
    for (const auto& d : done) complete(d.id, d.status);
  }
  for (auto it = closing_.begin(); it != closing_.end();) {
    if (ucp_request_check_status(*it) != UCS_INPROGRESS) {
      ucp_request_free(*it);
      it = closing_.erase(it);
    } else {
      ++it;
    }
  }
  return acted;
}

void UcxTransport::wait_events() {
  if (!shut_down_) waiter_->arm();
}

void UcxTransport::tick() {
  // cma, the shared-memory RMA transport, has no event fd: a get it holds
  // back (out of resources, or behind the endpoint's wire-up) signals
  // nothing when it can go on. While rma gets are out the worker is polled
  // every millisecond; spinning instead was measured 7x slower with four
  // ranks on two cores (docs/perf.md). Otherwise the tick is insurance.
  tick_->expires_after(rma_in_flight_ > 0 ? kRmaTick : kTick);
  tick_->async_wait([this](boost::system::error_code ec) {
    if (ec || shut_down_) return;
    if (!pending_.empty() || !closing_.empty()) pass();
    // A get that UCX holds this long is worth a line: it has no timeout of
    // its own, and the node's failure detector is what ends it.
    auto now = std::chrono::steady_clock::now();
    for (auto& [id, pd] : pending_) {
      if (pd.reported || now - pd.started < std::chrono::seconds(5)) continue;
      pd.reported = true;
      LOG_WARN("ucx: a get of " << pd.length << " B from rank " << pd.peer << " has waited 5 s (path "
                                << (path_to(pd.peer) == GetPath::kRma ? "rma" : "am") << ")");
    }
    tick();
  });
}

void UcxTransport::fail_peer(Rank peer, const Status& why) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return;
  fail_pending(peer, why);
  close_endpoint(*it->second, true);
}

void UcxTransport::shutdown() {
  if (shut_down_ || !h_) return;
  std::vector<Rank> ranks;
  for (auto& [rank, p] : peers_) ranks.push_back(rank);
  for (Rank r : ranks) fail_pending(r, Status(StatusCode::kCancelled, "transport shut down"));
  shut_down_ = true;
  waiter_.reset();
  // Peer-mode endpoints close at once (their peers learn it as an endpoint
  // error, as they learn it from the control connection); the others flush,
  // within a bound, since a dead peer does not answer. Every endpoint must
  // be closed before the worker goes.
  for (auto& [rank, p] : peers_) close_endpoint(*p, true);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (!closing_.empty() && std::chrono::steady_clock::now() < deadline) {
    ucp_worker_progress(h_->worker);
    for (const auto& d : rndv_) ucp_am_data_release(h_->worker, d.desc);
    rndv_.clear();
    done_.clear();
    serve_.clear();
    ep_errors_.clear();
    drain();
  }
  // A close still waiting on a dead peer: released to UCX, which finishes
  // it when the worker goes.
  for (void* req : closing_) ucp_request_free(req);
  closing_.clear();
  peers_.clear();
  local_.reset();
  if (tick_) tick_->cancel();
  h_.reset();
}

}  // namespace hoplite::transport::ucx
