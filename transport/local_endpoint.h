// LocalEndpoint: gets from this node's own registered region.
//
// Every backend needs the same thing for a get whose holder is the node
// itself (a reduce input or a composite part that is already here): a
// memmove, completed through the io_context like any other get so that
// callers never see a completion from inside get().
//
// Ownership: refers to the region (base, length) its backend registered;
// the backend owns the endpoint and keeps the region alive.
// Thread-binding: the backend's io_context thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/asio.h"
#include "transport/transport.h"

namespace hoplite::transport {

class LocalEndpoint final : public Endpoint {
 public:
  LocalEndpoint(boost::asio::io_context& io, std::byte* base, std::uint64_t length)
      : io_(io), base_(base), length_(length) {}
  void get(const ObjectID& id, std::byte* local, std::uint64_t length, std::uint64_t remote_offset,
           Completion done) override;
  std::size_t in_flight() const override { return in_flight_; }

 private:
  boost::asio::io_context& io_;
  std::byte* base_;
  std::uint64_t length_;
  std::size_t in_flight_ = 0;
};

}  // namespace hoplite::transport
