// The cluster token: where a node and the launcher find the shared secret.
//
// Policy (docs/security.md): HOPLITE_TOKEN, else the file HOPLITE_TOKEN_FILE,
// else ~/.hoplite/token when it exists. A token file must be a regular file
// owned by the user and readable by nobody else: HPC clusters share home
// directories, and a world-readable token is no secret. hoplite-run creates
// the default file when it is missing. No token at all is an error unless the
// cluster is explicitly unauthenticated (HOPLITE_INSECURE=1).
//
// Thread-safety: pure functions over the file system; no shared state.
#pragma once

#include <string>

#include "hoplite/status.h"

namespace hoplite::auth {

// ~/.hoplite/token ($HOME, else the passwd entry); empty if neither is known.
std::string default_token_path();

// The token held in `path`: the first line, surrounding white space removed.
// not_found if the file does not exist; invalid_argument if it is not a
// regular file, belongs to another user, is readable or writable by group or
// others, is empty or larger than 4 KiB.
[[nodiscard]] Result<std::string> read_token_file(const std::string& path);

// Reads `path`, or creates it (and its directory, mode 0700) holding a fresh
// random token, mode 0600, when it does not exist. Creation is atomic (the
// file appears complete or not at all), so two launchers starting at once
// end up with the same token.
[[nodiscard]] Result<std::string> read_or_create_token_file(const std::string& path);

// 32 random bytes as 64 hex digits.
[[nodiscard]] Result<std::string> random_token();

}  // namespace hoplite::auth
