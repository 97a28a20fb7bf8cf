#include <stdexcept>
#include "cuda/cuda_probe.h"
#include "cuda/kernel_backend.h"

namespace moe {

std::string resolve_device(const std::string& requested) {
  if (requested == "cpu" || requested == "emu") return requested;
  if (requested == "auto" || requested.empty()) return "cpu";
  if (requested == "cuda") {
    const CudaProbe p = cuda_probe();
    if (p.devices == 0) throw std::runtime_error("--device cuda: no CUDA device (" + p.error + "); use --device cpu");
    throw std::runtime_error("--device cuda: " + p.name +
                             " found, but the CUDA backend does not run whole models yet (its kernels are tested under --device emu); "
                             "use --device cpu");
  }
  throw std::invalid_argument("unknown device \"" + requested + "\" (auto, cpu, cuda or emu)");
}

}  // namespace moe
