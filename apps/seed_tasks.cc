#include "apps/seed_tasks.h"

#include <algorithm>
#include <cstring>

namespace hoplite::apps {

bool is_prime(std::uint64_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (std::uint64_t d = 3; d <= n / d; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

List primes_of(const List& in) {
  List out;
  for (auto v : in) {
    if (is_prime(v)) out.push_back(v);
  }
  return out;
}

List multiply(const List& a, const List& b) {
  List out(std::min(a.size(), b.size()));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] * b[i];
  return out;
}

std::span<const std::byte> bytes_of(const List& l) {
  return std::as_bytes(std::span(l));
}

List list_of(std::span<const std::byte> b) {
  List out(b.size() / sizeof(std::uint64_t));
  if (!out.empty()) std::memcpy(out.data(), b.data(), out.size() * sizeof(std::uint64_t));
  return out;
}

List seed_list(std::mt19937_64& rng, std::uint64_t prime) {
  List l(500 + rng() % 101);
  for (auto& v : l) v = 2 + rng() % 999998;
  const std::size_t inserts = 1 + rng() % 20;
  for (std::size_t i = 0; i < inserts; ++i) l[rng() % l.size()] = prime;
  return l;
}

namespace {

Status put_list(TaskContext& ctx, const List& l) {
  return ctx.set_result(bytes_of(l));
}

}  // namespace

TaskFunctions seed_tasks() {
  TaskFunctions f;
  f["primes"] = [](TaskContext& ctx) -> Status {
    if (ctx.arg_count() != 1) return invalid_argument("primes takes one list");
    auto a = ctx.arg(0);
    if (!a.is_ok()) return a.status();
    return put_list(ctx, primes_of(list_of(a->bytes())));
  };
  f["multiply"] = [](TaskContext& ctx) -> Status {
    if (ctx.arg_count() != 2) return invalid_argument("multiply takes two lists");
    auto a = ctx.arg(0);
    if (!a.is_ok()) return a.status();
    auto b = ctx.arg(1);
    if (!b.is_ok()) return b.status();
    return put_list(ctx, multiply(list_of(a->bytes()), list_of(b->bytes())));
  };
  f["product"] = [](TaskContext& ctx) -> Status {
    if (ctx.arg_count() == 0) return invalid_argument("product takes at least one list");
    List acc;
    bool first = true;
    for (std::size_t n = 0; n < ctx.arg_count(); ++n) {
      auto i = ctx.next_ready();
      if (!i.is_ok()) return i.status();
      auto v = ctx.arg(*i);
      if (!v.is_ok()) return v.status();
      List l = list_of(v->bytes());
      acc = first ? std::move(l) : multiply(acc, l);
      first = false;
    }
    return put_list(ctx, acc);
  };
  return f;
}

}  // namespace hoplite::apps
