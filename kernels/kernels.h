// Launchers of the CUDA kernels in kernels/*.cuh, in two namespaces (see kernels_api.inc):
//   moe::emu::*   always built: the kernels run on the host under the SIMT emulation (tests, debugging).
//   moe::cuda::*  built when nvcc was found (MOE_HAVE_CUDA): the real kernels; device pointers.
#pragma once
#include <cstdint>
#include "format/dtype.h"

namespace moe {
namespace emu {
#include "kernels/kernels_api.inc"
// Number of OS threads the emulation spreads a launch's blocks over (default 1).
void set_workers(int n);
}  // namespace emu
#ifdef MOE_HAVE_CUDA
namespace cuda {
#include "kernels/kernels_api.inc"
}  // namespace cuda
#endif
}  // namespace moe
