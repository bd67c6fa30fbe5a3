// The UCX data plane's peer bytes (transport/ucx/am_headers.h): the get
// request and get data active-message headers, and the region key.
//
// Input: kind u8 (0 get header, 1 data header, 2 region key), then the bytes.
// Every accepted input must round-trip byte for byte.
#include "fuzz/fuzz_common.h"
#include "transport/ucx/am_headers.h"

namespace {

using namespace hoplite;  // NOLINT(google-build-using-namespace)
namespace am = transport::ucx::am;

void get_header(fuzz::Bytes in) {
  auto h = am::decode_get(in);
  if (!h.is_ok()) return fuzz::check_rejection(h.status());
  FUZZ_CHECK(in.size() == am::kGetHeaderSize);
  FUZZ_CHECK(fuzz::same(am::encode_get(h.value()), in));
}

void data_header(fuzz::Bytes in) {
  auto h = am::decode_data(in);
  if (!h.is_ok()) return fuzz::check_rejection(h.status());
  FUZZ_CHECK(in.size() == am::kDataHeaderSize);
  FUZZ_CHECK(fuzz::same(am::encode_data(h.value()), in));
}

void region_key(fuzz::Bytes in) {
  auto k = am::decode_region_key(in);
  if (!k.is_ok()) return fuzz::check_rejection(k.status());
  FUZZ_CHECK(k->rkey.size() <= am::kMaxRkey);
  FUZZ_CHECK(fuzz::same(am::encode_region_key(k.value()), in));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  fuzz::Bytes in(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: get_header(in); break;
    case 1: data_header(in); break;
    default: region_key(in); break;
  }
  return 0;
}
