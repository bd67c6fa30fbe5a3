// NodeOptions: everything a node needs to join a cluster.
//
// Filled by hand, or from the launcher's environment with
// from_environment(): hoplite-run and torchrun (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT), Open MPI (OMPI_COMM_WORLD_RANK/SIZE), PMI
// (PMI_RANK/PMI_SIZE) and Slurm (SLURM_PROCID/SLURM_NTASKS). Launchers that
// do not provide a rendezvous address (mpirun, srun) need HOPLITE_BOOTSTRAP
// (host:port of rank 0's control port). HOPLITE_* variables override the
// defaults below; docs/architecture.md lists them.
//
// Thread-safety: value type.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "hoplite/status.h"

namespace hoplite {

struct NodeOptions {
  int rank = -1;
  int world_size = -1;
  // host:port where rank 0 listens for control connections (rank 0 binds it).
  std::string bootstrap_address;
  // Address this node binds and advertises. Empty: the address that routes
  // to the bootstrap host (127.0.0.1 on loopback, the node's own IP in a
  // namespace cluster).
  std::string listen_host;
  std::uint64_t store_capacity = 2ull << 30;
  // 256 KiB: small enough that a chain of N hops fills its pipeline within
  // a few ms at 1 Gbit/s, large enough that per-chunk costs stay negligible.
  std::uint64_t chunk_size = 256u << 10;
  // Objects up to this size live in the directory itself.
  std::uint64_t inline_threshold = 64u << 10;
  // Chunk gets in flight per incoming object.
  unsigned pipeline_depth = 16;
  // The data plane: "ucx", "tcp", or "auto" (ucx when UCX initialises,
  // else tcp; the log says which and why). HOPLITE_TRANSPORT sets it.
  std::string transport = "auto";
  // The cluster's shared secret: every connection proves it holds it
  // (challenge-response; it never crosses the wire). from_environment()
  // reads HOPLITE_TOKEN, else the file HOPLITE_TOKEN_FILE, else
  // ~/.hoplite/token (mode 0600). docs/security.md has the policy.
  std::string token;
  // Run without a token, so anyone who reaches the ports can join, read and
  // write (HOPLITE_INSECURE=1). Only when asked for; warned at start.
  bool insecure = false;
  std::chrono::milliseconds bootstrap_timeout{60000};
  // The link model the reduce planner uses. 0: measured at start-up (a
  // round trip and a 2 MiB transfer between neighbours).
  double link_bandwidth = 0;  // bytes per second
  double link_latency = 0;    // seconds per hop
  // A peer silent for this long is declared failed (a broken connection
  // declares it at once). Heartbeats go out every quarter of it.
  std::chrono::milliseconds failure_timeout{800};
  // Join a running cluster under `rank` (a restarted process) instead of
  // bootstrapping a new one. The rejoiner asks the bootstrap address (rank
  // 0's, unless it is rank 0 itself) and then each of rejoin_contacts in
  // turn; any live member that answers sends it on to the leader (the
  // lowest live rank), which takes it back.
  bool rejoin = false;
  // Control addresses (host:port, Node::control_address) of members a
  // rejoiner may ask when rank 0 is dead, or when it is rank 0 itself
  // (HOPLITE_REJOIN_CONTACTS=host:port,host:port).
  std::vector<std::string> rejoin_contacts;

  [[nodiscard]] static Result<NodeOptions> from_environment();
  [[nodiscard]] Status validate() const;
};

// "4096", "64K", "16M", "2G" (binary units) -> bytes.
[[nodiscard]] Result<std::uint64_t> parse_size(const std::string& s);

}  // namespace hoplite
