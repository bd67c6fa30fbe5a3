// The handshake's MACs (auth/handshake.h) and the sender rules
// (control/sender_rules.h): pure code, checked without sockets.

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "auth/handshake.h"
#include "control/messages.h"
#include "control/sender_rules.h"

namespace hoplite {
namespace {

namespace ctl = control;

ctl::Publish PublishAs(const ObjectID& id, ctl::Rank r) {
  ctl::Publish p;
  p.id = id;
  p.size = 1;
  p.rank = r;
  return p;
}
using auth::Acceptor;
using auth::Dialer;
using auth::Key;

constexpr std::uint8_t kControl = 0;
constexpr std::uint8_t kData = 1;

// One complete exchange; returns the acceptor's verdict on the proof.
struct Exchange {
  Status dialer_check;
  Status acceptor_check;
};
Exchange Exchanged(const Key& dialer_key, const Key& acceptor_key, auth::Rank dialer_rank,
                   auth::Rank expected, auth::Rank acceptor_rank, std::uint8_t channel = kControl) {
  Dialer d(dialer_key, channel, dialer_rank, expected);
  Acceptor a(acceptor_key, channel, acceptor_rank);
  auto ch = a.challenge(d.me(), d.nonce());
  auto proof = d.answer(ch.rank, ch.nonce, ch.mac);
  if (!proof.is_ok()) return {proof.status(), protocol_error("no proof sent")};
  return {Status(), a.verify(proof.value())};
}

TEST(Handshake, SameTokenAuthenticatesBothWays) {
  Key k("cluster-secret");
  auto r = Exchanged(k, k, 3, 5, 5);
  EXPECT_TRUE(r.dialer_check.is_ok()) << r.dialer_check.to_string();
  EXPECT_TRUE(r.acceptor_check.is_ok()) << r.acceptor_check.to_string();
}

TEST(Handshake, DialerRefusesAnAcceptorWithoutTheToken) {
  // An impostor holding the bootstrap port: the dialer must notice before
  // it sends anything but its hello.
  auto r = Exchanged(Key("cluster-secret"), Key("guess"), 3, 0, 0);
  EXPECT_EQ(r.dialer_check.code(), StatusCode::kPeerFailure);
}

TEST(Handshake, AcceptorRefusesADialerWithoutTheToken) {
  Key good("cluster-secret"), bad("guess");
  Dialer d(bad, kControl, 3, auth::kAnyRank);
  Acceptor a(good, kControl, 0);
  auto ch = a.challenge(d.me(), d.nonce());
  // The dialer with the wrong key cannot check the acceptor's MAC...
  EXPECT_FALSE(d.answer(ch.rank, ch.nonce, ch.mac).is_ok());
  // ...and whatever it sends as a proof does not check either.
  auth::Mac forged = bad.mac(Key::Role::kDialer, {kControl, 3, 0, d.nonce(), ch.nonce});
  EXPECT_EQ(a.verify(forged).code(), StatusCode::kPeerFailure);
}

TEST(Handshake, AcceptorsMacCannotBeReflectedAsAProof) {
  Key k("cluster-secret");
  Dialer d(k, kControl, 3, 0);
  Acceptor a(k, kControl, 0);
  auto ch = a.challenge(d.me(), d.nonce());
  // Sending the acceptor's own MAC back must fail: the roles are bound in.
  EXPECT_FALSE(a.verify(ch.mac).is_ok());
}

TEST(Handshake, ProofIsBoundToNoncesRanksAndPlane) {
  Key k("cluster-secret");
  Dialer d(k, kControl, 3, 0);
  Acceptor a1(k, kControl, 0);
  auto ch1 = a1.challenge(d.me(), d.nonce());
  auto proof = d.answer(ch1.rank, ch1.nonce, ch1.mac);
  ASSERT_TRUE(proof.is_ok());
  // Replayed to a second connection (fresh acceptor nonce): refused.
  Acceptor a2(k, kControl, 0);
  (void)a2.challenge(d.me(), d.nonce());
  EXPECT_FALSE(a2.verify(proof.value()).is_ok());
  // The same nonces claiming another rank: refused.
  Acceptor a3(k, kControl, 0);
  (void)a3.challenge(4, d.nonce());
  EXPECT_FALSE(a3.verify(proof.value()).is_ok());
  // A data-plane acceptor does not take a control-plane proof.
  Key::Transcript t{kControl, 3, 0, d.nonce(), ch1.nonce};
  t.channel = kData;
  EXPECT_FALSE(k.verify(Key::Role::kDialer, t, proof.value()));
}

TEST(Handshake, DialerRefusesTheWrongRankAnswering) {
  Key k("cluster-secret");
  auto r = Exchanged(k, k, 3, 5, 6);
  EXPECT_EQ(r.dialer_check.code(), StatusCode::kPeerFailure);
  EXPECT_NE(r.dialer_check.message().find("rank 6"), std::string::npos) << r.dialer_check.message();
  // A tool accepts any member.
  EXPECT_TRUE(Exchanged(k, k, ctl::kNoRank, auth::kAnyRank, 6).acceptor_check.is_ok());
}

TEST(Handshake, ProofBeforeHelloIsAProtocolError) {
  Key k("s");
  Acceptor a(k, kControl, 0);
  EXPECT_EQ(a.verify(auth::Mac{}).code(), StatusCode::kProtocol);
}

TEST(Handshake, NoncesAreFresh) {
  std::set<auth::Nonce> seen;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(seen.insert(auth::fresh_nonce()).second);
}

TEST(Handshake, EmptyTokenStillRunsTheSameExchange) {
  // An explicitly insecure cluster: everybody "knows" the empty token.
  Key k("");
  auto r = Exchanged(k, k, 1, 0, 0);
  EXPECT_TRUE(r.acceptor_check.is_ok());
  EXPECT_FALSE(Exchanged(k, Key("x"), 1, 0, 0).dialer_check.is_ok());
}

// ------------------------------------------------------------ sender rules

TEST(SenderRules, MessagesMustNameTheConnectionsRank) {
  const ObjectID id = ObjectID::from_name("x");
  const ctl::Rank from = 2;
  // Each names rank 3 while the connection is rank 2.
  std::vector<ctl::Message> forged = {
      ctl::Register{3, {}},  ctl::Rejoin{3, {}},    ctl::Heartbeat{3, 0},   ctl::Barrier{1, 3},
      PublishAs(id, 3),      ctl::Unpublish{id, 3}, ctl::Lookup{id, 1, 3},  ctl::Locate{id, 1, 3},
      ctl::Remove{id, 1, 3}, ctl::Watch{id, 3, 1},  ctl::Unwatch{id, 3, 1},
  };
  for (const auto& m : forged) {
    auto st = ctl::check_sender(m, from, {});
    EXPECT_EQ(st.code(), StatusCode::kProtocol) << ctl::type_name(m);
    EXPECT_NE(st.message().find("rank 3"), std::string::npos) << st.message();
  }
  // The same messages naming rank 2 are fine.
  std::vector<ctl::Message> honest = {
      ctl::Register{2, {}},  ctl::Heartbeat{2, 0}, PublishAs(id, 2),
      ctl::Lookup{id, 1, 2}, ctl::Watch{id, 2, 1},
  };
  for (const auto& m : honest) EXPECT_TRUE(ctl::check_sender(m, from, {}).is_ok()) << ctl::type_name(m);
}

TEST(SenderRules, BootstrapMessagesComeOnlyFromTheBootstrap) {
  for (const ctl::Message& m : {ctl::Message{ctl::Table{}}, ctl::Message{ctl::PeerUpdate{1, true, {}}},
                                ctl::Message{ctl::BarrierDone{7}}}) {
    EXPECT_TRUE(ctl::check_sender(m, 0, {}).is_ok()) << ctl::type_name(m);
    EXPECT_EQ(ctl::check_sender(m, 4, {}).code(), StatusCode::kProtocol) << ctl::type_name(m);
  }
}

TEST(SenderRules, BarrierReleasesFollowTheLeaderNotTheBootstrap) {
  // Rank 0 died: rank 1 leads the barriers, rank 0 still names the bootstrap.
  const ctl::Roles roles{0, 1};
  EXPECT_TRUE(ctl::check_sender(ctl::BarrierDone{3}, 1, roles).is_ok());
  EXPECT_EQ(ctl::check_sender(ctl::BarrierDone{3}, 0, roles).code(), StatusCode::kProtocol);
  EXPECT_EQ(ctl::check_sender(ctl::Table{}, 1, roles).code(), StatusCode::kProtocol);
}

TEST(SenderRules, TheBootstrapRoleMovesWithTheLeaderAndNeverAnnouncesDeaths) {
  // Rank 0 died: rank 1 takes the rejoins and tells the others.
  const ctl::Roles roles{1, 1};
  EXPECT_TRUE(ctl::check_sender(ctl::PeerUpdate{3, true, {}}, 1, roles).is_ok());
  EXPECT_TRUE(ctl::check_sender(ctl::Table{}, 1, roles).is_ok());
  EXPECT_EQ(ctl::check_sender(ctl::PeerUpdate{3, true, {}}, 2, roles).code(), StatusCode::kProtocol);
  // A rank below the leader we know may lead already (rank 0 came back).
  EXPECT_TRUE(ctl::check_sender(ctl::PeerUpdate{3, true, {}}, 0, roles).is_ok());
  // Each member detects failures itself: not even the leader says who died.
  EXPECT_EQ(ctl::check_sender(ctl::PeerUpdate{2, false, {}}, 1, roles).code(), StatusCode::kProtocol);
  // Any member may say where the leader is; a tool may not.
  EXPECT_TRUE(ctl::check_sender(ctl::RejoinAt{1, {}}, 2, roles).is_ok());
  EXPECT_EQ(ctl::check_sender(ctl::RejoinAt{1, {}}, ctl::kNoRank, roles).code(), StatusCode::kProtocol);
}

TEST(SenderRules, ToolsMayNotChangeAnything) {
  const ObjectID id = ObjectID::from_name("x");
  for (const ctl::Message& m :
       {ctl::Message{PublishAs(id, ctl::kNoRank)}, ctl::Message{ctl::Remove{id, 1, ctl::kNoRank}},
        ctl::Message{ctl::Delete{id}}, ctl::Message{ctl::ReduceTask{}}, ctl::Message{ctl::Progress{}}}) {
    EXPECT_EQ(ctl::check_sender(m, ctl::kNoRank, {}).code(), StatusCode::kProtocol) << ctl::type_name(m);
  }
}

TEST(SenderRules, ToolsMayAskForDiagnostics) {
  EXPECT_TRUE(ctl::check_sender(ctl::DiagRequest{1}, ctl::kNoRank, {}).is_ok());
  EXPECT_TRUE(ctl::check_sender(ctl::DiagRequest{1}, 3, {}).is_ok());
}

TEST(SenderRules, HandshakeMessagesAfterTheHandshakeAreRefused) {
  for (const ctl::Message& m :
       {ctl::Message{ctl::Hello{}}, ctl::Message{ctl::Challenge{}}, ctl::Message{ctl::Proof{}}})
    EXPECT_EQ(ctl::check_sender(m, 1, {}).code(), StatusCode::kProtocol) << ctl::type_name(m);
}

}  // namespace
}  // namespace hoplite
