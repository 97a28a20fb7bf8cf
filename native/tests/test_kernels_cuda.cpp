// The CUDA host side (native/cuda/): the probe never crashes and explains a missing GPU; without a device every
// entry point (allocation, kernel launch) fails with an error naming what failed. When a GPU is present, the
// nvcc-compiled kernels are checked against their emulated twins on the same inputs.
#include <cstdint>
#include <random>
#include <vector>
#include "format/dtype.h"
#include "cuda/cuda_probe.h"
#include "cuda/device.h"
#include "kernels/kernels.h"
#include "tests/test.h"

TEST(kernels_cuda_probe_reports_without_crashing) {
  const moe::CudaProbe p = moe::cuda_probe();
#ifdef MOE_HAVE_CUDA
  CHECK(p.compiled);
#else
  CHECK(!p.compiled);
  CHECK(p.error.find("built without CUDA") != std::string::npos);
#endif
  CHECK(p.devices >= 0);
  if (p.devices == 0) CHECK(!p.error.empty());
  std::printf("  cuda probe: compiled=%d devices=%d %s%s\n", int(p.compiled), p.devices, p.error.c_str(), p.name.c_str());
}

TEST(kernels_cuda_without_device_fails_cleanly) {
  const moe::CudaProbe p = moe::cuda_probe();
  if (p.devices > 0) return;
  CHECK_THROWS(moe::cuda::DeviceBuffer(1024), "CUDA cudaMalloc");
  CHECK_THROWS(moe::cuda::Stream(), "CUDA cudaStreamCreate");
#ifdef MOE_HAVE_CUDA
  // The launch itself fails (no driver/device) before any pointer is touched; the error names the kernel.
  float* fake = reinterpret_cast<float*>(uintptr_t(256));
  CHECK_THROWS(moe::cuda::swiglu(fake, 10, fake, 10, fake, 10, 1, 10), "CUDA kernel swiglu failed to launch");
  CHECK_THROWS(moe::cuda::matvec(fake, fake, moe::DType::BF16, fake, nullptr, 4, 8), "CUDA kernel matvec<bf16>");
#endif
}

#if defined(MOE_HAVE_CUDA) && defined(MOE_HAVE_SIMT_EMU)
static size_t sz(int64_t n) { return size_t(n); }

TEST(kernels_cuda_device_matches_emulation) {
  if (moe::cuda_probe().devices == 0) return;  // nothing to run on (CI and this project's machines)
  std::mt19937 g(1);
  std::normal_distribution<float> d;
  const int64_t N = 300, K = 512, Hq = 8, Hkv = 2, Dh = 128, n_ctx = 77;
  std::vector<float> W(sz(N * K)), x(sz(K)), q(sz(Hq * Dh)), kv(sz(n_ctx * Hkv * Dh));
  for (auto* v : {&W, &x, &q, &kv}) for (auto& e : *v) e = d(g);
  std::vector<float> y_emu(sz(N)), y_dev(sz(N)), a_emu(sz(Hq * Dh)), a_dev(sz(Hq * Dh));
  moe::emu::matvec(y_emu.data(), W.data(), moe::DType::F32, x.data(), nullptr, N, K);
  moe::emu::attention_decode(a_emu.data(), q.data(), kv.data(), kv.data(), Hq, Hkv, Dh, n_ctx, Hkv * Dh, Dh, 0.088f);
  moe::cuda::DeviceBuffer dW(W.size() * 4), dx(x.size() * 4), dy(y_dev.size() * 4), dq(q.size() * 4), dkv(kv.size() * 4), da(a_dev.size() * 4);
  dW.upload(W.data(), dW.bytes()); dx.upload(x.data(), dx.bytes()); dq.upload(q.data(), dq.bytes()); dkv.upload(kv.data(), dkv.bytes());
  moe::cuda::matvec(dy.as<float>(), dW.data(), moe::DType::F32, dx.as<float>(), nullptr, N, K);
  moe::cuda::attention_decode(da.as<float>(), dq.as<float>(), dkv.as<float>(), dkv.as<float>(), Hq, Hkv, Dh, n_ctx, Hkv * Dh, Dh, 0.088f);
  dy.download(y_dev.data(), dy.bytes()); da.download(a_dev.data(), da.bytes());
  for (size_t i = 0; i < y_dev.size(); ++i) CHECK_NEAR(y_dev[i], y_emu[i], 1e-3);
  for (size_t i = 0; i < a_dev.size(); ++i) CHECK_NEAR(a_dev[i], a_emu[i], 1e-4);
}

// The tensor-core kernel on the device against the emulator's mma.sync (whose fragment layouts are the PTX ISA's as
// the emulator reads them: this is the test that they agree with the hardware). Only summation order differs.
TEST(kernels_cuda_tensor_core_matches_emulation) {
  if (moe::cuda_probe().devices == 0) return;
  std::mt19937 g(2);
  std::normal_distribution<float> d;
  const int64_t M = 70, N = 45, K = 112;
  std::vector<float> x(sz(M * K)), y_emu(sz(M * N)), y_dev(sz(M * N));
  std::vector<uint16_t> W(sz(N * K));
  for (auto& e : x) e = d(g);
  for (auto& e : W) e = moe::f32_to_bf16(0.1f * d(g));
  moe::emu::matmul_tc_bf16(y_emu.data(), N, x.data(), K, W.data(), M, N, K, false);
  moe::cuda::DeviceBuffer dW(W.size() * 2), dx(x.size() * 4), dy(y_dev.size() * 4);
  dW.upload(W.data(), dW.bytes()); dx.upload(x.data(), dx.bytes());
  moe::cuda::matmul_tc_bf16(dy.as<float>(), N, dx.as<float>(), K, dW.data(), M, N, K, false);
  dy.download(y_dev.data(), dy.bytes());
  for (size_t i = 0; i < y_dev.size(); ++i) CHECK_NEAR(y_dev[i], y_emu[i], 1e-4);
}
#endif
