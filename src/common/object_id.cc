#include "hoplite/object_id.h"

#include <algorithm>
#include <random>

#include "common/hex.h"

namespace hoplite {
namespace {

// 64-bit FNV-1a, then splitmix64 to spread it: not cryptographic, only a
// stable, well-mixed name -> ID mapping identical on every node.
std::uint64_t fnv1a(std::string_view s, std::uint64_t seed) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

ObjectID ObjectID::from_name(std::string_view name) {
  std::array<std::uint8_t, kSize> b{};
  for (std::size_t i = 0; i < kSize; i += 8) {
    std::uint64_t h = splitmix64(fnv1a(name, i));
    std::memcpy(b.data() + i, &h, std::min<std::size_t>(8, kSize - i));
  }
  return ObjectID(b);
}

ObjectID ObjectID::random() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::array<std::uint8_t, kSize> b{};
  for (std::size_t i = 0; i < kSize; i += 8) {
    std::uint64_t h = rng();
    std::memcpy(b.data() + i, &h, std::min<std::size_t>(8, kSize - i));
  }
  return ObjectID(b);
}

std::string ObjectID::hex() const {
  return to_hex(bytes_);
}

Result<ObjectID> ObjectID::from_hex(std::string_view hex) {
  if (hex.size() != 2 * kSize)
    return invalid_argument("object id must be 40 hex digits, got " + std::to_string(hex.size()));
  auto bytes = hoplite::from_hex(hex);
  if (!bytes.is_ok()) return invalid_argument("object id has a non-hex digit");
  std::array<std::uint8_t, kSize> b{};
  std::copy(bytes->begin(), bytes->end(), b.begin());
  return ObjectID(b);
}

}  // namespace hoplite
