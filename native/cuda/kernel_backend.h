// The kernel backend: the Backend seam (backend/backend.h) implemented by the CUDA kernels of kernels/, one host
// source (cuda/kernel_backend.inc) compiled once per kernel namespace:
//   emu    the kernels run on the host under the SIMT emulator (kernels/simt/simt.h); tensors are host memory.
//          Slow by design: it is how the GPU code path is tested on machines without a GPU (`--device emu`).
//   cuda   the same host code over moe::cuda (nvcc builds) once the model's memory lives on the device (a later
//          step of the CUDA issue: arena, upload, device KV cache); not constructed yet.
// Every op of the seam, forward and backward, runs on kernels: the three matmul forms over every stored dtype and
// NF4, norms, elementwise ops, rope, attention over f32 and int8 caches, routing, expert rows, embedding, int8 KV
// rows, cross-entropy and AdamW. This is the plain form of each (tiled f32 GEMM, one block per row or head); the
// tensor-core, split-K and fused forms come next, checked against these.
#pragma once
#include <memory>
#include <string>
#include "backend/backend.h"

namespace moe {

std::unique_ptr<Backend> make_emu_backend();

}  // namespace moe

namespace moe {

// `--device` to the backend a model runs on: "cpu", "emu" as asked; "auto" is cpu until the CUDA backend runs whole
// models (then: cuda when cuda_probe() finds a device). "cuda" throws, saying why (no device, or not yet). Unknown
// names throw listing the choices.
std::string resolve_device(const std::string& requested);

}  // namespace moe
