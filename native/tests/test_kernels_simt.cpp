// The SIMT emulation layer itself (kernels/simt/simt.h): block barriers, warp shuffles in lockstep, shared and
// dynamic shared memory, atomics across parallel workers, multi-dimensional grids, divergent-barrier detection.
// The kernels under test are tiny CUDA bodies written right here.
#ifdef MOE_HAVE_SIMT_EMU  // defined by kernels/kernels.cmake where ucontext fibers exist
#include <cmath>
#include <vector>
#include "format/dtype.h"
#include "kernels/simt/simt.h"
#include "tests/test.h"

namespace {

// Each thread publishes its id, waits for the block, then reads its right neighbour's: wrong without a barrier.
__global__ void k_neighbour(int* out) {
  __shared__ int sh[1024];
  const int t = threadIdx.x, n = blockDim.x;
  sh[t] = t + 1000 * int(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * n + t] = sh[(t + 1) % n];
}

__global__ void k_shuffles(int* xor_sum, int* down_sum, int* bcast, int* lane_of_src) {
  const int t = threadIdx.x, lane = t & 31;
  int v = t;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  xor_sum[t] = v;
  int d = t;
  for (int o = 16; o > 0; o >>= 1) d += __shfl_down_sync(0xffffffffu, d, o);
  down_sum[t] = d;  // only lane 0 holds the full sum
  bcast[t] = __shfl_sync(0xffffffffu, t * 10, 5);
  lane_of_src[t] = __shfl_xor_sync(0xffffffffu, lane, 1, 8);  // width-8 segments
}

__global__ void k_atomics(int* counter, float* fsum) {
  atomicAdd(counter, 1);
  atomicAdd(fsum, 0.5f);
}

__global__ void k_reverse_dyn(float* out, const float* in) {
  SIMT_DYNAMIC_SHARED(float, buf);
  const int t = threadIdx.x, n = blockDim.x;
  buf[t] = in[t];
  __syncthreads();
  out[t] = buf[n - 1 - t];
}

__global__ void k_grid_ids(int* out) {
  const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int t = threadIdx.x + blockDim.x * threadIdx.y;
  out[b * blockDim.x * blockDim.y + t] = b * 100 + t;
}

// Half the warp waits at the block barrier, the other half at a shuffle: can never release.
__global__ void k_divergent(int* out) {
  if (threadIdx.x < 16) __syncthreads();
  else out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 1);
}

// Threads that return early no longer count at later barriers (as on Volta+).
__global__ void k_early_exit(int* out) {
  __shared__ int sh[64];
  if (threadIdx.x >= 40) return;
  sh[threadIdx.x] = int(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = sh[39 - threadIdx.x];
}

__global__ void k_votes(unsigned* ballot, int* any, int* all) {
  const int t = threadIdx.x;
  ballot[t] = __ballot_sync(0xffffffffu, (t % 3) == 0);
  any[t] = __any_sync(0xffffffffu, t == 7);
  all[t] = __all_sync(0xffffffffu, t < 1000) + 2 * __all_sync(0xffffffffu, t != 5);
}

// One warp: A (16x16) and B (16x8) handed out as the PTX ISA's m16n8k16 fragments, D read back by its layout.
__global__ void k_mma(float* D, const uint16_t* A, const uint16_t* B, const float* C) {
  const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  auto pk = [](uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); };
  const uint32_t a[4] = {pk(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]), pk(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]),
                         pk(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]), pk(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9])};
  const uint32_t b[2] = {pk(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]), pk(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g])};
  const float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  float d[4];
  ::simt::detail::mma_m16n8k16_bf16(d, a, b, c);
  D[g * 8 + 2 * t] = d[0]; D[g * 8 + 2 * t + 1] = d[1]; D[(g + 8) * 8 + 2 * t] = d[2]; D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

}  // namespace

TEST(kernels_simt_votes) {
  unsigned ballot[64]; int any[64], all[64];
  simt::launch(dim3(1), dim3(40), 0, k_votes, ballot, any, all);  // a full warp and a partial one of 8 lanes
  unsigned want0 = 0, want1 = 0;
  for (int l = 0; l < 32; ++l) if (l % 3 == 0) want0 |= 1u << l;
  for (int l = 0; l < 8; ++l) if ((32 + l) % 3 == 0) want1 |= 1u << l;
  for (int t = 0; t < 40; ++t) {
    CHECK(ballot[t] == (t < 32 ? want0 : want1));
    CHECK(any[t] == (t < 32 ? 1 : 0));
    CHECK(all[t] == (t < 32 ? 1 : 3));  // t != 5 fails only in the first warp
  }
}

