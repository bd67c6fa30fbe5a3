#include <cstdint>
#include <cstdlib>
#include <string>

#include "hoplite/options.h"

#include <algorithm>

#include "auth/token.h"
#include "common/host_port.h"
#include "transport/factory.h"

namespace hoplite {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

// The first of `names` that is set.
const char* first_env(std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (const char* v = env(n)) return v;
  }
  return nullptr;
}

Result<long long> parse_int(const char* name, const char* v) {
  char* end = nullptr;
  long long x = std::strtoll(v, &end, 10);
  if (end == v || *end != '\0') return invalid_argument(std::string(name) + "='" + v + "' is not an integer");
  return x;
}

}  // namespace

// "64M", "2G", "4096", "1KiB" -> bytes.
Result<std::uint64_t> parse_size(const std::string& s) {
  if (s.empty()) return invalid_argument("empty size");
  if (s[0] < '0' || s[0] > '9') return invalid_argument("'" + s + "' is not a size");
  std::size_t pos = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(s, &pos);
  } catch (...) {
    return invalid_argument("'" + s + "' is not a size");
  }
  std::string suffix = s.substr(pos);
  std::uint64_t mult = 1;
  if (suffix.empty() || suffix == "B") {
    mult = 1;
  } else if (suffix == "K" || suffix == "KiB" || suffix == "k") {
    mult = 1ull << 10;
  } else if (suffix == "M" || suffix == "MiB") {
    mult = 1ull << 20;
  } else if (suffix == "G" || suffix == "GiB") {
    mult = 1ull << 30;
  } else {
    return invalid_argument("'" + s + "': unknown size suffix '" + suffix + "'");
  }
  if (n > UINT64_MAX / mult) return invalid_argument("'" + s + "' overflows 64 bits");
  return static_cast<std::uint64_t>(n) * mult;
}

Result<NodeOptions> NodeOptions::from_environment() {
  NodeOptions o;
  const char* rank = first_env({"HOPLITE_RANK", "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"});
  const char* size =
      first_env({"HOPLITE_WORLD_SIZE", "WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"});
  if (!rank || !size) {
    return invalid_argument(
        "no rank/world size in the environment: start under hoplite-run, torchrun, mpirun or srun, "
        "or set RANK and WORLD_SIZE");
  }
  auto r = parse_int("rank", rank);
  if (!r.is_ok()) return r.status();
  auto w = parse_int("world size", size);
  if (!w.is_ok()) return w.status();
  o.rank = static_cast<int>(r.value());
  o.world_size = static_cast<int>(w.value());

  if (const char* b = env("HOPLITE_BOOTSTRAP")) {
    o.bootstrap_address = b;
  } else if (env("MASTER_ADDR") && env("MASTER_PORT")) {
    o.bootstrap_address = std::string(env("MASTER_ADDR")) + ":" + env("MASTER_PORT");
  } else {
    return invalid_argument(
        "no bootstrap address: set HOPLITE_BOOTSTRAP=host:port or MASTER_ADDR and MASTER_PORT");
  }
  if (const char* v = env("HOPLITE_LISTEN_HOST")) o.listen_host = v;
  if (const char* v = env("HOPLITE_TOKEN")) {
    o.token = v;
  } else if (const char* f = env("HOPLITE_TOKEN_FILE")) {
    auto t = auth::read_token_file(f);
    if (!t.is_ok()) return invalid_argument("HOPLITE_TOKEN_FILE: " + t.status().message());
    o.token = t.value();
  } else if (auto path = auth::default_token_path(); !path.empty()) {
    auto t = auth::read_token_file(path);
    if (t.is_ok()) {
      o.token = t.value();
    } else if (t.status().code() != StatusCode::kNotFound) {
      return t.status();
    }
  }
  if (const char* v = env("HOPLITE_INSECURE")) o.insecure = std::string(v) == "1";
  if (const char* v = env("HOPLITE_TRANSPORT")) o.transport = v;
  struct SizeVar {
    const char* name;
    std::uint64_t* field;
  };
  for (auto [name, field] :
       {SizeVar{"HOPLITE_STORE_CAPACITY", &o.store_capacity}, SizeVar{"HOPLITE_CHUNK_SIZE", &o.chunk_size},
        SizeVar{"HOPLITE_INLINE_THRESHOLD", &o.inline_threshold}}) {
    if (const char* v = env(name)) {
      auto s = parse_size(v);
      if (!s.is_ok()) return invalid_argument(std::string(name) + ": " + s.status().message());
      *field = s.value();
    }
  }
  if (const char* v = env("HOPLITE_PIPELINE_DEPTH")) {
    auto d = parse_int("HOPLITE_PIPELINE_DEPTH", v);
    if (!d.is_ok()) return d.status();
    o.pipeline_depth = static_cast<unsigned>(d.value());
  }
  if (const char* v = env("HOPLITE_LINK_BANDWIDTH")) {
    auto b = parse_size(v);
    if (!b.is_ok())
      return invalid_argument(std::string("HOPLITE_LINK_BANDWIDTH (bytes/s): ") + b.status().message());
    o.link_bandwidth = static_cast<double>(b.value());
  }
  if (const char* v = env("HOPLITE_LINK_LATENCY_US")) {
    auto l = parse_int("HOPLITE_LINK_LATENCY_US", v);
    if (!l.is_ok()) return l.status();
    o.link_latency = static_cast<double>(l.value()) * 1e-6;
  }
  if (const char* v = env("HOPLITE_FAILURE_TIMEOUT_MS")) {
    auto d = parse_int("HOPLITE_FAILURE_TIMEOUT_MS", v);
    if (!d.is_ok()) return d.status();
    o.failure_timeout = std::chrono::milliseconds(d.value());
  }
  if (const char* v = env("HOPLITE_REJOIN")) o.rejoin = std::string(v) == "1";
  if (const char* v = env("HOPLITE_REJOIN_CONTACTS")) {
    std::string list = v;
    for (std::size_t at = 0; at <= list.size();) {
      std::size_t end = list.find(',', at);
      if (end == std::string::npos) end = list.size();
      if (end > at) o.rejoin_contacts.push_back(list.substr(at, end - at));
      at = end + 1;
    }
  }
  if (const char* v = env("HOPLITE_BOOTSTRAP_TIMEOUT_MS")) {
    auto d = parse_int("HOPLITE_BOOTSTRAP_TIMEOUT_MS", v);
    if (!d.is_ok()) return d.status();
    o.bootstrap_timeout = std::chrono::milliseconds(d.value());
  }
  HOPLITE_RETURN_IF_ERROR(o.validate());
  return o;
}

