// ObjectID: the 20-byte name of an object in the cluster.
//
// IDs come from a user name (hashed, so the same name gives the same ID on
// every node) or from randomness. They are printable as 40 hex digits and
// hash cheaply (the bytes are already uniformly distributed).
//
// Thread-safety: value type.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include "hoplite/status.h"

namespace hoplite {

class ObjectID {
 public:
  static constexpr std::size_t kSize = 20;

  ObjectID() { bytes_.fill(0); }
  explicit ObjectID(const std::array<std::uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // Deterministic: the same name gives the same ID on every node.
  static ObjectID from_name(std::string_view name);
  static ObjectID random();
  static ObjectID from_bytes(const void* data) {
    ObjectID id;
    std::memcpy(id.bytes_.data(), data, kSize);
    return id;
  }
  [[nodiscard]] static Result<ObjectID> from_hex(std::string_view hex);

  const std::uint8_t* data() const { return bytes_.data(); }
  std::string hex() const;
  // The first 8 hex digits: enough to tell objects apart in a log line.
  std::string short_hex() const { return hex().substr(0, 8); }
  std::uint64_t hash() const {
    std::uint64_t h;
    std::memcpy(&h, bytes_.data(), sizeof h);
    return h;
  }
  bool is_nil() const { return *this == ObjectID(); }

  friend bool operator==(const ObjectID&, const ObjectID&) = default;
  friend auto operator<=>(const ObjectID&, const ObjectID&) = default;

 private:
  std::array<std::uint8_t, kSize> bytes_;
};

}  // namespace hoplite

template <>
struct std::hash<hoplite::ObjectID> {
  std::size_t operator()(const hoplite::ObjectID& id) const noexcept { return id.hash(); }
};
