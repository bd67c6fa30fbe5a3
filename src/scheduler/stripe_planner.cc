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

namespace {
// Every input once, holder by holder around the ring, starting after `end`
// and ending at it.
std::vector<StripeHop> chain_ending_at(std::size_t end, const std::vector<std::size_t>& inputs_per_holder) {
  const std::size_t m = inputs_per_holder.size();
  std::vector<StripeHop> chain;
  for (std::size_t h = 1; h <= m; ++h) {
    const std::size_t holder = (end + h) % m;
    for (std::size_t i = 0; i < inputs_per_holder[holder]; ++i) chain.push_back({holder, i});
  }
  return chain;
}
}  // namespace

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
    s.chain = chain_ending_at(j, inputs_per_holder);
  }
  return out;
}

std::vector<StripeFix> plan_stripe_repair(const std::vector<StripeState>& stripes,
                                          const std::vector<std::size_t>& inputs_per_holder) {
  const std::size_t m = inputs_per_holder.size();
  std::vector<StripeFix> out(stripes.size());
  std::vector<std::size_t> ending(m, 0);
  auto lives = [m](std::size_t end) { return end != StripeState::kLost && end < m; };
  // Kept and still-placed stripes first, so that the homeless ones go to
  // the holders that end the fewest.
  for (std::size_t j = 0; j < stripes.size(); ++j) {
    const StripeState& s = stripes[j];
    out[j].redo = !(s.done && lives(s.end)) && s.length > 0;
    if (lives(s.end)) {
      out[j].end = s.end;
      ending[s.end]++;
    }
  }
  for (std::size_t j = 0; j < stripes.size(); ++j) {
    if (lives(stripes[j].end) || m == 0) continue;
    const std::size_t e =
        static_cast<std::size_t>(std::min_element(ending.begin(), ending.end()) - ending.begin());
    out[j].end = e;
    ending[e]++;
  }
  for (std::size_t j = 0; j < stripes.size(); ++j) {
    if (out[j].redo && m > 0) out[j].chain = chain_ending_at(out[j].end, inputs_per_holder);
  }
  return out;
}

}  // namespace hoplite::scheduler
