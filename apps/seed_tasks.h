// The Go implementation's three tasks (../shared/seeds/001), for its test
// and its benchmark: lists of unsigned 64-bit integers in native byte
// order, one object per list.
//
//   primes:   keeps the primes of its one list (trial division, as costly
//             per large prime as the seed's benchmark A intends);
//   multiply: multiplies two lists element-wise, truncated to the shorter;
//   product:  reduces any number of lists by element-wise multiplication,
//             folding each one as soon as it is ready (the seed's Task 3).
//
// Products wrap modulo 2^64 (the seed uses arbitrary precision); the
// checks compute the same wrapping products.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "hoplite/task.h"

namespace hoplite::apps {

using List = std::vector<std::uint64_t>;

bool is_prime(std::uint64_t n);
List primes_of(const List& in);
List multiply(const List& a, const List& b);

std::span<const std::byte> bytes_of(const List& l);
List list_of(std::span<const std::byte> b);

// The seed's lists: 500-600 random integers in [2, 10^6) with `prime`
// inserted at a random number of random places.
List seed_list(std::mt19937_64& rng, std::uint64_t prime);

TaskFunctions seed_tasks();

}  // namespace hoplite::apps
