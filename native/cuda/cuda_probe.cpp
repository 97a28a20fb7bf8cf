#include "cuda/cuda_probe.h"

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace moe {

CudaProbe cuda_probe() {
  CudaProbe p;
#ifdef MOE_HAVE_CUDA
  p.compiled = true;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    // No driver (35, cudaErrorInsufficientDriver), no device (100), ...: report and fall back to the CPU.
    p.error = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(e) + " (" + std::to_string(int(e)) + "): " +
              cudaGetErrorString(e);
    cudaGetLastError();  // reset the runtime's last-error state so later calls start clean
    return p;
  }
  p.devices = n;
  if (n == 0) { p.error = "no CUDA device found"; return p; }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    p.name = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
    p.memory_bytes = prop.totalGlobalMem;
  }
#else
  p.error = "built without CUDA (nvcc was not found at build time)";
#endif
  return p;
}

}  // namespace moe
