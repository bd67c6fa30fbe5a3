#include "apps/mlp.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace hoplite::apps {

MlpShape mlp_for_bytes(std::uint64_t bytes) {
  MlpShape s;
  s.hidden = std::max<std::size_t>(1, bytes / sizeof(float) / (s.in + s.out));
  return s;
}

std::vector<float> mlp_init(const MlpShape& s, std::uint64_t seed) {
  std::vector<float> w(s.params());
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::normal_distribution<float> n1(0.f, 1.f / std::sqrt(static_cast<float>(s.in)));
  std::normal_distribution<float> n2(0.f, 1.f / std::sqrt(static_cast<float>(s.hidden)));
  for (std::size_t i = 0; i < s.in * s.hidden; ++i) w[i] = n1(rng);
  for (std::size_t i = s.in * s.hidden; i < w.size(); ++i) w[i] = n2(rng);
  return w;
}

float mlp_gradient(const MlpShape& s, const float* w, std::size_t batch, std::uint64_t seed, float* grad) {
  const float* w1 = w;                    // hidden x in
  const float* w2 = w + s.in * s.hidden;  // out x hidden
  float* g1 = grad;
  float* g2 = grad + s.in * s.hidden;
  std::fill(grad, grad + s.params(), 0.f);
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(s.in), h(s.hidden), dh(s.hidden), p(s.out);
  float loss = 0;
  const float scale = 1.f / static_cast<float>(batch);
  for (std::size_t b = 0; b < batch; ++b) {
    for (auto& v : x) v = u(rng);
    // The label: which block of inputs has the largest sum.
    std::size_t label = 0;
    float best = -1e30f;
    const std::size_t block = s.in / s.out;
    for (std::size_t c = 0; c < s.out; ++c) {
      float sum = 0;
      for (std::size_t i = c * block; i < (c + 1) * block; ++i) sum += x[i];
      if (sum > best) best = sum, label = c;
    }
    for (std::size_t j = 0; j < s.hidden; ++j) {
      const float* row = w1 + j * s.in;
      float a = 0;
      for (std::size_t i = 0; i < s.in; ++i) a += row[i] * x[i];
      h[j] = a > 0 ? a : 0;
    }
    float mx = -1e30f;
    for (std::size_t c = 0; c < s.out; ++c) {
      const float* row = w2 + c * s.hidden;
      float a = 0;
      for (std::size_t j = 0; j < s.hidden; ++j) a += row[j] * h[j];
      p[c] = a;
      mx = std::max(mx, a);
    }
    float z = 0;
    for (auto& v : p) z += (v = std::exp(v - mx));
    for (auto& v : p) v /= z;
    loss -= std::log(std::max(p[label], 1e-30f)) * scale;
    p[label] -= 1.f;  // dlogits
    std::fill(dh.begin(), dh.end(), 0.f);
    for (std::size_t c = 0; c < s.out; ++c) {
      const float d = p[c] * scale;
      const float* row = w2 + c * s.hidden;
      float* grow = g2 + c * s.hidden;
      for (std::size_t j = 0; j < s.hidden; ++j) {
        grow[j] += d * h[j];
        dh[j] += d * row[j];
      }
    }
    for (std::size_t j = 0; j < s.hidden; ++j) {
      if (h[j] <= 0) continue;
      const float d = dh[j];
      float* grow = g1 + j * s.in;
      for (std::size_t i = 0; i < s.in; ++i) grow[i] += d * x[i];
    }
  }
  return loss;
}

}  // namespace hoplite::apps
