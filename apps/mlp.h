// A two-layer perceptron (in -> hidden, ReLU, -> out, softmax
// cross-entropy, no biases) whose parameters are one flat float32 vector:
// the model the asynchronous-SGD workload trains. Sized by bytes, so a
// flag picks "about ResNet-50" (100 MB) or less.
//
// The data are synthetic: sample s of a batch is a pseudo-random input
// whose label is a fixed function of it (which block of inputs has the
// largest sum), so the loss can fall: an 8 MB model goes from 2.82 to 2.75
// in 60 steps of batch 8 at --lr 50. The workloads run few steps, for their
// communication; their loss is printed, not tuned.
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
// The step size for the sum of `gradients` gradients: lr over their count
// and over the hidden width, so that a wider model (whose output moves with
// the sum over its hidden units) takes steps of the same effect.
inline float mlp_step(const MlpShape& s, float lr, std::size_t gradients) {
  return lr / static_cast<float>(gradients) / static_cast<float>(s.hidden);
}
// The gradient of the mean loss over `batch` samples drawn from `seed`,
// into grad (params() floats); returns the loss.
float mlp_gradient(const MlpShape& s, const float* w, std::size_t batch, std::uint64_t seed, float* grad);

}  // namespace hoplite::apps
