#include "task/task_messages.h"

#include "common/wire.h"

namespace hoplite::task {
namespace {

using wire::WireReader;
using wire::WireWriter;

#define TRY(expr) HOPLITE_RETURN_IF_ERROR(expr)

enum : std::uint8_t { kSubmit = 1, kDone = 2, kFailed = 3 };

void write(WireWriter& w, const Submit& m) {
  w.u8(kSubmit);
  w.u64(m.task);
  w.u32(m.attempt);
  w.id(m.result);
  w.str(m.function);
  w.u8(m.transfer);
  w.u32(static_cast<std::uint32_t>(m.args.size()));
  for (const auto& a : m.args) {
    w.u8(a.is_ref ? 1 : 0);
    if (a.is_ref) {
      w.id(a.id);
      w.u32(static_cast<std::uint32_t>(a.producer));
    } else {
      w.bytes(a.bytes);
    }
  }
}
void write(WireWriter& w, const Done& m) {
  w.u8(kDone);
  w.u64(m.task);
  w.u32(m.attempt);
  w.id(m.result);
  w.u16(m.code);
  w.str(m.message);
  w.u64(m.size);
}
void write(WireWriter& w, const Failed& m) {
  w.u8(kFailed);
  w.id(m.result);
  w.u16(m.code);
  w.str(m.message);
}

Status read_arg(WireReader& r, WireArg& a) {
  std::uint8_t kind;
  TRY(r.u8(kind));
  if (kind > 1) return protocol_error("task argument of kind " + std::to_string(kind));
  a.is_ref = kind == 1;
  if (!a.is_ref) return r.bytes(a.bytes, 4u << 20);
  TRY(r.id(a.id));
  std::uint32_t p;
  TRY(r.u32(p));
  a.producer = static_cast<std::int32_t>(p);
  if (a.producer < -1) return protocol_error("task argument with producer " + std::to_string(a.producer));
  return Status::ok();
}

}  // namespace

std::vector<std::uint8_t> encode(const TaskMessage& m) {
  WireWriter w;
  std::visit([&](const auto& x) { write(w, x); }, m);
  return std::move(w.buffer());
}

Result<TaskMessage> decode(std::span<const std::uint8_t> payload) {
  WireReader r(payload);
  std::uint8_t type;
  TRY(r.u8(type));
  switch (type) {
    case kSubmit: {
      Submit m;
      TRY(r.u64(m.task));
      TRY(r.u32(m.attempt));
      TRY(r.id(m.result));
      TRY(r.str(m.function, kMaxName));
      TRY(r.u8(m.transfer));
      if (m.transfer > 1) return protocol_error("task with transfer policy " + std::to_string(m.transfer));
      std::uint32_t n;
      TRY(r.u32(n));
      // Each argument takes at least 5 bytes (kind and a length).
      if (n > kMaxArgs || n > r.remaining() / 5) {
        return protocol_error("task with " + std::to_string(n) + " arguments in " +
                              std::to_string(r.remaining()) + " bytes");
      }
      m.args.resize(n);
      for (auto& a : m.args) TRY(read_arg(r, a));
      TRY(r.finish());
      return TaskMessage{std::move(m)};
    }
    case kDone: {
      Done m;
      TRY(r.u64(m.task));
      TRY(r.u32(m.attempt));
      TRY(r.id(m.result));
      TRY(r.u16(m.code));
      TRY(r.str(m.message, kMaxError));
      TRY(r.u64(m.size));
      TRY(r.finish());
      return TaskMessage{std::move(m)};
    }
    case kFailed: {
      Failed m;
      TRY(r.id(m.result));
      TRY(r.u16(m.code));
      TRY(r.str(m.message, kMaxError));
      TRY(r.finish());
      if (m.code == 0) return protocol_error("a task failure without an error code");
      return TaskMessage{std::move(m)};
    }
    default: return protocol_error("unknown task message type " + std::to_string(type));
  }
}

}  // namespace hoplite::task
