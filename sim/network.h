// Network: the simulated cluster's links.
//
// Every node has a full-duplex link of `bandwidth` bytes per second each
// way to a switch. A chunk leaves its sender's egress in the order it was
// asked for (FIFO) and streams through the receiver's ingress as it is sent
// (cut-through: a chunk costs one serialisation time, not one per hop); if
// the ingress is busy with another sender's chunk it is queued behind it, as
// the switch's buffer does. An optional aggregate switch capacity is a third
// queue shared by everyone. Control messages are small: they pay only the
// one-way latency plus the sender's CPU, and no bandwidth.
//
// Owns: the time at which each queue is next free. Thread-binding: one run.
#pragma once

#include <cstdint>
#include <vector>

namespace hoplite::sim {

struct NetworkModel {
  double bandwidth = 1.25e8;    // bytes per second, per node and direction
  double latency = 25e-6;       // one-way, seconds
  double efficiency = 1.0;      // payload share of the wire (TCP/IP: 0.956 at MTU 1500)
  double switch_bandwidth = 0;  // bytes per second through the switch; 0: non-blocking
  // CPU: every node has one progress thread, which sends each control
  // message (message_cost) and lands each data chunk (chunk_cost plus
  // byte_cost per byte, both ends' copies and system calls). host_cores > 0:
  // all nodes share that many cores, as the ranks of an emulated cluster
  // on one machine do; 0: every node has a core of its own.
  double message_cost = 0;
  double chunk_cost = 0;
  double byte_cost = 0;
  unsigned host_cores = 0;
};

class Network {
 public:
  Network(std::uint32_t nodes, NetworkModel m)
      : m_(m), egress_(nodes, 0.0), ingress_(nodes, 0.0), thread_(nodes, 0.0), cores_(m.host_cores, 0.0) {}

  const NetworkModel& model() const { return m_; }
  // When a control message that `from` sends at `t` is handled at its
  // destination. A node's messages go out one after another: each takes
  // message_cost of its CPU, so a coordinator that sends thousands of tasks
  // pays for every one.
  double message(std::uint32_t from, double t);
  // A data chunk of `bytes` from `from` to `to`, asked for at the sender at
  // `t`: when the receiver has it. Reserves the queues it passes.
  double data(std::uint32_t from, std::uint32_t to, std::uint64_t bytes, double t);
  // A chunk that reached `to` at `t` (the current time): when it is in the
  // store, after its thread's and a core's time.
  double land(std::uint32_t to, double t, std::uint64_t bytes);
  // `node`'s thread works for `seconds` from `t` on (once it and a core are
  // free): when it is done.
  double cpu(std::uint32_t node, double t, double seconds);

 private:
  NetworkModel m_;
  std::vector<double> egress_, ingress_, thread_, cores_;
  double switch_ = 0;
};

}  // namespace hoplite::sim
