#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "hoplite/object_view.h"

namespace hoplite {

Status ObjectFuture::copy_to(std::span<std::byte> out, std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  // Runs copied so far, all from the copy at `base` (pinned by `pin`, so no
  // other copy can be at that address). A get that starts over (a
  // composite assembled again after a failure) lands in a new copy: what
  // came from the old one may differ and is copied again.
  const std::byte* base = nullptr;
  std::shared_ptr<const void> pin;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> copied;
  std::unique_lock lock(s_->mu);
  for (;;) {
    if (!s_->cv.wait_until(lock, deadline, [&] { return s_->result.has_value() || !s_->landed.empty(); })) {
      return timeout_error("get of " + s_->id.short_hex() + ": no complete copy after " +
                           std::to_string(timeout.count()) + " ms");
    }
    if (s_->result) break;
    std::vector<detail::Landed> runs = std::move(s_->landed);
    s_->landed.clear();
    lock.unlock();
    for (auto& r : runs) {
      // A wrong size is reported with the result; nothing is written past `out`.
      if (r.offset > out.size() || r.size > out.size() - r.offset) continue;
      if (r.base != base) {
        base = r.base;
        pin = std::move(r.pin);
        copied.clear();
      }
      std::memcpy(out.data() + r.offset, r.base + r.offset, r.size);
      copied.emplace_back(r.offset, r.size);
    }
    lock.lock();
  }
  Result<ObjectView> res = *s_->result;
  lock.unlock();
  if (!res.is_ok()) return res.status();
  if (res->size() != out.size()) {
    return invalid_argument("object " + s_->id.short_hex() + " is " + std::to_string(res->size()) +
                            " bytes, not the " + std::to_string(out.size()) + " of the buffer");
  }
  if (res->data() != base) copied.clear();
  std::sort(copied.begin(), copied.end());
  std::uint64_t at = 0;
  auto fill = [&](std::uint64_t to) {
    if (to > at) std::memcpy(out.data() + at, res->data() + at, to - at);
  };
  for (const auto& [off, len] : copied) {
    fill(off);
    at = std::max(at, off + len);
  }
  fill(out.size());
  return {};
}

}  // namespace hoplite
