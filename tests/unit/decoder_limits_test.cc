// What a decoder may allocate for bytes it has not seen yet. A count read
// from the wire (Table peers, composite parts, reduce upstreams) must be
// backed by the bytes that follow before the decoder sizes anything by it;
// otherwise a tiny frame makes a node allocate megabytes, and a Table is
// decoded even before its sender's hello is checked.
//
// The test binary replaces the global operator new to see the largest
// single allocation made while one decode runs.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <new>
#include <span>
#include <vector>

#include "control/messages.h"
#include "hoplite/status.h"

namespace {

bool g_tracking = false;
std::size_t g_largest = 0;

}  // namespace

// GCC (under -fsanitize=address at -O1) sees free() on what operator new
// returned and warns; here both are ours and both use malloc/free.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (g_tracking && n > g_largest) g_largest = n;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace hoplite {
namespace {

namespace ctl = control;
using Bytes = std::vector<std::uint8_t>;

// The largest allocation made by decoding `payload` as `type`, which must
// fail with a protocol error.
std::size_t LargestAllocationOfFailedDecode(ctl::MsgType type, const Bytes& payload) {
  g_largest = 0;
  g_tracking = true;
  auto r = ctl::decode(static_cast<std::uint8_t>(type), payload);
  g_tracking = false;
  EXPECT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kProtocol);
  return g_largest;
}

Bytes U32(std::uint32_t v) {
  return Bytes{static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
               static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)};
}

// Error messages are the only allocations left; a few KiB bounds them.
constexpr std::size_t kSmall = 4096;

// Found through fuzz/table (fuzz/corpus/table/crash-table-count-without-peers):
// a 4-byte count of 15637 peers with no peers after it allocated 1.5 MB of
// empty PeerInfo (65536 peers: 6 MB) before failing.
TEST(DecoderLimits, TableCountWithoutThePeersAllocatesNothingLarge) {
  EXPECT_LE(LargestAllocationOfFailedDecode(ctl::MsgType::kTable, U32(ctl::kMaxWorld)), kSmall);
}

TEST(DecoderLimits, TableCountLargerThanItsBytesIsRejected) {
  // Two peers' worth of bytes (empty strings: 14 bytes each) under a count of 3.
  Bytes p = U32(3);
  p.resize(p.size() + 2 * 14, 0);
  auto r = ctl::decode(static_cast<std::uint8_t>(ctl::MsgType::kTable), p);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kProtocol);
  // And with the third peer (and an empty failed list and barrier 0) it
  // decodes.
  p.resize(p.size() + 14 + 4 + 8, 0);
  auto ok = ctl::decode(static_cast<std::uint8_t>(ctl::MsgType::kTable), p);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(std::get<ctl::Table>(ok.value()).peers.size(), 3u);
}

TEST(DecoderLimits, CompositeCountWithoutThePartsAllocatesNothingLarge) {
  // id, request, size, then a part count of kMaxParts and no parts.
  Bytes p(20 + 8 + 8, 0);
  Bytes n = U32(ctl::kMaxParts);
  p.insert(p.end(), n.begin(), n.end());
  EXPECT_LE(LargestAllocationOfFailedDecode(ctl::MsgType::kPublishComposite, p), kSmall);
}

TEST(DecoderLimits, EmptyListsStillDecode) {
  // A composite of zero parts tiles an object of size 0.
  Bytes p(20 + 8 + 8, 0);
  Bytes n = U32(0);
  p.insert(p.end(), n.begin(), n.end());
  EXPECT_TRUE(ctl::decode(static_cast<std::uint8_t>(ctl::MsgType::kPublishComposite), p).is_ok());
  ctl::ReduceTask leaf;
  Bytes f = ctl::encode(leaf);
  EXPECT_TRUE(ctl::decode(static_cast<std::uint8_t>(ctl::MsgType::kReduceTask),
                          std::span<const std::uint8_t>(f).subspan(8))
                  .is_ok());
}

}  // namespace
}  // namespace hoplite
