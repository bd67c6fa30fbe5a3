#include "scheduler/stripe_planner.h"

#include <algorithm>

namespace hoplite::scheduler {

StripeWindow stripe_window(double bytes, double bandwidth, double latency) {
  StripeWindow w;
  w.base = std::max(2e-3, latency * 40);
  w.extra = std::min(bytes / std::max(bandwidth, 1.0) * 0.01, 0.05);
  return w;
}

bool should_stripe(std::size_t holders, std::uint64_t size, bool any_inline, std::uint64_t chunk_size) {
  if (holders < 2 || size < holders * kMinStripeBytes || any_inline) return false;
  if (holders <= kAlwaysStripeHolders) return true;
  return size / holders >= holders / 2 * std::max<std::uint64_t>(chunk_size, 1);
}

std::vector<Stripe> plan_stripes(const std::vector<std::size_t>& inputs_per_holder, std::uint64_t size) {
  const std::size_t m = inputs_per_holder.size();
  std::vector<Stripe> out(m);
  if (m == 0) return out;
  // 64-byte stripes keep every element type whole and chunks aligned.
  const std::uint64_t base = ((size + m - 1) / m + 63) / 64 * 64;
  for (std::size_t j = 0; j < m; ++j) {
    Stripe& s = out[j];
    s.offset = std::min<std::uint64_t>(j * base, size);
    s.length = std::min<std::uint64_t>(base, size - s.offset);
    for (std::size_t h = 1; h <= m; ++h) {
      const std::size_t holder = (j + h) % m;
      for (std::size_t i = 0; i < inputs_per_holder[holder]; ++i) s.chain.push_back({holder, i});
    }
  }
  return out;
}

}  // namespace hoplite::scheduler
