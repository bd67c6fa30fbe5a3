#include "transport/factory.h"

#include "transport/tcp/tcp_transport.h"

namespace hoplite::transport {

std::vector<std::string> available_transports() {
  return {"tcp"};
}

Result<std::unique_ptr<Transport>> make_transport(const std::string& name, boost::asio::io_context& io,
                                                  const TransportOptions& options) {
  if (name == "tcp") {
    tcp::TcpOptions to;
    to.rank = options.rank;
    to.token = options.token;
    to.listen_host = options.listen_host;
    to.max_get = options.max_get;
    auto t = tcp::TcpTransport::create(io, to);
    if (!t.is_ok()) return t.status();
    return std::unique_ptr<Transport>(std::move(t).value());
  }
  std::string built;
  for (const auto& n : available_transports()) built += (built.empty() ? "" : ", ") + n;
  return invalid_argument("transport '" + name + "' is not built (available: " + built + ")");
}

}  // namespace hoplite::transport
