// Host side of the CUDA backend: device memory, streams, and error checks. Header free of cuda_runtime.h so
// any file can include it; in a build without CUDA every constructor throws "built without CUDA".
//   DeviceBuffer b(bytes); b.upload(host, bytes); moe::cuda::matvec(b.as<float>(), ...); b.download(host, bytes);
// Kernel launchers themselves are in kernels/kernels.h (moe::cuda::*); they throw std::runtime_error naming the
// kernel when a launch fails.
#pragma once
#include <cstddef>
#include <string>

namespace moe {
namespace cuda {

// Throws std::runtime_error("CUDA <what>: <error name> (<code>): <message>") when err != 0 (cudaSuccess).
void check(int err, const char* what);

// Owns one cudaMalloc allocation. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  template <class T> T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  // Synchronous copies (stream == nullptr) or async on a stream; bytes + offset must fit the buffer.
  void upload(const void* host, size_t bytes, size_t offset = 0, void* stream = nullptr);
  void download(void* host, size_t bytes, size_t offset = 0, void* stream = nullptr) const;
  void zero(void* stream = nullptr);

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Owns a cudaStream_t (non-blocking w.r.t. the legacy default stream). handle() is what launchers take as `stream`.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void* handle() const { return s_; }
  void synchronize();

 private:
  void* s_ = nullptr;
};

// Free and total device memory of the current device, in bytes.
void mem_info(size_t* free_bytes, size_t* total_bytes);

}  // namespace cuda
}  // namespace moe
