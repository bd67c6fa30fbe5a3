// Mailbox: carries opaque application messages (AppMessage) between the
// layers that run above two nodes, such as the task runtime.
//
// A message goes over the control connection to `to`, so per sender it
// arrives in order, and it is lost if that connection breaks (the layer
// above recovers through membership events). The receiver hands it to the
// subscriber of its channel on a thread of its own, in arrival order, with
// the rank the connection authenticated as. A message for a channel nobody
// subscribed yet is kept (up to a bound) until someone does: a runtime
// starts after its node, and peers may already be sending to it.
//
// Owns: the subscribers, the undelivered messages, the delivery thread;
// the AppMessage message.
// Thread-binding: subscribe() and send() from any thread; delivery on the
// callback thread; the rest on the progress thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <span>
#include <vector>

#include "hoplite/status.h"
#include "node/callback_thread.h"
#include "node/context.h"

namespace hoplite::node {

class Mailbox final : public Component {
 public:
  using Handler = std::function<void(int from, std::span<const std::byte> payload)>;
  // What waits for a subscriber, per channel.
  static constexpr std::size_t kMaxHeldMessages = 4096;
  static constexpr std::uint64_t kMaxHeldBytes = 64ull << 20;

  explicit Mailbox(NodeContext& ctx);
  ~Mailbox() override;

  // Replaces the channel's subscriber; held messages go to it first.
  void subscribe(std::uint16_t channel, Handler h);
  // Removes the subscriber and returns once no delivery to it runs any
  // more (later messages are held again). Not from the delivery thread.
  void unsubscribe(std::uint16_t channel);
  [[nodiscard]] Status send(int to, std::uint16_t channel, std::span<const std::byte> payload);

  // Messages dropped: no subscriber and the hold was full.
  std::uint64_t dropped() const;

 private:
  struct Held {
    int from;
    std::vector<std::uint8_t> payload;
  };
  void deliver(int from, std::uint16_t channel, std::vector<std::uint8_t> payload);

  NodeContext& ctx_;
  mutable std::mutex mu_;  // guards the members below
  std::map<std::uint16_t, Handler> handlers_;
  std::map<std::uint16_t, std::deque<Held>> held_;
  std::map<std::uint16_t, std::uint64_t> held_bytes_;
  std::uint64_t dropped_ = 0;
  // Last: destroyed (joined) first, while what it runs still exists.
  std::unique_ptr<CallbackThread> delivery_;
};

}  // namespace hoplite::node
