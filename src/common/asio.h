// The one place that includes Boost.Asio. Boost 1.74's awaitable.hpp uses
// std::exchange without including <utility>, which GCC 12 in C++20 mode
// rejects; including it first keeps every translation unit building.
#pragma once

#include <utility>

#include <boost/asio.hpp>
