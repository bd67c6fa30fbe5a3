#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace hoplite::log {
namespace {

Level level_from_env() {
  const char* v = std::getenv("HOPLITE_LOG");
  if (!v) return Level::kWarn;
  if (!std::strcmp(v, "error")) return Level::kError;
  if (!std::strcmp(v, "info")) return Level::kInfo;
  if (!std::strcmp(v, "debug")) return Level::kDebug;
  return Level::kWarn;
}

const Level g_level = level_from_env();
std::atomic<int> g_rank{-1};

}  // namespace

bool enabled(Level l) {
  return static_cast<int>(l) <= static_cast<int>(g_level);
}
void set_rank(int rank) {
  g_rank.store(rank, std::memory_order_relaxed);
}

void write(Level l, const std::string& line) {
  static constexpr const char* kNames[] = {"E", "W", "I", "D"};
  std::string out = "hoplite[" + std::to_string(g_rank.load(std::memory_order_relaxed)) + "] " +
                    kNames[static_cast<int>(l)] + " " + line + "\n";
  ssize_t rc = ::write(STDERR_FILENO, out.data(), out.size());
  (void)rc;  // nothing sensible to do if stderr is gone
}

}  // namespace hoplite::log
