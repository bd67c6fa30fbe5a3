#include "hoplite/object_id.h"

#include <random>

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
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(2 * kSize, '0');
  for (std::size_t i = 0; i < kSize; ++i) {
    s[2 * i] = kDigits[bytes_[i] >> 4];
    s[2 * i + 1] = kDigits[bytes_[i] & 0xf];
  }
  return s;
}

Result<ObjectID> ObjectID::from_hex(std::string_view hex) {
  if (hex.size() != 2 * kSize)
    return invalid_argument("object id must be 40 hex digits, got " + std::to_string(hex.size()));
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::array<std::uint8_t, kSize> b{};
  for (std::size_t i = 0; i < kSize; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return invalid_argument("object id has a non-hex digit");
    b[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return ObjectID(b);
}

}  // namespace hoplite
