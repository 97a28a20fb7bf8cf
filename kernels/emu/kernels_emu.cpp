// Host build of every kernels/*.cuh body under the SIMT emulation (kernels/simt/simt.h): moe::emu::*.
// Tests run these against plain CPU references; the nvcc build of the same text is kernels/*.cu.
#define MOE_KERNEL_NS emu
#include "kernels/kernels.h"
#include "kernels/rmsnorm.cuh"
#include "kernels/rope.cuh"
#include "kernels/matvec.cuh"
#include "kernels/qmatvec.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/rows.cuh"
#include "kernels/kv_cache.cuh"
#include "kernels/moe_route.cuh"
#include "kernels/attention.cuh"
#include "kernels/matmul.cuh"
#include "kernels/matmul_tc.cuh"
#include "kernels/sampling.cuh"
#include "kernels/embedding.cuh"
#include "kernels/loss.cuh"

void moe::emu::set_workers(int n) { simt::set_workers(n); }
