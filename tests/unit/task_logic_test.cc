// The task runtime's pure parts: placement and the message codec.
#include <gtest/gtest.h>

#include <algorithm>

#include "task/placement.h"
#include "task/task_messages.h"

namespace hoplite::task {
namespace {

TEST(Placement, LeastOutstandingLiveRank) {
  PlacementInput in;
  in.alive = {true, true, true, true};
  in.outstanding = {3, 1, 2, 1};
  in.rotate = 0;
  EXPECT_EQ(place(in), 1);
  in.rotate = 2;  // the tie between 1 and 3 goes round-robin
  EXPECT_EQ(place(in), 3);
  in.alive[3] = false;
  EXPECT_EQ(place(in), 1);
}

TEST(Placement, NoLiveRank) {
  PlacementInput in;
  in.alive = {false, false};
  in.outstanding = {0, 0};
  EXPECT_EQ(place(in), -1);
}

TEST(Placement, ALargeArgumentDrawsItsTaskUnlessTheHolderIsTooBusy) {
  PlacementInput in;
  in.alive = {true, true, true};
  in.outstanding = {0, 1, 0};
  in.slack = 1;
  in.large_args = {{1, 100 << 20}, {2, 1 << 20}};
  EXPECT_EQ(place(in), 1);  // one task busier than the least busy: within slack
  in.outstanding = {0, 2, 0};
  EXPECT_EQ(place(in), 0);  // too busy: the least busy instead
  in.alive[1] = false;
  in.outstanding = {0, 0, 1};
  EXPECT_EQ(place(in), 2);         // the next largest holder that lives
  in.large_args = {{7, 1 << 30}};  // a rank out of range is ignored
  EXPECT_EQ(place(in), 0);
}

TEST(TaskMessages, RoundTrip) {
  Submit s;
  s.task = (3ull << 48) | 17;
  s.attempt = 2;
  s.result = ObjectID::from_name("r");
  s.function = "primes";
  s.transfer = 1;
  WireArg ref;
  ref.is_ref = true;
  ref.id = ObjectID::from_name("a");
  ref.producer = 4;
  WireArg val;
  val.bytes = {1, 2, 3};
  WireArg unknown;
  unknown.is_ref = true;
  unknown.producer = -1;
  s.args = {ref, val, unknown};
  auto m = decode(encode(s));
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  const auto& d = std::get<Submit>(m.value());
  EXPECT_EQ(d.task, s.task);
  EXPECT_EQ(d.attempt, 2u);
  EXPECT_EQ(d.result, s.result);
  EXPECT_EQ(d.function, "primes");
  EXPECT_EQ(d.transfer, 1);
  ASSERT_EQ(d.args.size(), 3u);
  EXPECT_TRUE(d.args[0].is_ref);
  EXPECT_EQ(d.args[0].id, ref.id);
  EXPECT_EQ(d.args[0].producer, 4);
  EXPECT_FALSE(d.args[1].is_ref);
  EXPECT_EQ(d.args[1].bytes, val.bytes);
  EXPECT_EQ(d.args[2].producer, -1);

  auto done = decode(encode(Done{9, 1, s.result, 6, "lost", 4096}));
  ASSERT_TRUE(done.is_ok());
  EXPECT_EQ(std::get<Done>(done.value()).message, "lost");
  EXPECT_EQ(std::get<Done>(done.value()).size, 4096u);
  auto failed = decode(encode(Failed{s.result, 1, "bad input"}));
  ASSERT_TRUE(failed.is_ok());
  EXPECT_EQ(std::get<Failed>(failed.value()).message, "bad input");
}

TEST(TaskMessages, MalformedInputIsAnError) {
  Submit s;
  s.function = "f";
  s.args.resize(2);
  auto b = encode(s);
  // Every truncation, an unknown type, a trailing byte, a bad policy, a
  // huge argument count, a failure without a code.
  for (std::size_t n = 0; n < b.size(); ++n) {
    auto r = decode(std::span(b).first(n));
    EXPECT_FALSE(r.is_ok()) << n;
  }
  auto extra = b;
  extra.push_back(0);
  EXPECT_FALSE(decode(extra).is_ok());
  auto type = b;
  type[0] = 9;
  EXPECT_EQ(decode(type).status().code(), StatusCode::kProtocol);
  s.transfer = 7;
  EXPECT_FALSE(decode(encode(s)).is_ok());
  s.transfer = 0;
  s.args.clear();
  auto many = encode(s);
  ASSERT_GE(many.size(), 4u);
  // The argument count is the last field: claim 2^32 - 1 arguments.
  std::fill(many.end() - 4, many.end(), std::uint8_t{0xff});
  EXPECT_FALSE(decode(many).is_ok());
  EXPECT_FALSE(decode(encode(Failed{ObjectID::from_name("x"), 0, "no code"})).is_ok());
}

}  // namespace
}  // namespace hoplite::task
