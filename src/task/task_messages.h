// The task runtime's messages, carried as node application messages on
// channel kTaskChannel: an owner's Submit to the task's node, the node's
// Done back to the owner, and Failed from the node of a failed task to
// every member (whoever waits on its result, or runs a task taking it,
// ends with the error).
//
// decode() validates every length before it trusts it.
// Thread-safety: pure functions over value types.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite::task {

inline constexpr std::uint16_t kTaskChannel = 1;
inline constexpr std::uint32_t kMaxName = 256;
inline constexpr std::uint32_t kMaxError = 4096;
inline constexpr std::uint32_t kMaxArgs = 65536;

struct WireArg {
  bool is_ref = false;
  ObjectID id;
  std::int32_t producer = -1;
  std::vector<std::uint8_t> bytes;  // a value argument
};
struct Submit {
  std::uint64_t task = 0;
  std::uint32_t attempt = 0;
  ObjectID result;
  std::string function;
  std::uint8_t transfer = 0;  // a TransferPolicy
  std::vector<WireArg> args;
};
struct Done {
  std::uint64_t task = 0;
  std::uint32_t attempt = 0;
  ObjectID result;
  std::uint16_t code = 0;  // a StatusCode; 0: the result is written
  std::string message;
  std::uint64_t size = 0;  // the result's size
};
struct Failed {
  ObjectID result;
  std::uint16_t code = 0;
  std::string message;
};
using TaskMessage = std::variant<Submit, Done, Failed>;

std::vector<std::uint8_t> encode(const TaskMessage& m);
[[nodiscard]] Result<TaskMessage> decode(std::span<const std::uint8_t> payload);

}  // namespace hoplite::task
