// "host:port" strings, as in HOPLITE_BOOTSTRAP and MASTER_ADDR:MASTER_PORT.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "hoplite/status.h"

namespace hoplite {

// Splits at the last colon; the port must be a number up to 65535.
[[nodiscard]] Result<std::pair<std::string, std::uint16_t>> split_host_port(const std::string& a);

}  // namespace hoplite