// D = A·B + C through the fragment layouts; bf16 products are exact in f32, so only the f32 sums differ from the
// double reference (|D| ~ 4: ≤ 1e-5).
TEST(kernels_simt_mma_m16n8k16_bf16) {
  std::vector<uint16_t> A(256), B(128);
  std::vector<float> C(128), D(128, 0.0f);
  for (int i = 0; i < 256; ++i) A[size_t(i)] = moe::f32_to_bf16(std::sin(0.37f * float(i)));
  for (int i = 0; i < 128; ++i) { B[size_t(i)] = moe::f32_to_bf16(std::cos(0.23f * float(i))); C[size_t(i)] = 0.01f * float(i); }
  simt::launch(dim3(1), dim3(32), 0, k_mma, D.data(), static_cast<const uint16_t*>(A.data()), static_cast<const uint16_t*>(B.data()),
               static_cast<const float*>(C.data()));
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) {
      double s = C[size_t(r * 8 + n)];
      for (int k = 0; k < 16; ++k) s += double(moe::bf16_to_f32(A[size_t(r * 16 + k)])) * moe::bf16_to_f32(B[size_t(k * 8 + n)]);
      CHECK_NEAR(D[size_t(r * 8 + n)], s, 1e-5);
    }
  // fewer than 32 live lanes is an error, as on the device
  CHECK_THROWS(simt::launch(dim3(1), dim3(16), 0, k_mma, D.data(), static_cast<const uint16_t*>(A.data()),
                            static_cast<const uint16_t*>(B.data()), static_cast<const float*>(C.data())),
               "mma.sync needs the warp's 32 lanes");
}

TEST(kernels_simt_block_barrier) {
  std::vector<int> out(2 * 96, -1);
  simt::launch(dim3(2), dim3(96), 0, k_neighbour, out.data());
  bool ok = true;
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 96; ++t) ok &= out[b * 96 + t] == (t + 1) % 96 + 1000 * b;
  CHECK(ok);
}

TEST(kernels_simt_warp_shuffles) {
  const int n = 64;
  std::vector<int> xs(n), ds(n), bc(n), ls(n);
  simt::launch(dim3(1), dim3(n), 0, k_shuffles, xs.data(), ds.data(), bc.data(), ls.data());
  for (int t = 0; t < n; ++t) {
    const int w = t / 32, base = 32 * w, lane = t % 32;
    const int warp_total = 32 * base + 31 * 32 / 2;  // sum of base..base+31
    CHECK(xs[t] == warp_total);
    if (lane == 0) CHECK(ds[t] == warp_total);
    CHECK(bc[t] == (base + 5) * 10);
    CHECK(ls[t] == (lane ^ 1));
  }
}

TEST(kernels_simt_atomics_parallel_workers) {
  int counter = 0; float fsum = 0.0f;
  simt::set_workers(2);
  simt::launch(dim3(8), dim3(128), 0, k_atomics, &counter, &fsum);
  simt::set_workers(1);
  CHECK(counter == 8 * 128);
  CHECK_NEAR(fsum, 512.0, 0.0);  // halves sum exactly in f32
}

TEST(kernels_simt_dynamic_shared_and_grid) {
  std::vector<float> in(200), out(200);
  for (int i = 0; i < 200; ++i) in[size_t(i)] = float(i);
  simt::launch(dim3(1), dim3(200), 200 * sizeof(float), k_reverse_dyn, out.data(), in.data());
  bool ok = true;
  for (int i = 0; i < 200; ++i) ok &= out[size_t(i)] == float(199 - i);
  CHECK(ok);
  std::vector<int> ids(3 * 2 * 2 * 8 * 4, -1);
  simt::launch(dim3(3, 2, 2), dim3(8, 4), 0, k_grid_ids, ids.data());
  ok = true;
  for (size_t i = 0; i < ids.size(); ++i) ok &= ids[i] == int(i / 32) * 100 + int(i % 32);
  CHECK(ok);
}

TEST(kernels_simt_divergent_barrier_is_an_error) {
  std::vector<int> out(32);
  CHECK_THROWS(simt::launch(dim3(1), dim3(32), 0, k_divergent, out.data()), "deadlock");
  std::vector<int> e(64, -1);
  simt::launch(dim3(1), dim3(64), 0, k_early_exit, e.data());
  bool ok = true;
  for (int i = 0; i < 40; ++i) ok &= e[size_t(i)] == 39 - i;
  CHECK(ok);
}

#endif  // MOE_HAVE_SIMT_EMU
