#include "store/extent_allocator.h"

#include <string>

namespace hoplite::store {

ExtentAllocator::ExtentAllocator(std::uint64_t capacity) : capacity_(capacity & ~(kAlignment - 1)) {
  if (capacity_ > 0) insert_free(0, capacity_);
}

void ExtentAllocator::insert_free(std::uint64_t offset, std::uint64_t size) {
  by_offset_.emplace(offset, size);
  by_size_.emplace(size, offset);
}

void ExtentAllocator::erase_free(std::uint64_t offset, std::uint64_t size) {
  by_offset_.erase(offset);
  by_size_.erase({size, offset});
}

Result<std::uint64_t> ExtentAllocator::allocate(std::uint64_t size) {
  if (size == 0) return std::uint64_t{0};
  if (size > capacity_) {
    return capacity_error("object of " + std::to_string(size) + " bytes exceeds the store capacity of " +
                          std::to_string(capacity_));
  }
  const std::uint64_t need = round_up(size);
  auto it = by_size_.lower_bound({need, 0});
  if (it == by_size_.end()) {
    return capacity_error("store full: " + std::to_string(size) + " bytes requested, " +
                          std::to_string(capacity_ - used_) + " free of " + std::to_string(capacity_) +
                          ", largest free extent " + std::to_string(largest_free()));
  }
  auto [free_size, offset] = *it;
  erase_free(offset, free_size);
  if (free_size > need) insert_free(offset + need, free_size - need);
  used_ += need;
  return offset;
}

void ExtentAllocator::free(std::uint64_t offset, std::uint64_t size) {
  if (size == 0) return;
  std::uint64_t len = round_up(size);
  used_ -= len;
  // Merge with the neighbours so a freed store returns to one extent.
  auto next = by_offset_.lower_bound(offset);
  if (next != by_offset_.end() && offset + len == next->first) {
    std::uint64_t n_off = next->first, n_size = next->second;
    erase_free(n_off, n_size);
    len += n_size;
  }
  auto prev = by_offset_.lower_bound(offset);
  if (prev != by_offset_.begin()) {
    --prev;
    if (prev->first + prev->second == offset) {
      std::uint64_t p_off = prev->first, p_size = prev->second;
      erase_free(p_off, p_size);
      offset = p_off;
      len += p_size;
    }
  }
  insert_free(offset, len);
}

std::uint64_t ExtentAllocator::largest_free() const {
  return by_size_.empty() ? 0 : by_size_.rbegin()->first;
}

}  // namespace hoplite::store
