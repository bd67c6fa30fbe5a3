#include "common/host_port.h"

#include <cstdlib>

namespace hoplite {

Result<std::pair<std::string, std::uint16_t>> split_host_port(const std::string& a) {
  auto colon = a.rfind(':');
  if (colon == std::string::npos) return invalid_argument("'" + a + "' is not host:port");
  unsigned long port = std::strtoul(a.c_str() + colon + 1, nullptr, 10);
  if (port > 65535) return invalid_argument("bad port in '" + a + "'");
  return std::make_pair(a.substr(0, colon), static_cast<std::uint16_t>(port));
}

}  // namespace hoplite
