// Arena: the one mapping that backs a node's object store.
//
// Reserved once at start (anonymous mmap, MAP_NORESERVE so an idle 4 GiB
// store costs no RAM) and bound with hwloc to the NUMA node of the calling
// thread, which is the progress thread's node too. Transports register it
// once. Move-only: the mapping is unmapped exactly once.
//
// Thread-safety: immutable after create(); the bytes are shared by design and
// their visibility is governed by ObjectEntry::progress.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "hoplite/status.h"

namespace hoplite::store {

class Arena {
 public:
  [[nodiscard]] static Result<Arena> create(std::uint64_t capacity);
  Arena(Arena&& o) noexcept;
  Arena& operator=(Arena&& o) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();

  std::byte* base() const { return base_; }
  std::uint64_t size() const { return size_; }
  // How the memory was placed, for the start-up log ("bound to NUMA node 0").
  const std::string& placement() const { return placement_; }

 private:
  Arena(std::byte* base, std::uint64_t size, std::string placement)
      : base_(base), size_(size), placement_(std::move(placement)) {}
  std::byte* base_ = nullptr;
  std::uint64_t size_ = 0;
  std::string placement_;
};

}  // namespace hoplite::store
