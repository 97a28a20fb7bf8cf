// nvcc build of kernels/matmul_tc.cuh (the CPU emulation build of the same body is kernels/emu/kernels_emu.cpp).
#define MOE_KERNEL_NS cuda
#include "kernels/kernels.h"
#include "kernels/matmul_tc.cuh"
