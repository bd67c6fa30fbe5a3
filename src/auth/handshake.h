// Handshake: mutual challenge-response over the cluster token.
//
// Both planes (control and data) open every connection with it, so a peer
// proves it holds the token before anything it sends is believed, and the
// token itself never crosses the wire:
//
//   dialer   -> Hello     {rank d, nonce Nd}
//   acceptor -> Challenge {rank a, nonce Na, HMAC(K, "accept" | T)}
//   dialer   -> Proof     {HMAC(K, "dial" | T)}
//
// T binds the plane, both ranks and both nonces, so a proof is good for one
// connection only and a role's MAC cannot be reflected as the other's. The
// dialer checks the acceptor's MAC before it sends anything but its hello
// (so an impostor holding the bootstrap port learns nothing); the acceptor
// dispatches nothing before the proof checks. K is HMAC-SHA256 keyed by the
// token (OpenSSL's libcrypto); comparisons are constant-time.
//
// What it does not give: the token is per cluster, so a member can claim
// another member's rank. The rank rules (control/sender_rules.h) keep a
// connection to the rank it claimed, which confines bugs and stale peers,
// not a malicious member holding the token.
//
// Thread-safety: value types; Key is immutable after construction.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "hoplite/status.h"

namespace hoplite::auth {

inline constexpr std::size_t kNonceSize = 32;
inline constexpr std::size_t kMacSize = 32;
using Nonce = std::array<std::uint8_t, kNonceSize>;
using Mac = std::array<std::uint8_t, kMacSize>;
using Rank = std::uint32_t;
inline constexpr Rank kAnyRank = 0xffffffffu;

// Fresh random bytes from the OS's CSPRNG (RAND_bytes).
[[nodiscard]] Nonce fresh_nonce();

// The cluster secret as an HMAC key.
class Key {
 public:
  explicit Key(std::string token) : token_(std::move(token)) {}
  enum class Role : std::uint8_t { kAcceptor = 1, kDialer = 2 };
  struct Transcript {
    std::uint8_t channel = 0;  // control 0, data 1
    Rank dialer = kAnyRank;
    Rank acceptor = kAnyRank;
    Nonce dialer_nonce{};
    Nonce acceptor_nonce{};
  };
  [[nodiscard]] Mac mac(Role role, const Transcript& t) const;
  // Constant-time (CRYPTO_memcmp).
  [[nodiscard]] bool verify(Role role, const Transcript& t, const Mac& m) const;

 private:
  std::string token_;
};

// The dialing side of one connection.
class Dialer {
 public:
  // `expected` is the rank we meant to reach (kAnyRank: a tool that does
  // not care which member answers).
  Dialer(const Key& key, std::uint8_t channel, Rank me, Rank expected);
  Rank me() const { return t_.dialer; }
  const Nonce& nonce() const { return t_.dialer_nonce; }
  // The acceptor's challenge: the proof to send back, or why the acceptor
  // is not who we dialled or does not hold the token.
  [[nodiscard]] Result<Mac> answer(Rank acceptor, const Nonce& acceptor_nonce, const Mac& acceptor_mac);

 private:
  const Key& key_;
  Rank expected_;
  Key::Transcript t_;
};

// The accepting side of one connection.
class Acceptor {
 public:
  Acceptor(const Key& key, std::uint8_t channel, Rank me);
  struct Challenge {
    Rank rank;
    Nonce nonce;
    Mac mac;
  };
  // The dialer's hello (its claimed rank and nonce): our challenge.
  [[nodiscard]] Challenge challenge(Rank dialer, const Nonce& dialer_nonce);
  // The dialer's proof: ok when it holds the token.
  [[nodiscard]] Status verify(const Mac& proof) const;
  bool challenged() const { return challenged_; }
  Rank peer() const { return t_.dialer; }

 private:
  const Key& key_;
  Key::Transcript t_;
  bool challenged_ = false;
};

}  // namespace hoplite::auth
