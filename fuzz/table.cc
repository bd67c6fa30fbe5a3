// The bootstrap table and every message that carries a PeerInfo (Register,
// Rejoin, PeerUpdate, RejoinAt), then each peer's remote key as the data planes parse
// it when the table is installed (Membership::install_table -> add_peer).
//
// Input: kind u8 (Table, Register, Rejoin, PeerUpdate, RejoinAt), then the payload.
#include "fuzz/fuzz_common.h"
#include "transport/tcp/data_frames.h"
#include "transport/ucx/am_headers.h"

namespace {

using namespace hoplite;  // NOLINT(google-build-using-namespace)
namespace tcp = transport::tcp::frames;
namespace am = transport::ucx::am;
using control::MsgType;

constexpr MsgType kKinds[] = {MsgType::kTable, MsgType::kRegister, MsgType::kRejoin, MsgType::kPeerUpdate,
                              MsgType::kRejoinAt};

void check_keys(const control::PeerInfo& p) {
  FUZZ_CHECK(p.host.size() <= control::kMaxString);
  FUZZ_CHECK(p.transport_address.size() <= control::kMaxString);
  FUZZ_CHECK(p.remote_key.size() <= control::kMaxString);
  if (auto k = tcp::decode_region_key(p.remote_key); k.is_ok()) {
    FUZZ_CHECK(k->region == tcp::kRegionId);
    FUZZ_CHECK(fuzz::same(tcp::encode_region_key(k.value()), p.remote_key));
  } else {
    fuzz::check_rejection(k.status());
  }
  if (auto k = am::decode_region_key(p.remote_key); k.is_ok()) {
    FUZZ_CHECK(k->rkey.size() <= am::kMaxRkey);
    FUZZ_CHECK(fuzz::same(am::encode_region_key(k.value()), p.remote_key));
  } else {
    fuzz::check_rejection(k.status());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const MsgType type = kKinds[data[0] % std::size(kKinds)];
  auto m = fuzz::control_round_trip(static_cast<std::uint8_t>(type), fuzz::Bytes(data + 1, size - 1));
  if (!m) return 0;
  if (const auto* t = std::get_if<control::Table>(&*m)) {
    FUZZ_CHECK(!t->peers.empty() && t->peers.size() <= control::kMaxWorld);
    FUZZ_CHECK(t->failed.size() < t->peers.size());
    for (auto f : t->failed) FUZZ_CHECK(f < t->peers.size());
    for (const auto& p : t->peers) check_keys(p);
  } else if (const auto* r = std::get_if<control::Register>(&*m)) {
    check_keys(r->info);
  } else if (const auto* j = std::get_if<control::Rejoin>(&*m)) {
    check_keys(j->info);
  } else if (const auto* a = std::get_if<control::RejoinAt>(&*m)) {
    check_keys(a->info);
  } else {
    check_keys(std::get<control::PeerUpdate>(*m).info);
  }
  return 0;
}
