// The kernel backend: the Backend seam (backend/backend.h) implemented by the CUDA kernels of kernels/, one host
// source (cuda/kernel_backend.inc) compiled once per kernel namespace:
//   emu    the kernels run on the host under the SIMT emulator (kernels/simt/simt.h); tensors are host memory.
//          Slow by design: it is how the GPU code path is tested on machines without a GPU (`--device emu`).
//   cuda   the same host code over moe::cuda (nvcc builds) once the model's memory lives on the device (a later
//          step of the CUDA issue: arena, upload, device KV cache); not constructed yet.
// What runs on kernels today: every forward op a model's inference uses (matmul of every stored dtype but NF4,
// norms, elementwise, rope and its inverse, attention over f32 and int8 caches with the softmax kept for backward,
// routing, row gather/scatter/dots, embedding, int8 KV rows). The training ops (matmul_dx/dw, the other backward
// halves, cross-entropy, AdamW) and NF4 weights throw a clear error naming the op: they are not on kernels yet.
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
