// ExtentAllocator: alignment, capacity errors, coalescing, best fit, and a
// randomized alloc/free run checked against a model of the live extents.

#include "store/extent_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "hoplite/status.h"

namespace hoplite::store {
namespace {

constexpr std::uint64_t kAlign = ExtentAllocator::kAlignment;

std::uint64_t RoundUp(std::uint64_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

// Allocates or fails the test; keeps the happy-path tests short.
std::uint64_t MustAllocate(ExtentAllocator& a, std::uint64_t size) {
  auto r = a.allocate(size);
  EXPECT_TRUE(r.is_ok()) << "allocate(" << size << "): " << r.status().to_string();
  return r.is_ok() ? r.value() : ~std::uint64_t{0};
}

// Everything observable about the allocator's free space.
struct Snapshot {
  std::uint64_t used;
  std::size_t free_ranges;
  std::uint64_t largest_free;
  bool operator==(const Snapshot&) const = default;
};
Snapshot Snap(const ExtentAllocator& a) {
  return {a.used(), a.free_ranges(), a.largest_free()};
}

void ExpectCapacityError(ExtentAllocator& a, std::uint64_t size) {
  const Snapshot before = Snap(a);
  auto r = a.allocate(size);
  ASSERT_FALSE(r.is_ok()) << "allocate(" << size << ") returned " << r.value();
  EXPECT_EQ(r.status().code(), StatusCode::kCapacity);
  EXPECT_FALSE(r.status().message().empty());
  EXPECT_TRUE(Snap(a) == before) << "a failed allocate(" << size << ") changed the allocator";
}

TEST(ExtentAllocator, StartsAsOneFreeRange) {
  ExtentAllocator a(1 << 20);
  EXPECT_EQ(a.capacity(), 1u << 20);
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(a.free_ranges(), 1u);
  EXPECT_EQ(a.largest_free(), 1u << 20);
}

TEST(ExtentAllocator, CapacityIsRoundedDownToTheAlignment) {
  ExtentAllocator a(1000);
  EXPECT_EQ(a.capacity(), 960u);
  EXPECT_EQ(a.largest_free(), 960u);
  ExtentAllocator tiny(kAlign - 1);
  EXPECT_EQ(tiny.capacity(), 0u);
  EXPECT_EQ(tiny.free_ranges(), 0u);
  ExpectCapacityError(tiny, 1);
}

TEST(ExtentAllocator, OffsetsAreAlignedAndSizesRoundedUp) {
  ExtentAllocator a(1 << 20);
  std::uint64_t expected_used = 0;
  for (std::uint64_t size : {1, 63, 64, 65, 100, 127, 128, 129, 1000, 4095, 4096, 4097}) {
    std::uint64_t off = MustAllocate(a, size);
    EXPECT_EQ(off % kAlign, 0u) << "size " << size;
    expected_used += RoundUp(size);
    EXPECT_EQ(a.used(), expected_used) << "size " << size;
  }
}

TEST(ExtentAllocator, ZeroSizeConsumesNothing) {
  ExtentAllocator a(4 * kAlign);
  const Snapshot before = Snap(a);
  auto r = a.allocate(0);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(Snap(a) == before);
  a.free(r.value(), 0);
  EXPECT_TRUE(Snap(a) == before);

  // Even a full store hands out empty objects.
  MustAllocate(a, 4 * kAlign);
  ASSERT_EQ(a.used(), a.capacity());
  auto empty = a.allocate(0);
  ASSERT_TRUE(empty.is_ok()) << empty.status().to_string();
  EXPECT_EQ(a.used(), a.capacity());
}

TEST(ExtentAllocator, FillsExactlyToCapacity) {
  constexpr int kBlocks = 16;
  ExtentAllocator a(kBlocks * kAlign);
  std::vector<std::uint64_t> offsets;
  for (int i = 0; i < kBlocks; ++i) offsets.push_back(MustAllocate(a, kAlign));
  EXPECT_EQ(a.used(), a.capacity());
  EXPECT_EQ(a.free_ranges(), 0u);
  EXPECT_EQ(a.largest_free(), 0u);
  std::sort(offsets.begin(), offsets.end());
  for (int i = 0; i < kBlocks; ++i) EXPECT_EQ(offsets[i], i * kAlign);
  ExpectCapacityError(a, 1);

  ExtentAllocator whole(kBlocks * kAlign);
  EXPECT_EQ(MustAllocate(whole, kBlocks * kAlign), 0u);
  EXPECT_EQ(whole.free_ranges(), 0u);
  ExpectCapacityError(whole, 1);
}

TEST(ExtentAllocator, CapacityErrorLeavesStateUnchanged) {
  ExtentAllocator a(64 * kAlign);
  // Fragment: every other block free, so 32 blocks are free but no two are
  // adjacent.
  std::vector<std::uint64_t> offs;
  for (int i = 0; i < 64; ++i) offs.push_back(MustAllocate(a, kAlign));
  for (int i = 0; i < 64; i += 2) a.free(offs[i], kAlign);
  ASSERT_EQ(a.used(), 32 * kAlign);
  ASSERT_EQ(a.free_ranges(), 32u);

  ExpectCapacityError(a, kAlign + 1);  // more than any hole, less than the total
  ExpectCapacityError(a, 2 * kAlign);
  ExpectCapacityError(a, a.capacity());
  ExpectCapacityError(a, a.capacity() + 1);
  ExpectCapacityError(a, ~std::uint64_t{0});  // must not overflow while rounding

  // The allocator still works as before: a hole-sized request fits.
  std::uint64_t off = MustAllocate(a, kAlign);
  EXPECT_EQ(off % (2 * kAlign), 0u);  // one of the freed even blocks
}

// Number of maximal runs of free blocks, which is what free_ranges() must
// report once neighbours are merged.
std::size_t FreeRuns(const std::vector<bool>& is_free) {
  std::size_t runs = 0;
  for (std::size_t i = 0; i < is_free.size(); ++i) {
    if (is_free[i] && (i == 0 || !is_free[i - 1])) ++runs;
  }
  return runs;
}

// Allocates `blocks` single-block extents (plus `spare` blocks never handed
// out), frees them in `order` and checks the free list after every step.
void FreeInOrderAndCheckCoalescing(const std::vector<std::size_t>& order, std::size_t blocks,
                                   std::size_t spare) {
  ExtentAllocator a((blocks + spare) * kAlign);
  std::vector<std::uint64_t> offs;
  for (std::size_t i = 0; i < blocks; ++i) offs.push_back(MustAllocate(a, kAlign));
  std::vector<bool> is_free(blocks + spare, false);
  for (std::size_t i = blocks; i < blocks + spare; ++i) is_free[i] = true;
  for (std::uint64_t off : offs) ASSERT_FALSE(is_free[off / kAlign]);

  for (std::size_t step = 0; step < order.size(); ++step) {
    std::uint64_t off = offs[order[step]];
    // Odd sizes exercise the rounding on the free path too.
    a.free(off, kAlign - (step % 3) * 17);
    is_free[off / kAlign] = true;
    ASSERT_EQ(a.free_ranges(), FreeRuns(is_free)) << "after freeing step " << step;
  }
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(a.free_ranges(), 1u);
  EXPECT_EQ(a.largest_free(), a.capacity());
  // One range again means one allocation can take the whole store.
  EXPECT_EQ(MustAllocate(a, a.capacity()), 0u);
}

TEST(ExtentAllocator, CoalescesWhenFreedForward) {
  std::vector<std::size_t> order(32);
  std::iota(order.begin(), order.end(), 0);
  FreeInOrderAndCheckCoalescing(order, 32, 0);
  FreeInOrderAndCheckCoalescing(order, 32, 5);
}

TEST(ExtentAllocator, CoalescesWhenFreedBackward) {
  std::vector<std::size_t> order(32);
  std::iota(order.rbegin(), order.rend(), 0);
  FreeInOrderAndCheckCoalescing(order, 32, 0);
  FreeInOrderAndCheckCoalescing(order, 32, 5);
}

TEST(ExtentAllocator, CoalescesWhenFreedInRandomOrder) {
  for (std::uint32_t seed = 1; seed <= 50; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    std::vector<std::size_t> order(48);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    FreeInOrderAndCheckCoalescing(order, 48, seed % 2 ? 0 : 3);
  }
}

TEST(ExtentAllocator, CoalescesMixedSizes) {
  ExtentAllocator a(1 << 16);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> live;
  for (std::uint64_t size : {1, 700, 64, 3000, 129, 5000, 64, 10}) {
    live.emplace_back(MustAllocate(a, size), size);
  }
  std::mt19937 rng(99);
  std::shuffle(live.begin(), live.end(), rng);
  for (auto [off, size] : live) a.free(off, size);
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(a.free_ranges(), 1u);
  EXPECT_EQ(a.largest_free(), a.capacity());
}

TEST(ExtentAllocator, BestFitPicksTheSmallestHoleThatFits) {
  ExtentAllocator a(64 * kAlign);
  // Holes of 4, 2 and 8 blocks separated by live single blocks; the rest of
  // the store is taken so the tail is not a candidate.
  std::uint64_t hole4 = MustAllocate(a, 4 * kAlign);
  MustAllocate(a, kAlign);
  std::uint64_t hole2 = MustAllocate(a, 2 * kAlign);
  MustAllocate(a, kAlign);
  std::uint64_t hole8 = MustAllocate(a, 8 * kAlign);
  MustAllocate(a, kAlign);
  MustAllocate(a, a.capacity() - a.used());
  ASSERT_EQ(a.used(), a.capacity());
  a.free(hole4, 4 * kAlign);
  a.free(hole2, 2 * kAlign);
  a.free(hole8, 8 * kAlign);
  ASSERT_EQ(a.free_ranges(), 3u);

  EXPECT_EQ(MustAllocate(a, 2 * kAlign), hole2);  // exact fit
  EXPECT_EQ(a.free_ranges(), 2u);
  EXPECT_EQ(MustAllocate(a, 3 * kAlign - 5), hole4);  // 4 beats 8
  EXPECT_EQ(a.free_ranges(), 2u);                     // hole4 leaves one block
  EXPECT_EQ(MustAllocate(a, 1), hole4 + 3 * kAlign);  // that block beats 8
  EXPECT_EQ(a.free_ranges(), 1u);
  EXPECT_EQ(MustAllocate(a, 5 * kAlign), hole8);
  EXPECT_EQ(a.largest_free(), 3 * kAlign);
  ExpectCapacityError(a, 4 * kAlign);
}

TEST(ExtentAllocator, RandomizedAllocFreeKeepsExtentsDisjoint) {
  constexpr std::uint64_t kCapacity = 1 << 20;
  constexpr int kOps = 10000;
  ExtentAllocator a(kCapacity);
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> percent(0, 99);
  std::uniform_int_distribution<std::uint64_t> small(0, 4096);
  std::uniform_int_distribution<std::uint64_t> large(4097, 200000);

  struct Extent {
    std::uint64_t size;     // as requested
    std::uint64_t rounded;  // as accounted
  };
  std::map<std::uint64_t, Extent> live;  // offset -> extent
  std::uint64_t rounded_sum = 0;
  int failures = 0;

  for (int op = 0; op < kOps; ++op) {
    SCOPED_TRACE("op " + std::to_string(op));
    const bool do_free = !live.empty() && percent(rng) < 45;
    if (do_free) {
      std::uniform_int_distribution<std::size_t> pick(0, live.size() - 1);
      auto it = std::next(live.begin(), static_cast<std::ptrdiff_t>(pick(rng)));
      a.free(it->first, it->second.size);
      rounded_sum -= it->second.rounded;
      live.erase(it);
    } else {
      std::uint64_t size = percent(rng) < 10 ? 0 : (percent(rng) < 80 ? small(rng) : large(rng));
      const Snapshot before = Snap(a);
      auto r = a.allocate(size);
      if (!r.is_ok()) {
        ++failures;
        ASSERT_EQ(r.status().code(), StatusCode::kCapacity);
        ASSERT_TRUE(Snap(a) == before);
        // Only a real shortage may fail.
        ASSERT_LT(a.largest_free(), RoundUp(size));
      } else if (size > 0) {
        const std::uint64_t off = r.value();
        const Extent e{size, RoundUp(size)};
        ASSERT_EQ(off % kAlign, 0u);
        ASSERT_LE(off + e.rounded, kCapacity);
        auto next = live.lower_bound(off);
        if (next != live.end()) {
          ASSERT_LE(off + e.rounded, next->first) << "overlaps the extent at " << next->first;
        }
        if (next != live.begin()) {
          auto prev = std::prev(next);
          ASSERT_LE(prev->first + prev->second.rounded, off) << "overlaps the extent at " << prev->first;
        }
        live.emplace(off, e);
        rounded_sum += e.rounded;
      }
    }
    ASSERT_EQ(a.used(), rounded_sum);
    ASSERT_LE(a.largest_free(), a.capacity() - a.used());
    // Merged free ranges sit between live extents, so there are at most one
    // more of them than live extents.
    ASSERT_LE(a.free_ranges(), live.size() + 1);
  }
  // The sizes are large enough that the store fills up now and then.
  EXPECT_GT(failures, 0);

  for (auto [off, e] : live) a.free(off, e.size);
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(a.free_ranges(), 1u);
  EXPECT_EQ(a.largest_free(), kCapacity);
}

}  // namespace
}  // namespace hoplite::store
