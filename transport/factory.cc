#include "transport/factory.h"

#include "common/log.h"
#include "transport/tcp/tcp_transport.h"
#include "transport/ucx/ucx_transport.h"

namespace hoplite::transport {

std::vector<std::string> available_transports() {
  return {"ucx", "tcp"};
}

namespace {

Result<std::unique_ptr<Transport>> make_tcp(boost::asio::io_context& io, const TransportOptions& options) {
  tcp::TcpOptions to;
  to.rank = options.rank;
  to.token = options.token;
  to.listen_host = options.listen_host;
  to.max_get = options.max_get;
  auto t = tcp::TcpTransport::create(io, to);
  if (!t.is_ok()) return t.status();
  return std::unique_ptr<Transport>(std::move(t).value());
}

Result<std::unique_ptr<Transport>> make_ucx(boost::asio::io_context& io, const TransportOptions& options) {
  ucx::UcxOptions uo;
  uo.rank = options.rank;
  uo.max_get = options.max_get;
  const char* path = std::getenv("HOPLITE_UCX_GET");
  auto p = ucx::parse_get_path(path ? path : "");
  if (!p.is_ok()) return p.status();
  uo.path = *p;
  auto t = ucx::UcxTransport::create(io, uo);
  if (!t.is_ok()) return t.status();
  return std::unique_ptr<Transport>(std::move(t).value());
}

}  // namespace

Result<std::unique_ptr<Transport>> make_transport(const std::string& name, boost::asio::io_context& io,
                                                  const TransportOptions& options) {
  if (name == "tcp") return make_tcp(io, options);
  if (name == "ucx") return make_ucx(io, options);
  if (name == "auto") {
    auto u = make_ucx(io, options);
    if (u.is_ok()) {
      LOG_INFO("data plane: ucx (transport auto: UCX initialised)");
      return u;
    }
    LOG_WARN("data plane: tcp (transport auto: UCX did not initialise: " << u.status().to_string() << ")");
    return make_tcp(io, options);
  }
  std::string built;
  for (const auto& n : available_transports()) built += (built.empty() ? "" : ", ") + n;
  return invalid_argument("transport '" + name + "' is not built (available: " + built + ", auto)");
}

}  // namespace hoplite::transport
