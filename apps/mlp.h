// A two-layer perceptron (in -> hidden, ReLU, -> out, softmax
// cross-entropy, no biases) whose parameters are one flat float32 vector:
// the model the asynchronous-SGD workload trains. Sized by bytes, so a
// flag picks "about ResNet-50" (100 MB) or less.
//
// The data are synthetic: sample s of a batch is a pseudo-random input
// whose label is a fixed function of it, so the loss really falls.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hoplite::apps {

struct MlpShape {
  std::size_t in = 256;
  std::size_t hidden = 0;
  std::size_t out = 16;
  std::size_t params() const { return in * hidden + hidden * out; }
};

// The largest hidden layer within `bytes` of parameters.
MlpShape mlp_for_bytes(std::uint64_t bytes);
std::vector<float> mlp_init(const MlpShape& s, std::uint64_t seed);
// The gradient of the mean loss over `batch` samples drawn from `seed`,
// into grad (params() floats); returns the loss.
float mlp_gradient(const MlpShape& s, const float* w, std::size_t batch, std::uint64_t seed, float* grad);

}  // namespace hoplite::apps
