// Row moves of a MoE layer: tokens to their experts and back (ggml's get_rows / the scatter of mul_mat_id).
//   gather_rows       dst[i, :] = src[rows[i], :]                          dst [n, D], src [T, D]
//   scatter_add_rows  dst[rows[i], :] += w[i] · src[i, :]                  rows null: i; w null: 1
//   row_dots          out[i] = a[rows[i], :] · b[i, :]                     (the gradient of scatter's weights)
// Row indices are the caller's (checked on the host before launch). A token routed to several experts repeats in
// `rows`, so scatter_add_rows would race if rows were split over threads; instead each thread owns one column c of
// dst and walks i = 0, 1, ... in order: no atomics, and the sum for every element is taken in index order, the
// same bits as the CPU backends (backend.h: deterministic whatever the thread count).
#pragma once
#include "kernels/kernel_common.cuh"

namespace moe {
namespace MOE_KERNEL_NS {

constexpr int kRowsThreads = 256;

__global__ void __launch_bounds__(kRowsThreads)
gather_rows_kernel(float* dst, int64_t ldd, const float* src, int64_t lds, const int32_t* rows, int64_t n, int64_t D) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* s = src + int64_t(rows[i]) * lds;
    float* d = dst + i * ldd;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) d[c] = s[c];
  }
}

__global__ void __launch_bounds__(kRowsThreads)
scatter_add_rows_kernel(float* dst, int64_t ldd, const float* src, int64_t lds, const int32_t* rows, const float* w,
                        int64_t n, int64_t D) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= D) return;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = rows != nullptr ? int64_t(rows[i]) : i;
    dst[r * ldd + c] += (w != nullptr ? w[i] : 1.0f) * src[i * lds + c];
  }
}

// One warp per i (4 per block): lanes stride over D, then the warp butterfly.
__global__ void __launch_bounds__(128)
row_dots_kernel(float* out, const float* a, int64_t lda, const int32_t* rows, const float* b, int64_t ldb, int64_t n, int64_t D) {
  const int lane = threadIdx.x & 31;
  const int64_t i = int64_t(blockIdx.x) * 4 + (threadIdx.x >> 5);
  if (i >= n) return;  // whole warp
  const float* x = a + (rows != nullptr ? int64_t(rows[i]) : i) * lda;
  const float* y = b + i * ldb;
  float s = 0.0f;
  for (int64_t c = lane; c < D; c += 32) s += x[c] * y[c];
  s = warp_sum(s);
  if (lane == 0) out[i] = s;
}

void gather_rows(float* dst, int64_t ldd, const float* src, int64_t lds, const int32_t* rows, int64_t n, int64_t D, void* stream) {
  MOE_KCHECK("gather_rows", n >= 0 && D > 0 && ldd >= D && lds >= D, "bad shape (n >= 0, D > 0, leading dimensions >= D)");
  if (n == 0) return;
  MOE_KCHECK("gather_rows", dst && src && rows, "null pointer");
  MOE_LAUNCH("gather_rows", gather_rows_kernel, dim3(unsigned(std::min<int64_t>(n, 65535))), dim3(kRowsThreads), 0, stream,
             dst, ldd, src, lds, rows, n, D);
}

void scatter_add_rows(float* dst, int64_t ldd, const float* src, int64_t lds, const int32_t* rows, const float* w, int64_t n,
                      int64_t D, void* stream) {
  MOE_KCHECK("scatter_add_rows", n >= 0 && D > 0 && ldd >= D && lds >= D, "bad shape (n >= 0, D > 0, leading dimensions >= D)");
  if (n == 0) return;
  MOE_KCHECK("scatter_add_rows", dst && src, "null pointer");
  MOE_LAUNCH("scatter_add_rows", scatter_add_rows_kernel, dim3(unsigned((D + kRowsThreads - 1) / kRowsThreads)), dim3(kRowsThreads),
             0, stream, dst, ldd, src, lds, rows, w, n, D);
}

void row_dots(float* out, const float* a, int64_t lda, const int32_t* rows, const float* b, int64_t ldb, int64_t n, int64_t D,
              void* stream) {
  MOE_KCHECK("row_dots", n >= 0 && D > 0 && lda >= D && ldb >= D, "bad shape (n >= 0, D > 0, leading dimensions >= D)");
  if (n == 0) return;
  MOE_KCHECK("row_dots", out && a && b, "null pointer");
  MOE_KCHECK("row_dots", (n + 3) / 4 < (int64_t(1) << 31), "n too large for one launch");
  MOE_LAUNCH("row_dots", row_dots_kernel, dim3(unsigned((n + 3) / 4)), dim3(128), 0, stream, out, a, lda, rows, b, ldb, n, D);
}

}  // namespace MOE_KERNEL_NS
}  // namespace moe
