// The kernel backend over the SIMT emulator (cuda/kernel_backend.h): `--device emu`.
#include "cuda/kernel_backend.h"

#ifdef MOE_HAVE_SIMT_EMU
#define MOE_KB_NS emu
#define MOE_KB_NAME "emu"
#define MOE_KB_HOST_VISIBLE true
#include "cuda/kernel_backend.inc"

std::unique_ptr<moe::Backend> moe::make_emu_backend() { return std::make_unique<KernelBackend>(); }
#else
#include <stdexcept>
std::unique_ptr<moe::Backend> moe::make_emu_backend() {
  throw std::runtime_error("this build has no SIMT emulator (no ucontext.h): --device emu is not available");
}
#endif
