// The reference backend: every op of backend.h as plain scalar loops (double accumulators where a sum is long),
// single-threaded, no SIMD. It is the oracle for the fast backends, and its backward ops are checked against
// finite differences of its forward ops (native/tests/test_backend_ops.cpp).
//
// The cpu backend derives from it and overrides the ops that have a fast path (cpu.cpp lists them); an op it
// does not override is this code, run on one thread.
#pragma once
#include "backend/backend.h"

namespace moe {

class RefBackend : public Backend {
 public:
  const char* name() const override { return "ref"; }
  void matmul(const Tensor& y, const Tensor& x, const Tensor& W, bool accumulate) override;
  void matmul_dx(const Tensor& dx, const Tensor& dy, const Tensor& W, bool accumulate) override;
  void matmul_dw(const Tensor& dW, const Tensor& dy, const Tensor& x, bool accumulate) override;
  void add_bias(const Tensor& y, const Tensor& b) override;
  void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, float eps, const Tensor& rstd) override;
  void rmsnorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                        const Tensor& rstd) override;
  void copy(const Tensor& dst, const Tensor& src) override;
  void lora_dropout(const Tensor& y, const Tensor& x, uint64_t seed, uint32_t id, float p, bool accumulate) override;
  void zero(const Tensor& x) override;
  void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up) override;
  void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate, const Tensor& up) override;
  void add(const Tensor& y, const Tensor& x) override;
  void sigmoid(const Tensor& x) override;
  void sigmoid_backward(const Tensor& dx, const Tensor& y) override;
  void mul_cols(const Tensor& x, const Tensor& g) override;
  void clamp(const Tensor& x, float c) override;
  void clamp_backward(const Tensor& dx, const Tensor& x_pre, float c) override;
  void rope(const Tensor& x, const Tensor& cos, const Tensor& sin) override;
  void rope_backward(const Tensor& dx, const Tensor& cos, const Tensor& sin) override;
  void attention(const Tensor& out, const Tensor& q, const Tensor& K, const Tensor& V, int64_t pos0, float scale,
                 const Tensor& att, const Tensor& scratch) override;
  void attention_backward(const Tensor& dq, const Tensor& dK, const Tensor& dV, const Tensor& dout, const Tensor& q,
                          const Tensor& K, const Tensor& V, const Tensor& att, int64_t pos0, float scale) override;
  void attention_kv8(const Tensor& out, const Tensor& q, const Tensor& K8, const Tensor& Ks, const Tensor& V8, const Tensor& Vs,
                     int64_t pos0, float scale, const Tensor& scratch) override;
  void kv_quantize(const Tensor& q, const Tensor& s, const Tensor& x) override;
  void moe_route(const Tensor& idx, const Tensor& w, const Tensor& probs, const Tensor& logits, bool renorm) override;
  void moe_route_backward(const Tensor& dlogits, const Tensor& dw, const Tensor& idx, const Tensor& w, const Tensor& probs,
                          bool renorm) override;
  void moe_group(const Tensor& offsets, const Tensor& slot_tok, const Tensor& slot_w, const Tensor& slot_pair, const Tensor& idx,
                 const Tensor& w, int E) override;
  void gather_rows(const Tensor& dst, const Tensor& src, const Tensor& rows) override;
  void scatter_add_rows(const Tensor& dst, const Tensor& src, const Tensor& rows, const Tensor& w) override;
  void row_dots(const Tensor& out, const Tensor& a, const Tensor& rows, const Tensor& b) override;
  void embedding(const Tensor& x, const Tensor& table, const Tensor& ids) override;
  double cross_entropy(const Tensor& logits, const Tensor& labels, float scale) override;
  void adamw(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, float lr, float beta1, float beta2, float eps,
             float weight_decay, int64_t step) override;
};

// Shape checks shared by the backends: throw std::invalid_argument naming the op and both shapes.
void check_same(const char* op, const Tensor& a, const Tensor& b);
void check_cols(const char* op, const Tensor& t, int64_t cols);
void check_rows(const char* op, const Tensor& t, int64_t rows);
// moe_group's outputs hold the T·k pairs of w [T, k] over E experts (backend.h), and idx holds T·k ids.
void check_moe_group(const Tensor& offsets, const Tensor& slot_tok, const Tensor& slot_w, const Tensor& slot_pair, const Tensor& idx,
                     const Tensor& w, int E);

// The NF4Tensor behind an NF4 weight Tensor (tensor/tensor.h), its shape checked against ne; throws otherwise.
struct NF4Tensor;
const NF4Tensor& nf4_of(const char* op, const Tensor& W);

// In-place softmax over n floats (max-subtracted, f32 like torch's softmax(dtype=float)), the normaliser in double.
void softmax_inplace(float* x, int64_t n);

// Row r of a tensor seen as rows() rows of cols() (dimensions past the first flattened, strides honoured), as
// f32 (an f16 row's bytes are reinterpreted by the caller).
inline float* row_of(const Tensor& t, int64_t r) {
  const int64_t i1 = r % t.ne[1], rest = r / t.ne[1], i2 = rest % t.ne[2], i3 = rest / t.ne[2];
  return reinterpret_cast<float*>(static_cast<char*>(t.data) + i3 * t.nb[3] + i2 * t.nb[2] + i1 * t.nb[1]);
}

// Element (i2, i1, i0) of an f32 tensor (i0 innermost), honouring strides.
inline float* at(const Tensor& t, int64_t i2, int64_t i1, int64_t i0 = 0) {
  return reinterpret_cast<float*>(static_cast<char*>(t.data) + i2 * t.nb[2] + i1 * t.nb[1]) + i0;
}

}  // namespace moe
