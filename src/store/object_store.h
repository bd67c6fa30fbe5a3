// ObjectStore: the node's objects, as extents of one Arena.
//
// An object is created with its final size, filled in order (by a local
// writer or by the data plane) and sealed when complete. `progress` counts
// the valid prefix: writers store it with release after writing, readers
// load it with acquire before reading, which is what lets a partial copy be
// served while it is still arriving. A shared_ptr<ObjectEntry> is a pin: the
// extent returns to the allocator when the object is erased *and* the last
// pin is dropped, so a reader or an in-flight send never sees freed memory.
//
// Ownership: the store owns the arena; entries keep the store core alive.
// Thread-safety: thread-safe (one mutex around the table and allocator;
// byte progress is lock-free).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "hoplite/object_id.h"
#include "hoplite/status.h"
#include "store/arena.h"
#include "store/extent_allocator.h"

namespace hoplite::store {

class StoreCore;

class ObjectEntry {
 public:
  ObjectEntry(std::shared_ptr<StoreCore> core, ObjectID id, std::uint64_t offset, std::uint64_t size,
              std::byte* data)
      : id(id), offset(offset), size(size), data(data), core_(std::move(core)) {}
  // A view: a range of `parent` with its own id and progress; it owns no
  // extent (the parent's pin keeps the memory).
  ObjectEntry(std::shared_ptr<ObjectEntry> parent, ObjectID id, std::uint64_t offset, std::uint64_t size)
      : id(id),
        offset(parent->offset + offset),
        size(size),
        data(parent->data + offset),
        core_(parent->core_),
        parent_(std::move(parent)) {}
  ~ObjectEntry();
  ObjectEntry(const ObjectEntry&) = delete;
  ObjectEntry& operator=(const ObjectEntry&) = delete;

  const ObjectID id;
  const std::uint64_t offset;  // in the arena, as remote peers address it
  const std::uint64_t size;
  std::byte* const data;

  std::uint64_t ready() const { return progress_.load(std::memory_order_acquire); }
  bool sealed() const { return sealed_.load(std::memory_order_acquire); }
  // Called after the bytes [0, bytes) are written; never moves backwards.
  void advance(std::uint64_t bytes) {
    std::uint64_t cur = progress_.load(std::memory_order_relaxed);
    while (bytes > cur && !progress_.compare_exchange_weak(cur, bytes, std::memory_order_release)) {
    }
  }
  void seal() {
    advance(size);
    sealed_.store(true, std::memory_order_release);
  }

 private:
  std::atomic<std::uint64_t> progress_{0};
  std::atomic<bool> sealed_{false};
  std::shared_ptr<StoreCore> core_;
  std::shared_ptr<ObjectEntry> parent_;
};

// The allocator and arena, shared by the store and every live entry.
class StoreCore {
 public:
  explicit StoreCore(Arena arena) : arena_(std::move(arena)), alloc_(arena_.size()) {}
  Arena arena_;
  std::mutex mu_;
  ExtentAllocator alloc_;  // guarded by mu_
};

class ObjectStore {
 public:
  [[nodiscard]] static Result<std::unique_ptr<ObjectStore>> create(std::uint64_t capacity);

  // A new, empty, unsealed object. Capacity errors and duplicates change
  // nothing.
  [[nodiscard]] Result<std::shared_ptr<ObjectEntry>> create_object(const ObjectID& id, std::uint64_t size);
  // A named range of an existing object (a part of a composite being
  // assembled), readable by peers like any object.
  [[nodiscard]] Result<std::shared_ptr<ObjectEntry>> create_view(const ObjectID& id,
                                                                 const std::shared_ptr<ObjectEntry>& parent,
                                                                 std::uint64_t offset, std::uint64_t size);
  std::shared_ptr<ObjectEntry> find(const ObjectID& id) const;
  // Drops the object from the table; its memory lives on while pinned.
  std::shared_ptr<ObjectEntry> erase(const ObjectID& id);

  std::byte* base() const { return core_->arena_.base(); }
  std::uint64_t capacity() const { return core_->alloc_.capacity(); }
  // Calls f for every object (on a snapshot, so f may touch the store).
  void for_each(const std::function<void(const std::shared_ptr<ObjectEntry>&)>& f) const;
  std::uint64_t used() const;
  std::size_t count() const;
  const std::string& placement() const { return core_->arena_.placement(); }

 private:
  explicit ObjectStore(std::shared_ptr<StoreCore> core) : core_(std::move(core)) {}
  std::shared_ptr<StoreCore> core_;
  mutable std::mutex mu_;  // guards objects_; taken before core_->mu_
  std::unordered_map<ObjectID, std::shared_ptr<ObjectEntry>> objects_;
};

}  // namespace hoplite::store
