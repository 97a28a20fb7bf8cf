// One small tensor type for every backend op: a pointer, an element type, and ggml's ne/nb shape and strides.
//
//   ne[0] is the innermost (fastest) dimension, ne[1] the next, ... (ggml order, the reverse of PyTorch's shape):
//   a PyTorch [T, D] activation is ne = {D, T, 1, 1}; a weight W[out, in] (nn.Linear) is ne = {in, out, 1, 1}.
//   nb[i] is the stride of dimension i in BYTES, so a row-major f32 [T, D] has nb = {4, 4·D, 4·D·T, ...} and a view
//   of its first k columns keeps nb[1] = 4·D. Block-quantized weights (Q8_0, Q4_0, Q4_K) have no element
//   stride: nb[0] is 0 and nb[1] is the bytes of one row of blocks (dtype_row_bytes).
//   An NF4 weight (DType::NF4, quant/nf4.h) has no rows of bytes at all (its 64-blocks run over the flattened tensor
//   and may straddle rows): `data` points to the NF4Tensor itself (codes, absmax bytes, scales, offset), ne = {in,
//   out, 1, 1} as for any weight, and nb = {0, 0, 0, 0}. Ops take it whole (no row views); make it with nf4_weight().
//
// A Tensor does not own its memory: the caller (the model's scratch, the mapped checkpoint, a trainer's buffers) does.
// `data` lives in the memory of the backend that the tensor is handed to (host memory for cpu and ref).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include "format/dtype.h"

namespace moe {

struct Tensor {
  void* data = nullptr;
  DType type = DType::F32;
  int64_t ne[4] = {1, 1, 1, 1};
  int64_t nb[4] = {0, 0, 0, 0};
  // A block-quantized weight may also come in the cpu backend's load-time layout (cpu/qmatmul.h qpack), which its
  // matmuls and input gradients (matmul_dx) read instead of `data`; every other op and backend reads `data`. Views
  // drop it (it is the whole tensor's).
  const void* packed = nullptr;

  int64_t cols() const { return ne[0]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }   // every dimension past the first, as rows
  int64_t numel() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  // Rows are nb[1] bytes apart; for f32 tensors the leading dimension in floats.
  int64_t ld() const { return nb[1] / int64_t(sizeof(float)); }
  bool empty() const { return data == nullptr; }

  float* f32() const { return static_cast<float*>(data); }
  float* row(int64_t r) const { return reinterpret_cast<float*>(static_cast<char*>(data) + r * nb[1]); }
  const void* row_bytes(int64_t r) const { return static_cast<const char*>(data) + r * nb[1]; }
  // Rows [r0, r0 + n) of a 2-D tensor (a view: same strides).
  Tensor rows_view(int64_t r0, int64_t n) const {
    Tensor t = *this; t.data = static_cast<char*>(data) + r0 * nb[1]; t.ne[1] = n; t.ne[2] = t.ne[3] = 1; t.packed = nullptr; return t;
  }
};

// f32 matrix [rows, cols] (PyTorch order), rows `ld` floats apart (ld = cols when contiguous).
inline Tensor mat(float* p, int64_t rows, int64_t cols, int64_t ld = 0) {
  Tensor t; t.data = p; t.type = DType::F32;
  t.ne[0] = cols; t.ne[1] = rows;
  t.nb[0] = 4; t.nb[1] = 4 * (ld > 0 ? ld : cols); t.nb[2] = t.nb[3] = t.nb[1] * rows;
  return t;
}
inline Tensor mat(const float* p, int64_t rows, int64_t cols, int64_t ld = 0) { return mat(const_cast<float*>(p), rows, cols, ld); }
// f32 vector [n].
inline Tensor vec(const float* p, int64_t n) { return mat(const_cast<float*>(p), 1, n); }
// f32 [d2, d1, d0] contiguous (PyTorch order), e.g. q as [T, H, hd].
inline Tensor mat3(float* p, int64_t d2, int64_t d1, int64_t d0) {
  Tensor t = mat(p, d2 * d1, d0); t.ne[1] = d1; t.ne[2] = d2; t.nb[2] = t.nb[1] * d1; t.nb[3] = t.nb[2] * d2; return t;
}
// i32 vector [n] (token ids, expert indices, labels).
inline Tensor ivec(const int32_t* p, int64_t n) {
  Tensor t; t.data = const_cast<int32_t*>(p); t.type = DType::I32; t.ne[0] = n; t.nb[0] = 4; t.nb[1] = t.nb[2] = t.nb[3] = 4 * n; return t;
}
// int8 [rows, cols] contiguous (int8 KV cache rows) and [ctx, H, hd] (an int8 cache slot).
inline Tensor int8_rows(int8_t* p, int64_t rows, int64_t cols) {
  Tensor t; t.data = p; t.type = DType::I8; t.ne[0] = cols; t.ne[1] = rows;
  t.nb[0] = 1; t.nb[1] = cols; t.nb[2] = t.nb[3] = cols * rows; return t;
}
inline Tensor int8_cache(int8_t* p, int64_t ctx, int64_t H, int64_t hd) {
  Tensor t = int8_rows(p, ctx * H, hd); t.ne[1] = H; t.ne[2] = ctx; t.nb[2] = H * hd; t.nb[3] = t.nb[2] * ctx; return t;
}
// f16 [rows, cols] contiguous (f16 KV cache rows) and [ctx, H, hd] (an f16 cache slot), IEEE half bits.
inline Tensor f16_rows(uint16_t* p, int64_t rows, int64_t cols) {
  Tensor t; t.data = p; t.type = DType::F16; t.ne[0] = cols; t.ne[1] = rows;
  t.nb[0] = 2; t.nb[1] = 2 * cols; t.nb[2] = t.nb[3] = 2 * cols * rows; return t;
}
inline Tensor f16_cache(uint16_t* p, int64_t ctx, int64_t H, int64_t hd) {
  Tensor t = f16_rows(p, ctx * H, hd); t.ne[1] = H; t.ne[2] = ctx; t.nb[2] = 2 * H * hd; t.nb[3] = t.nb[2] * ctx; return t;
}
// A weight W[out, in] in any stored dtype (block types included), rows contiguous.
inline Tensor weight(const void* p, DType dt, int64_t out, int64_t in) {
  Tensor t; t.data = const_cast<void*>(p); t.type = dt; t.ne[0] = in; t.ne[1] = out;
  t.nb[0] = int64_t(dtype_row_bytes(dt, 1) == 0 ? 0 : dtype_size(dt));
  t.nb[1] = int64_t(dtype_row_bytes(dt, in)); t.nb[2] = t.nb[3] = t.nb[1] * out;
  return t;
}

// An NF4 weight W[out, in] = [t.rows, t.cols] (see the top of this file). The NF4Tensor must outlive the Tensor.
struct NF4Tensor;
inline Tensor nf4_weight(const NF4Tensor* nf4, int64_t out, int64_t in) {
  Tensor t; t.data = const_cast<NF4Tensor*>(nf4); t.type = DType::NF4; t.ne[0] = in; t.ne[1] = out; return t;
}

inline std::string shape_of(const Tensor& t) {
  return "[" + std::to_string(t.rows()) + ", " + std::to_string(t.cols()) + "]";
}

}  // namespace moe
