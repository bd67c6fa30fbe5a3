// Hex text for bytes: object ids in logs and on the command line, and
// transport addresses that travel as strings (UCX worker addresses).
// Lower-case out; either case in.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hoplite/status.h"

namespace hoplite {

std::string to_hex(std::span<const std::uint8_t> bytes);
// invalid_argument for an odd length or a non-hex digit.
[[nodiscard]] Result<std::vector<std::uint8_t>> from_hex(std::string_view hex);

}  // namespace hoplite
