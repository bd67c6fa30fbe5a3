#include "auth/handshake.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/log.h"

namespace hoplite::auth {

Nonce fresh_nonce() {
  Nonce n{};
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) {
    // Without randomness every proof could be replayed: no safe way on.
    LOG_ERROR("auth: RAND_bytes failed; cannot make a nonce");
    std::abort();
  }
  return n;
}

Mac Key::mac(Role role, const Transcript& t) const {
  // "hoplite-auth-1" | role u8 | channel u8 | dialer u32 | acceptor u32 | Nd | Na
  static constexpr char kLabel[] = "hoplite-auth-1";
  std::vector<std::uint8_t> msg(kLabel, kLabel + sizeof kLabel - 1);
  msg.push_back(static_cast<std::uint8_t>(role));
  msg.push_back(t.channel);
  for (Rank r : {t.dialer, t.acceptor}) {
    for (int i = 0; i < 4; ++i) msg.push_back(static_cast<std::uint8_t>(r >> (8 * i)));
  }
  msg.insert(msg.end(), t.dialer_nonce.begin(), t.dialer_nonce.end());
  msg.insert(msg.end(), t.acceptor_nonce.begin(), t.acceptor_nonce.end());
  Mac out{};
  unsigned int len = 0;
  // An empty token (an explicitly unauthenticated cluster) still runs the
  // same exchange; HMAC wants a non-null key pointer even for zero bytes.
  static const std::uint8_t kEmpty = 0;
  const void* k = token_.empty() ? static_cast<const void*>(&kEmpty) : token_.data();
  if (!HMAC(EVP_sha256(), k, static_cast<int>(token_.size()), msg.data(), msg.size(), out.data(), &len) ||
      len != out.size()) {
    LOG_ERROR("auth: HMAC-SHA256 failed");
    std::abort();
  }
  return out;
}

bool Key::verify(Role role, const Transcript& t, const Mac& m) const {
  Mac want = mac(role, t);
  return CRYPTO_memcmp(want.data(), m.data(), want.size()) == 0;
}

Dialer::Dialer(const Key& key, std::uint8_t channel, Rank me, Rank expected)
    : key_(key), expected_(expected) {
  t_.channel = channel;
  t_.dialer = me;
  t_.dialer_nonce = fresh_nonce();
}

Result<Mac> Dialer::answer(Rank acceptor, const Nonce& acceptor_nonce, const Mac& acceptor_mac) {
  if (expected_ != kAnyRank && acceptor != expected_) {
    return peer_failure("dialled rank " + std::to_string(expected_) + " but rank " +
                        std::to_string(acceptor) + " answered");
  }
  t_.acceptor = acceptor;
  t_.acceptor_nonce = acceptor_nonce;
  if (!key_.verify(Key::Role::kAcceptor, t_, acceptor_mac))
    return peer_failure("the peer could not prove it holds the cluster token");
  return key_.mac(Key::Role::kDialer, t_);
}

Acceptor::Acceptor(const Key& key, std::uint8_t channel, Rank me) : key_(key) {
  t_.channel = channel;
  t_.acceptor = me;
}

Acceptor::Challenge Acceptor::challenge(Rank dialer, const Nonce& dialer_nonce) {
  t_.dialer = dialer;
  t_.dialer_nonce = dialer_nonce;
  t_.acceptor_nonce = fresh_nonce();
  challenged_ = true;
  return {t_.acceptor, t_.acceptor_nonce, key_.mac(Key::Role::kAcceptor, t_)};
}

Status Acceptor::verify(const Mac& proof) const {
  if (!challenged_) return protocol_error("proof before hello");
  if (!key_.verify(Key::Role::kDialer, t_, proof))
    return peer_failure("wrong cluster token (the proof does not check)");
  return {};
}

}  // namespace hoplite::auth