Status NodeOptions::validate() const {
  if (token.empty() && !insecure) {
    return invalid_argument(
        "no cluster token: set HOPLITE_TOKEN, or create ~/.hoplite/token (mode 0600; hoplite-run creates "
        "it), or HOPLITE_TOKEN_FILE; HOPLITE_INSECURE=1 runs an unauthenticated cluster");
  }
  if (world_size < 1) return invalid_argument("world size must be >= 1, got " + std::to_string(world_size));
  if (rank < 0 || rank >= world_size) {
    return invalid_argument("rank " + std::to_string(rank) + " outside [0, " + std::to_string(world_size) +
                            ")");
  }
  if (bootstrap_address.rfind(':') == std::string::npos) {
    return invalid_argument("bootstrap address '" + bootstrap_address + "' is not host:port");
  }
  if (chunk_size < 4096 || chunk_size > (64u << 20)) {
    return invalid_argument("chunk size must be in [4 KiB, 64 MiB], got " + std::to_string(chunk_size));
  }
  if (inline_threshold > (1u << 20)) {
    return invalid_argument("inline threshold above 1 MiB would bloat the directory: " +
                            std::to_string(inline_threshold));
  }
  if (pipeline_depth < 1 || pipeline_depth > 256)
    return invalid_argument("pipeline depth must be in [1, 256]");
  if (failure_timeout.count() < 20) return invalid_argument("failure timeout must be at least 20 ms");
  for (const auto& c : rejoin_contacts) {
    if (auto hp = split_host_port(c); !hp.is_ok())
      return invalid_argument("rejoin contact '" + c + "': " + hp.status().message());
  }
  if (rejoin && rank == 0 && rejoin_contacts.empty()) {
    return invalid_argument(
        "rank 0 rejoins through another member: give their control addresses in rejoin_contacts "
        "(HOPLITE_REJOIN_CONTACTS=host:port,...)");
  }
  if (store_capacity < (1u << 20)) return invalid_argument("store capacity must be at least 1 MiB");
  auto built = transport::available_transports();
  if (transport != "auto" && std::find(built.begin(), built.end(), transport) == built.end()) {
    std::string names;
    for (const auto& n : built) names += n + ", ";
    return invalid_argument("transport '" + transport + "' is not built (available: " + names + "auto)");
  }
  return {};
}

}  // namespace hoplite
