// ObjectWriter: a streaming put. The object is reserved at its final size,
// published at once, and receivers may pull every byte the writer has
// declared with publish() while the rest is still being produced.
//
// Ownership: move-only handle; destroying an unsealed writer aborts the
// object (it is removed locally and from the directory).
// Thread-safety: thread-compatible (one writer thread); it talks to the
// node's progress thread through thread-safe hand-off.
#pragma once

#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <span>

#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite {

class Node;
namespace detail {
struct WriterState;
}

class ObjectWriter {
 public:
  ObjectWriter() = default;
  explicit ObjectWriter(std::shared_ptr<detail::WriterState> s) : s_(std::move(s)) {}
  ObjectWriter(ObjectWriter&&) noexcept = default;
  ObjectWriter& operator=(ObjectWriter&&) noexcept;
  ~ObjectWriter();

  const ObjectID& id() const;
  std::span<std::byte> data() const;
  // Bytes [0, bytes) are written and may be served. Monotonic.
  [[nodiscard]] Status publish(std::uint64_t bytes);
  // The object is complete; the writer becomes empty. Returns once the
  // directory knows it, so from then on any node's get finds it (a
  // must_exist get too).
  [[nodiscard]] Status seal();
  // The same without waiting for the directory's answer (one round trip):
  // the future holds it. Gets anywhere still find the object (a get that
  // arrives at the directory first waits for it), and so do reduces and
  // later messages from this node, which reach the directory after the
  // seal; only a must_exist get elsewhere may miss it until the future is
  // ready.
  std::future<Status> seal_async();

 private:
  void abort();
  std::shared_ptr<detail::WriterState> s_;
};

}  // namespace hoplite
