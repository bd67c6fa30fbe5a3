// ObjectFuture::copy_to, fed by hand the way the node's progress thread
// feeds it (GetState::land, GetState::fulfill): runs that landed are copied
// while waiting; runs of a copy that was given up are copied again from the
// final one; sizes, errors and timeouts.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "hoplite/object_view.h"

namespace hoplite {
namespace {

using std::chrono::milliseconds;

struct Copy {
  std::shared_ptr<std::vector<std::byte>> bytes;
  explicit Copy(std::size_t n, std::uint8_t fill)
      : bytes(std::make_shared<std::vector<std::byte>>(n, std::byte{fill})) {}
  const std::byte* base() const { return bytes->data(); }
  ObjectView view() const { return ObjectView(ObjectID::from_name("x"), base(), bytes->size(), bytes, 1); }
};

std::shared_ptr<detail::GetState> state() {
  auto s = std::make_shared<detail::GetState>();
  s->id = ObjectID::from_name("x");
  s->report_landed = true;
  return s;
}

// Landed runs are taken while copy_to waits: one that times out has copied
// them (and only them); a later one on the same buffer ends with the whole
// object. Runs that land while it waits on another thread are merged and
// copied too.
TEST(ObjectFutureCopyTo, LandedRunsAreCopiedWhileWaiting) {
  auto s = state();
  Copy c(1000, 1);
  std::vector<std::byte> out(1000, std::byte{0});
  s->land(c.bytes, c.base(), 0, 300);
  s->land(c.bytes, c.base(), 300, 200);  // merges with the first
  s->land(c.bytes, c.base(), 700, 100);
  EXPECT_EQ(s->landed.size(), 2u);
  ObjectFuture f(s);
  EXPECT_EQ(f.copy_to(out, milliseconds(1)).code(), StatusCode::kTimeout);
  for (std::size_t i = 0; i < 1000; ++i) {
    const bool landed = i < 500 || (i >= 700 && i < 800);
    ASSERT_EQ(out[i], landed ? std::byte{1} : std::byte{0}) << i;
  }
  std::thread feeder([&] {
    s->land(c.bytes, c.base(), 500, 200);
    std::this_thread::sleep_for(milliseconds(20));
    s->fulfill(c.view());
  });
  EXPECT_TRUE(f.copy_to(out, milliseconds(5000)).is_ok());
  feeder.join();
  for (std::size_t i = 0; i < 1000; ++i) ASSERT_EQ(out[i], std::byte{1}) << i;
}

// A get that starts over lands in a new copy: what came from the old one is
// copied again from the copy the result names.
TEST(ObjectFutureCopyTo, ANewCopyIsCopiedWhole) {
  auto s = state();
  Copy old_copy(64, 3), final_copy(64, 4);
  s->land(old_copy.bytes, old_copy.base(), 0, 32);
  std::vector<std::byte> out(64, std::byte{0});
  std::thread feeder([&] {
    std::this_thread::sleep_for(milliseconds(20));
    s->fulfill(final_copy.view());
  });
  EXPECT_TRUE(ObjectFuture(s).copy_to(out, milliseconds(5000)).is_ok());
  feeder.join();
  for (auto b : out) ASSERT_EQ(b, std::byte{4});
}

TEST(ObjectFutureCopyTo, WrongSizeErrorAndTimeout) {
  {
    auto s = state();
    Copy c(64, 5);
    s->land(c.bytes, c.base(), 0, 64);
    std::vector<std::byte> out(72, std::byte{0x5a});
    s->fulfill(c.view());
    EXPECT_EQ(ObjectFuture(s).copy_to(std::span(out).first(32)).code(), StatusCode::kInvalidArgument);
    for (std::size_t i = 32; i < out.size(); ++i) ASSERT_EQ(out[i], std::byte{0x5a});
  }
  {
    auto s = state();
    s->fulfill(Status(StatusCode::kPeerFailure, "gone"));
    std::vector<std::byte> out(8);
    EXPECT_EQ(ObjectFuture(s).copy_to(out).code(), StatusCode::kPeerFailure);
  }
  {
    auto s = state();
    std::vector<std::byte> out(8);
    EXPECT_EQ(ObjectFuture(s).copy_to(out, milliseconds(20)).code(), StatusCode::kTimeout);
  }
  {
    // Without copy_while_arriving: a plain wait and one copy.
    auto s = std::make_shared<detail::GetState>();
    Copy c(16, 6);
    s->fulfill(c.view());
    std::vector<std::byte> out(16);
    EXPECT_TRUE(ObjectFuture(s).copy_to(out).is_ok());
    for (auto b : out) ASSERT_EQ(b, std::byte{6});
  }
}

}  // namespace
}  // namespace hoplite
