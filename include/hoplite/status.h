// Status and Result<T>: the one error type of the runtime.
//
// Errors are values. A Status carries a code grouped by what failed (the
// group is what recovery code branches on) and a message naming the object,
// peer or size involved. Result<T> is either a T or a non-OK Status.
//
// Thread-safety: value types; distinct objects may be used from any thread.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace hoplite {

// Codes are grouped by what broke, as in UCX: callers that recover branch on
// the group, callers that report print the message.
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,  // the caller passed something wrong (size, id, option)
  kNotFound,         // the object or peer does not exist
  kAlreadyExists,    // an object with this id already exists locally
  kTimeout,          // a wait ran out of time
  kCapacity,         // the store (or a queue) is full
  kPeerFailure,      // a peer died, refused us, or a link broke
  kProtocol,         // a peer sent bytes that violate the wire protocol
  kCancelled,        // the node shut down before the operation completed
  kInternal,         // a bug or an OS call that should not fail
};

[[nodiscard]] std::string_view to_string(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "timeout: get of 3f2a..: no copy after 2000 ms"
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status not_found(std::string m) {
  return {StatusCode::kNotFound, std::move(m)};
}
inline Status timeout_error(std::string m) {
  return {StatusCode::kTimeout, std::move(m)};
}
inline Status capacity_error(std::string m) {
  return {StatusCode::kCapacity, std::move(m)};
}
inline Status peer_failure(std::string m) {
  return {StatusCode::kPeerFailure, std::move(m)};
}
inline Status protocol_error(std::string m) {
  return {StatusCode::kProtocol, std::move(m)};
}
inline Status internal_error(std::string m) {
  return {StatusCode::kInternal, std::move(m)};
}

// Either a value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).is_ok()); }  // NOLINT

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }

  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace hoplite

// Propagates a non-OK Status out of the calling function.
#define HOPLITE_RETURN_IF_ERROR(expr) \
  do {                                \
    ::hoplite::Status _st = (expr);   \
    if (!_st.is_ok()) return _st;     \
  } while (0)
