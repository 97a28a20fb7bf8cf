#include "cuda/device.h"

#include <stdexcept>
#include <utility>

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace moe {
namespace cuda {

#ifdef MOE_HAVE_CUDA

void check(int err, const char* what) {
  if (err == 0) return;
  auto e = static_cast<cudaError_t>(err);
  throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorName(e) + " (" + std::to_string(err) +
                           "): " + cudaGetErrorString(e));
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  cudaError_t e = cudaMalloc(&ptr_, bytes);
  if (e != cudaSuccess) {
    ptr_ = nullptr; bytes_ = 0;
    check(e, ("cudaMalloc of " + std::to_string(bytes) + " bytes").c_str());
  }
}
DeviceBuffer::~DeviceBuffer() { if (ptr_) cudaFree(ptr_); }
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr); bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}
static void range_check(size_t bytes, size_t offset, size_t size, const char* op) {
  if (offset > size || bytes > size - offset)
    throw std::runtime_error(std::string("DeviceBuffer::") + op + ": " + std::to_string(bytes) + " bytes at offset " +
                             std::to_string(offset) + " exceed the buffer's " + std::to_string(size));
}
void DeviceBuffer::upload(const void* host, size_t bytes, size_t offset, void* stream) {
  range_check(bytes, offset, bytes_, "upload");
  char* dst = static_cast<char*>(ptr_) + offset;
  if (stream) check(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream)), "cudaMemcpyAsync H2D");
  else check(cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}
void DeviceBuffer::download(void* host, size_t bytes, size_t offset, void* stream) const {
  range_check(bytes, offset, bytes_, "download");
  const char* src = static_cast<const char*>(ptr_) + offset;
  if (stream) check(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream)), "cudaMemcpyAsync D2H");
  else check(cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}
void DeviceBuffer::zero(void* stream) {
  if (!ptr_) return;
  if (stream) check(cudaMemsetAsync(ptr_, 0, bytes_, static_cast<cudaStream_t>(stream)), "cudaMemsetAsync");
  else check(cudaMemset(ptr_, 0, bytes_), "cudaMemset");
}

Stream::Stream() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  s_ = s;
}
Stream::~Stream() { if (s_) cudaStreamDestroy(static_cast<cudaStream_t>(s_)); }
void Stream::synchronize() { check(cudaStreamSynchronize(static_cast<cudaStream_t>(s_)), "cudaStreamSynchronize"); }

void mem_info(size_t* free_bytes, size_t* total_bytes) { check(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo"); }

#else  // built without CUDA: every entry point explains why it cannot work

[[noreturn]] static void no_cuda(const char* what) {
  throw std::runtime_error(std::string("CUDA ") + what + ": built without CUDA (nvcc was not found at build time)");
}
void check(int err, const char* what) { if (err != 0) no_cuda(what); }
DeviceBuffer::DeviceBuffer(size_t bytes) { if (bytes) no_cuda("cudaMalloc"); }
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  ptr_ = std::exchange(o.ptr_, nullptr); bytes_ = std::exchange(o.bytes_, 0);
  return *this;
}
void DeviceBuffer::upload(const void*, size_t, size_t, void*) { no_cuda("upload"); }
void DeviceBuffer::download(void*, size_t, size_t, void*) const { no_cuda("download"); }
void DeviceBuffer::zero(void*) { no_cuda("memset"); }
Stream::Stream() { no_cuda("cudaStreamCreate"); }
Stream::~Stream() = default;
void Stream::synchronize() { no_cuda("cudaStreamSynchronize"); }
void mem_info(size_t*, size_t*) { no_cuda("cudaMemGetInfo"); }

#endif

}  // namespace cuda
}  // namespace moe
