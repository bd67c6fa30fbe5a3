// The task runtime's messages (src/task/task_messages.h), which any member
// may send to any other's runtime: decode() of arbitrary bytes either fails
// with a Status or gives a message that encodes back to the same bytes.
//
// Input: the payload as it arrives on the task channel.
#include "task/task_messages.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto m = hoplite::task::decode({data, size});
  if (!m.is_ok()) {
    FUZZ_CHECK(!m.status().message().empty());
    return 0;
  }
  auto again = hoplite::task::encode(m.value());
  FUZZ_CHECK(again.size() == size && std::equal(again.begin(), again.end(), data));
  return 0;
}
