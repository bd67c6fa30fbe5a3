// ExtentAllocator: hands out aligned byte ranges of one fixed arena.
//
// Best fit over a free list kept twice (by offset, for coalescing on free;
// by size, for the fit). Pure bookkeeping, no memory is touched, so it is
// unit-tested alone. Zero-byte requests succeed without consuming space.
//
// Thread-safety: none; ObjectStore serializes access.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <utility>

#include "hoplite/status.h"

namespace hoplite::store {

class ExtentAllocator {
 public:
  // 64 B keeps every object cache-line aligned (and SIMD-aligned for the
  // reduce kernels); larger alignment would waste space on small objects.
  static constexpr std::uint64_t kAlignment = 64;

  explicit ExtentAllocator(std::uint64_t capacity);

  // The offset of a free range of at least `size` bytes, or a capacity error
  // that leaves the allocator unchanged.
  [[nodiscard]] Result<std::uint64_t> allocate(std::uint64_t size);
  // `offset` and `size` must be exactly what allocate() returned/was given.
  void free(std::uint64_t offset, std::uint64_t size);

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t used() const { return used_; }
  std::uint64_t largest_free() const;
  std::size_t free_ranges() const { return by_offset_.size(); }

 private:
  static std::uint64_t round_up(std::uint64_t n) { return (n + kAlignment - 1) & ~(kAlignment - 1); }
  void insert_free(std::uint64_t offset, std::uint64_t size);
  void erase_free(std::uint64_t offset, std::uint64_t size);

  std::uint64_t capacity_;
  std::uint64_t used_ = 0;
  std::map<std::uint64_t, std::uint64_t> by_offset_;           // offset -> size
  std::set<std::pair<std::uint64_t, std::uint64_t>> by_size_;  // (size, offset)
};

}  // namespace hoplite::store
