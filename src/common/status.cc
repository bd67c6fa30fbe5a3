#include "hoplite/status.h"

namespace hoplite {

std::string_view to_string(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kAlreadyExists: return "already exists";
    case StatusCode::kTimeout: return "timeout";
    case StatusCode::kCapacity: return "capacity";
    case StatusCode::kPeerFailure: return "peer failure";
    case StatusCode::kProtocol: return "protocol error";
    case StatusCode::kCancelled: return "cancelled";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  std::string s(hoplite::to_string(code_));
  if (!message_.empty()) s += ": " + message_;
  return s;
}

}  // namespace hoplite
