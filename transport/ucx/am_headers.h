// The UCX data plane's bytes from peers, as pure functions: the headers of
// the two active messages (a get request and its answer) and the region key
// a node publishes in its PeerInfo. No UCX here, so fuzz/ucx_headers.cc
// drives the same functions as ucx_transport.cc without linking UCX.
//
// A header is decoded only when it has exactly its size: UCX hands over the
// header and its length, and a header of another size comes from a peer
// that does not speak this layout.
//
// Thread-safety: pure functions over value types.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "hoplite/object_id.h"
#include "hoplite/status.h"

namespace hoplite::transport::ucx::am {

// id, object, offset, length, requester
inline constexpr std::size_t kGetHeaderSize = 8 + ObjectID::kSize + 8 + 8 + 4;
inline constexpr std::size_t kDataHeaderSize = 8 + 2;  // id, status
inline constexpr std::uint32_t kRegionKind = 2;        // TCP's region key says 1
inline constexpr std::uint32_t kMaxRkey = 1u << 16;

// Receiver -> holder: send me [offset, +length) of your region.
struct GetHeader {
  std::uint64_t id = 0;  // the receiver's, echoed in the answer (random: see ucx_transport.h)
  ObjectID object;       // what the bytes are read as, checked against the holder's grants
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint32_t requester = 0;
};
// Holder -> receiver: the bytes follow as the message's data (none when
// the status is not ok).
struct DataHeader {
  std::uint64_t id = 0;
  std::uint16_t status = 0;  // a StatusCode; 0 = ok
};
struct RegionKey {
  std::uint64_t base = 0;  // the holder's arena address, for rma gets
  std::uint64_t length = 0;
  std::vector<std::uint8_t> rkey;  // ucp_rkey_pack's bytes
};

std::vector<std::uint8_t> encode_get(const GetHeader& h);
[[nodiscard]] Result<GetHeader> decode_get(std::span<const std::uint8_t> header);

std::vector<std::uint8_t> encode_data(const DataHeader& h);
[[nodiscard]] Result<DataHeader> decode_data(std::span<const std::uint8_t> header);

std::vector<std::uint8_t> encode_region_key(const RegionKey& k);
// The layout and the kind (a key of another backend is an error, not junk).
[[nodiscard]] Result<RegionKey> decode_region_key(std::span<const std::uint8_t> key);

}  // namespace hoplite::transport::ucx::am
