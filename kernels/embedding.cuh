// Token embedding lookup: out[t, :] = table[ids[t], :] widened to f32 (the table stays in its stored dtype).
//   table: [vocab, D] f32/f16/bf16 or GGUF Q8_0/Q4_0/Q4_K rows (a quantized model's embeddings)   ids: [T] int32   out: [T, D] f32
// One block per token, threads stride over D. An id outside [0, vocab) writes a row of NaN so the error is
// visible in the logits instead of reading out of bounds (the host checks ids before launching anyway).
#pragma once
#include "kernels/qblock.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

template <class WL>
__global__ void embedding_kernel(float* out, const uint8_t* table, int64_t row_bytes, const int32_t* ids, int vocab, int D) {
  const int64_t t = blockIdx.x;
  const int id = ids[t];
  float* o = out + t * D;
  if (id < 0 || id >= vocab) {
    for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = NAN;
    return;
  }
  const uint8_t* r = table + int64_t(id) * row_bytes;
  for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = WL::at(r, d);
}

void embedding(float* out, const void* table, DType dtype, const int32_t* ids, int64_t T, int64_t vocab, int64_t D,
               void* stream) {
  MOE_KCHECK("embedding", T >= 0 && T < (int64_t(1) << 31), "T out of range");
  MOE_KCHECK("embedding", vocab > 0 && vocab < (int64_t(1) << 31) && D > 0 && D < (int64_t(1) << 31), "vocab and D must be > 0");
  MOE_KCHECK("embedding", out && table && ids, "null pointer");
  if (T == 0) return;
  const bool blocks = dtype == DType::Q8_0 || dtype == DType::Q4_0 || dtype == DType::Q4_K;
  MOE_KCHECK("embedding", dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16 || blocks,
             std::string("table dtype ") + dtype_name(dtype) + " is not supported (f32, f16, bf16, q8_0, q4_0, q4_k)");
  if (blocks) MOE_KCHECK("embedding", D % (dtype == DType::Q4_K ? 256 : 32) == 0, "D must be a multiple of the block");
  const dim3 grid{static_cast<unsigned>(T)}, block{256u};
  const uint8_t* tb = static_cast<const uint8_t*>(table);
  const int64_t rb = int64_t(dtype_row_bytes(dtype, D));
#define MOE_EMB(name, WL) MOE_LAUNCH(name, embedding_kernel<WL>, grid, block, 0, stream, out, tb, rb, ids, int(vocab), int(D))
  switch (dtype) {
    case DType::F32: MOE_EMB("embedding<f32>", RowTyped<WF32>); break;
    case DType::F16: MOE_EMB("embedding<f16>", RowTyped<WF16>); break;
    case DType::BF16: MOE_EMB("embedding<bf16>", RowTyped<WBF16>); break;
    case DType::Q8_0: MOE_EMB("embedding<q8_0>", RowBlocks<0>); break;
    case DType::Q4_0: MOE_EMB("embedding<q4_0>", RowBlocks<1>); break;
    default: MOE_EMB("embedding<q4_k>", RowBlocks<2>); break;
  }
#undef MOE_EMB
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
