// ObjectView: a pinned, read-only, zero-copy view of an object in the local
// store, and ObjectFuture: the result of a get that may still be in flight.
//
// While an ObjectView lives, the object's memory cannot be freed or reused
// (a remove only unlinks it). Copies share the pin.
//
// Thread-safety: ObjectView is a value type. ObjectFuture is thread-safe:
// any thread may wait on it, and it is fulfilled by the node's progress thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite {

class ObjectView {
 public:
  ObjectView() = default;
  ObjectView(ObjectID id, const std::byte* data, std::size_t size, std::shared_ptr<const void> pin,
             int source)
      : id_(id), data_(data), size_(size), pin_(std::move(pin)), source_(source) {}

  const ObjectID& id() const { return id_; }
  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  // The rank this node received the bytes from; -1 when they were local
  // (put here) or inline (served by the directory).
  int source() const { return source_; }

 private:
  ObjectID id_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::shared_ptr<const void> pin_;
  int source_ = -1;
};

namespace detail {
// Bytes of a copy still arriving that are final: [offset, offset + size)
// of the object, at base + offset in the local store, pinned by `pin`.
struct Landed {
  std::shared_ptr<const void> pin;
  const std::byte* base = nullptr;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

// Shared between the caller's future and the node's progress thread.
struct GetState {
  ObjectID id;
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result<ObjectView>> result;     // guarded by mu
  std::vector<std::function<void()>> on_ready;  // guarded by mu
  // GetOptions::copy_while_arriving: what has landed and not yet been
  // taken by copy_to (guarded by mu; adjacent runs of one copy merge, so
  // this stays a few entries long).
  bool report_landed = false;
  std::vector<Landed> landed;

  void land(std::shared_ptr<const void> pin, const std::byte* base, std::uint64_t offset,
            std::uint64_t size) {
    if (size == 0) return;
    {
      std::lock_guard lock(mu);
      if (result) return;
      if (!landed.empty() && landed.back().base == base &&
          landed.back().offset + landed.back().size == offset) {
        landed.back().size += size;
      } else {
        landed.push_back({std::move(pin), base, offset, size});
      }
    }
    cv.notify_all();
  }

  void fulfill(Result<ObjectView> r) {
    std::vector<std::function<void()>> notify;
    {
      std::lock_guard lock(mu);
      if (result) return;
      result.emplace(std::move(r));
      notify.swap(on_ready);
    }
    cv.notify_all();
    for (auto& f : notify) f();
  }
};
}  // namespace detail

class ObjectFuture {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kForever{std::chrono::hours(24 * 365)};

  ObjectFuture() = default;
  explicit ObjectFuture(std::shared_ptr<detail::GetState> s) : s_(std::move(s)) {}

  bool ready() const {
    std::lock_guard lock(s_->mu);
    return s_->result.has_value();
  }
  // Calls `f` once the result is in: at once on this thread if it is, else
  // on the thread that fulfils the get (the node's progress thread), so
  // `f` must only signal (set a flag, notify a condition variable).
  void on_ready(std::function<void()> f) const {
    {
      std::lock_guard lock(s_->mu);
      if (!s_->result) {
        s_->on_ready.push_back(std::move(f));
        return;
      }
    }
    f();
  }
  // The view, the get's error, or a timeout naming the object. A timed-out
  // wait leaves the get running: a later wait may still succeed.
  Result<ObjectView> wait(std::chrono::milliseconds timeout = kForever) const {
    std::unique_lock lock(s_->mu);
    if (!s_->cv.wait_for(lock, timeout, [&] { return s_->result.has_value(); })) {
      return timeout_error("get of " + s_->id.short_hex() + ": no complete copy after " +
                           std::to_string(timeout.count()) + " ms");
    }
    return *s_->result;
  }
  // Waits for the object and copies it into `out`, which must be its size
  // (else kInvalidArgument, and `out` may hold part of it). For a get made
  // with GetOptions::copy_while_arriving the copying happens on this thread
  // while the bytes arrive, run by run, so it ends soon after the last
  // byte lands instead of starting then. A copy_to that times out has
  // copied what landed meanwhile; a later one on the same future and buffer
  // goes on (what the first took is copied again at the end). One thread
  // at a time.
  [[nodiscard]] Status copy_to(std::span<std::byte> out, std::chrono::milliseconds timeout = kForever) const;

 private:
  std::shared_ptr<detail::GetState> s_;
};

}  // namespace hoplite
