// Token embedding lookup: out[t, :] = table[ids[t], :] widened to f32 (the table stays in its stored dtype).
//   table: [vocab, D] f32/f16/bf16   ids: [T] int32   out: [T, D] f32
// One block per token, threads stride over D. An id outside [0, vocab) writes a row of NaN so the error is
// visible in the logits instead of reading out of bounds (the host checks ids before launching anyway).
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

template <class WT>
__global__ void embedding_kernel(float* out, const typename WT::T* table, const int32_t* ids, int vocab, int D) {
  const int64_t t = blockIdx.x;
  const int id = ids[t];
  float* o = out + t * D;
  if (id < 0 || id >= vocab) {
    for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = NAN;
    return;
  }
  const typename WT::T* r = table + int64_t(id) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = WT::get(r[d]);
}

void embedding(float* out, const void* table, DType dtype, const int32_t* ids, int64_t T, int64_t vocab, int64_t D,
               void* stream) {
  MOE_KCHECK("embedding", T >= 0 && T < (int64_t(1) << 31), "T out of range");
  MOE_KCHECK("embedding", vocab > 0 && vocab < (int64_t(1) << 31) && D > 0 && D < (int64_t(1) << 31), "vocab and D must be > 0");
  MOE_KCHECK("embedding", out && table && ids, "null pointer");
  if (T == 0) return;
  const dim3 grid{static_cast<unsigned>(T)}, block{256u};
  switch (dtype) {
    case DType::F32: MOE_LAUNCH("embedding<f32>", embedding_kernel<WF32>, grid, block, 0, stream, out, static_cast<const float*>(table), ids, int(vocab), int(D)); break;
    case DType::F16: MOE_LAUNCH("embedding<f16>", embedding_kernel<WF16>, grid, block, 0, stream, out, static_cast<const uint16_t*>(table), ids, int(vocab), int(D)); break;
    case DType::BF16: MOE_LAUNCH("embedding<bf16>", embedding_kernel<WBF16>, grid, block, 0, stream, out, static_cast<const uint16_t*>(table), ids, int(vocab), int(D)); break;
    default: kernel_arg_error("embedding", std::string("table dtype ") + dtype_name(dtype) + " is not supported (f32, f16, bf16)");
  }
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
