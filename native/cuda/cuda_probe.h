// Is there a usable CUDA device? Asked once at start-up to pick the backend (cuda when devices > 0, else cpu).
#pragma once
#include <string>

namespace moe {

struct CudaProbe {
  bool compiled = false;  // built with nvcc (MOE_HAVE_CUDA); false in a CPU-only build
  int devices = 0;        // cudaGetDeviceCount, 0 when none or on error
  std::string error;      // why there are no devices, e.g. "cudaGetDeviceCount: cudaErrorInsufficientDriver (35): ..."
  std::string name;       // device 0's name and compute capability, e.g. "NVIDIA A100 (sm_80)", when devices > 0
  size_t memory_bytes = 0;  // device 0's global memory (the model library's fit estimate), 0 when none
};

// Never throws and never crashes: a missing driver or GPU is reported in `error`.
CudaProbe cuda_probe();

}  // namespace moe
