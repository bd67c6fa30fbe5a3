#include "transport/ucx/am_headers.h"

#include <string>

#include "common/wire.h"

namespace hoplite::transport::ucx::am {

namespace {

Status exact_size(std::span<const std::uint8_t> header, std::size_t want, const char* what) {
  if (header.size() == want) return {};
  return protocol_error(std::string("ucx: ") + what + " header of " + std::to_string(header.size()) +
                        " bytes, not " + std::to_string(want));
}

}  // namespace

std::vector<std::uint8_t> encode_get(const GetHeader& h) {
  wire::WireWriter w;
  w.u64(h.id);
  w.id(h.object);
  w.u64(h.offset);
  w.u64(h.length);
  w.u32(h.requester);
  return std::move(w.buffer());
}

Result<GetHeader> decode_get(std::span<const std::uint8_t> header) {
  HOPLITE_RETURN_IF_ERROR(exact_size(header, kGetHeaderSize, "get request"));
  wire::WireReader r(header);
  GetHeader h;
  HOPLITE_RETURN_IF_ERROR(r.u64(h.id));
  HOPLITE_RETURN_IF_ERROR(r.id(h.object));
  HOPLITE_RETURN_IF_ERROR(r.u64(h.offset));
  HOPLITE_RETURN_IF_ERROR(r.u64(h.length));
  HOPLITE_RETURN_IF_ERROR(r.u32(h.requester));
  return h;
}

std::vector<std::uint8_t> encode_data(const DataHeader& h) {
  wire::WireWriter w;
  w.u64(h.id);
  w.u16(h.status);
  return std::move(w.buffer());
}

Result<DataHeader> decode_data(std::span<const std::uint8_t> header) {
  HOPLITE_RETURN_IF_ERROR(exact_size(header, kDataHeaderSize, "get data"));
  wire::WireReader r(header);
  DataHeader h;
  HOPLITE_RETURN_IF_ERROR(r.u64(h.id));
  HOPLITE_RETURN_IF_ERROR(r.u16(h.status));
  return h;
}

std::vector<std::uint8_t> encode_region_key(const RegionKey& k) {
  wire::WireWriter w;
  // Sized up front: one allocation, and it keeps GCC 12's -Wstringop-overflow
  // from a false positive on the growing inserts at -O3.
  w.buffer().reserve(4 + 8 + 8 + 4 + k.rkey.size());
  w.u32(kRegionKind);
  w.u64(k.base);
  w.u64(k.length);
  w.bytes(k.rkey);
  return std::move(w.buffer());
}

Result<RegionKey> decode_region_key(std::span<const std::uint8_t> key) {
  wire::WireReader r(key);
  std::uint32_t kind = 0;
  RegionKey k;
  HOPLITE_RETURN_IF_ERROR(r.u32(kind));
  if (kind != kRegionKind) return protocol_error("region key is not a ucx key");
  HOPLITE_RETURN_IF_ERROR(r.u64(k.base));
  HOPLITE_RETURN_IF_ERROR(r.u64(k.length));
  HOPLITE_RETURN_IF_ERROR(r.bytes(k.rkey, kMaxRkey));
  HOPLITE_RETURN_IF_ERROR(r.finish());
  return k;
}

}  // namespace hoplite::transport::ucx::am
