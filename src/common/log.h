// Minimal leveled logging to stderr, one line per call, prefixed with the
// node's rank. The level comes from HOPLITE_LOG (error|warn|info|debug;
// default warn) so benchmarks stay quiet and a failing test can be rerun
// with more detail.
//
// Thread-safety: thread-safe; each line is written with one write(2).
#pragma once

#include <sstream>
#include <string>

namespace hoplite::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

bool enabled(Level l);
void set_rank(int rank);
void write(Level l, const std::string& line);

}  // namespace hoplite::log

#define HOPLITE_LOG(level, expr)               \
  do {                                         \
    if (::hoplite::log::enabled(level)) {      \
      std::ostringstream _os;                  \
      _os << expr;                             \
      ::hoplite::log::write(level, _os.str()); \
    }                                          \
  } while (0)
#define LOG_ERROR(expr) HOPLITE_LOG(::hoplite::log::Level::kError, expr)
#define LOG_WARN(expr) HOPLITE_LOG(::hoplite::log::Level::kWarn, expr)
#define LOG_INFO(expr) HOPLITE_LOG(::hoplite::log::Level::kInfo, expr)
#define LOG_DEBUG(expr) HOPLITE_LOG(::hoplite::log::Level::kDebug, expr)
