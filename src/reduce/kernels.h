// Element-wise reduction kernels: dst[i] = a[i] op b[i] over `bytes` bytes.
//
// dst may alias a or b. The loops are plain and branch-free per element so
// that GCC vectorizes them (AVX2 where the CPU has it, through function
// multiversioning; SSE2 otherwise); tests check results, perf/ measures them.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>

#include "hoplite/reduce.h"

namespace hoplite::reduce {

void apply(ReduceOp op, DataType t, std::byte* dst, const std::byte* a, const std::byte* b,
           std::size_t bytes);

}  // namespace hoplite::reduce
