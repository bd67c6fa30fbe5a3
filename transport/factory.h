// make_transport: the data-plane backend named by NodeOptions::transport.
//
// The node holds its data plane only through transport.h; this is the one
// place that knows the backends. Names: "tcp" (always built). A name that
// is not built here is an invalid_argument naming the ones that are.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/asio.h"
#include "transport/transport.h"

namespace hoplite::transport {

struct TransportOptions {
  Rank rank = 0;
  std::string token;  // cluster secret checked on every connection
  std::string listen_host = "127.0.0.1";
  std::uint64_t max_get = 64u << 20;  // largest single get, also a frame bound
};

// The backends this build has, in order of preference.
std::vector<std::string> available_transports();

[[nodiscard]] Result<std::unique_ptr<Transport>> make_transport(const std::string& name,
                                                                boost::asio::io_context& io,
                                                                const TransportOptions& options);

}  // namespace hoplite::transport
