#include "task/placement.h"

#include <map>

namespace hoplite::task {

int place(const PlacementInput& in) {
  const int n = static_cast<int>(in.alive.size());
  int best = -1;
  for (int i = 0; i < n; ++i) {
    const int r = static_cast<int>((in.rotate + static_cast<unsigned>(i)) % static_cast<unsigned>(n));
    if (!in.alive[r]) continue;
    if (best < 0 || in.outstanding[r] < in.outstanding[best]) best = r;
  }
  if (best < 0) return -1;
  // The live rank with the most large-argument bytes, if not too busy.
  std::map<int, std::uint64_t> bytes;
  for (auto [r, b] : in.large_args) {
    if (r >= 0 && r < n && in.alive[r]) bytes[r] += b;
  }
  int local = -1;
  for (auto [r, b] : bytes) {
    if (local < 0 || b > bytes[local]) local = r;
  }
  if (local >= 0 && in.outstanding[local] <= in.outstanding[best] + in.slack) return local;
  return best;
}

}  // namespace hoplite::task
