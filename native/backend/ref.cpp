#include "backend/ref.h"
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>
#include "cpu/matmul.h"
#include "cpu/nf4_matmul.h"
#include "model/experts.h"
#include "train/dropout.h"
#include "quant/nf4.h"
#include "quant/quant.h"

namespace moe {

void check_same(const char* op, const Tensor& a, const Tensor& b) {
  if (a.cols() != b.cols() || a.rows() != b.rows())
    throw std::invalid_argument(std::string(op) + ": shapes " + shape_of(a) + " and " + shape_of(b) + " differ");
}
void check_cols(const char* op, const Tensor& t, int64_t cols) {
  if (t.cols() != cols) throw std::invalid_argument(std::string(op) + ": " + shape_of(t) + " should have " + std::to_string(cols) + " columns");
}
void check_rows(const char* op, const Tensor& t, int64_t rows) {
  if (t.rows() != rows) throw std::invalid_argument(std::string(op) + ": " + shape_of(t) + " should have " + std::to_string(rows) + " rows");
}

void check_moe_group(const Tensor& offsets, const Tensor& slot_tok, const Tensor& slot_w, const Tensor& slot_pair, const Tensor& idx,
                     const Tensor& w, int E) {
  const int64_t n = w.rows() * w.cols();
  if (idx.numel() < n || offsets.numel() < E + 1 || slot_tok.numel() < n || slot_w.numel() < n || (!slot_pair.empty() && slot_pair.numel() < n))
    throw std::invalid_argument("moe_group: idx " + shape_of(idx) + " / outputs too small for " + std::to_string(w.rows()) + " x " +
                                std::to_string(w.cols()) + " pairs over " + std::to_string(E) + " experts");
}

const NF4Tensor& nf4_of(const char* op, const Tensor& W) {
  if (W.type != DType::NF4 || !W.data) throw std::invalid_argument(std::string(op) + ": not an NF4 weight");
  const NF4Tensor& t = *static_cast<const NF4Tensor*>(W.data);
  if (t.rows != W.rows() || t.cols != W.cols())
    throw std::invalid_argument(std::string(op) + ": NF4 weight " + shape_of(W) + " holds a [" + std::to_string(t.rows) + ", " +
                                std::to_string(t.cols) + "] tensor");
  return t;
}

namespace {

inline const int32_t* ints(const Tensor& t) { return static_cast<const int32_t*>(t.data); }

// W[N, K] of any stored dtype as f32 (tests only: ref is not a hot path).
std::vector<float> dequantized(const Tensor& W) {
  std::vector<float> w(size_t(W.rows() * W.cols()));
  for (int64_t n = 0; n < W.rows(); ++n) row_to_f32(w.data() + n * W.cols(), W.data, W.type, n, W.cols());
  return w;
}

inline double sigm(double g) { return 1.0 / (1.0 + std::exp(-g)); }

// p[0, n) = softmax of the scores in p, in double (max-subtracted).
void softmax_d(std::vector<double>& p, int64_t n) {
  double m = -INFINITY, sum = 0;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, p[size_t(j)]);
  for (int64_t j = 0; j < n; ++j) { p[size_t(j)] = std::exp(p[size_t(j)] - m); sum += p[size_t(j)]; }
  for (int64_t j = 0; j < n; ++j) p[size_t(j)] /= sum;
}

}  // namespace

void RefBackend::matmul(const Tensor& y, const Tensor& x, const Tensor& W, bool accumulate) {
  check_cols("matmul", x, W.cols()); check_cols("matmul", y, W.rows()); check_rows("matmul", y, x.rows());
  if (W.type == DType::NF4) { nf4_matmul_ref(y.f32(), y.ld(), x.f32(), x.ld(), nf4_of("matmul", W), x.rows(), accumulate); return; }
  matmul_ref(y.f32(), y.ld(), x.f32(), x.ld(), W.data, W.type, x.rows(), W.rows(), W.cols(), accumulate);
}

void RefBackend::matmul_dx(const Tensor& dx, const Tensor& dy, const Tensor& W, bool accumulate) {
  check_cols("matmul_dx", dy, W.rows()); check_cols("matmul_dx", dx, W.cols()); check_rows("matmul_dx", dx, dy.rows());
  if (W.type == DType::NF4) {
    nf4_matmul_dx_ref(dx.f32(), dx.ld(), dy.f32(), dy.ld(), nf4_of("matmul_dx", W), dy.rows(), accumulate);
    return;
  }
  const int64_t M = dy.rows(), N = W.rows(), K = W.cols();
  const std::vector<float> w = dequantized(W);
  for (int64_t m = 0; m < M; ++m) {
    const float* g = dy.row(m); float* o = dx.row(m);
    for (int64_t k = 0; k < K; ++k) {
      double s = 0;
      for (int64_t n = 0; n < N; ++n) s += double(g[n]) * double(w[size_t(n * K + k)]);
      o[k] = accumulate ? float(o[k] + s) : float(s);
    }
  }
}

void RefBackend::matmul_dw(const Tensor& dW, const Tensor& dy, const Tensor& x, bool accumulate) {
  check_rows("matmul_dw", dy, x.rows()); check_rows("matmul_dw", dW, dy.cols()); check_cols("matmul_dw", dW, x.cols());
  const int64_t M = x.rows(), N = dy.cols(), K = x.cols();
  for (int64_t n = 0; n < N; ++n) {
    float* o = dW.row(n);
    for (int64_t k = 0; k < K; ++k) {
      double s = 0;
      for (int64_t m = 0; m < M; ++m) s += double(dy.row(m)[n]) * double(x.row(m)[k]);
      o[k] = accumulate ? float(o[k] + s) : float(s);
    }
  }
}

void RefBackend::add_bias(const Tensor& y, const Tensor& b) {
  check_cols("add_bias", b, y.cols());
  for (int64_t r = 0; r < y.rows(); ++r) { float* o = row_of(y, r); for (int64_t i = 0; i < y.cols(); ++i) o[i] += b.f32()[i]; }
}

void RefBackend::rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, float eps, const Tensor& rstd) {
  check_same("rmsnorm", out, x);
  if (!w.empty()) check_cols("rmsnorm gain", w, x.cols());
  const int64_t D = x.cols();
  for (int64_t r = 0; r < x.rows(); ++r) {
    const float* xr = row_of(x, r); float* o = row_of(out, r);
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += double(xr[i]) * double(xr[i]);
    const float s = 1.0f / std::sqrt(float(ss / double(D)) + eps);
    if (!rstd.empty()) rstd.f32()[r] = s;
    for (int64_t i = 0; i < D; ++i) o[i] = w.empty() ? xr[i] * s : w.f32()[i] * (xr[i] * s);
  }
}

void RefBackend::rmsnorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                                  const Tensor& rstd) {
  check_same("rmsnorm_backward", dx, x); check_same("rmsnorm_backward", dout, x);
  const int64_t D = x.cols();
  for (int64_t r = 0; r < x.rows(); ++r) {
    const float* xr = row_of(x, r); const float* g = row_of(dout, r); float* o = row_of(dx, r);
    double s;
    if (!rstd.empty()) s = rstd.f32()[r];
    else { double ss = 0; for (int64_t i = 0; i < D; ++i) ss += double(xr[i]) * xr[i]; s = 1.0 / std::sqrt(ss / double(D) + 1e-6); }
    double mean = 0;  // mean_i (g_i w_i) x̂_i
    for (int64_t i = 0; i < D; ++i) {
      const double gw = double(g[i]) * (w.empty() ? 1.0 : double(w.f32()[i]));
      mean += gw * double(xr[i]) * s;
      if (!dw.empty()) dw.f32()[i] += float(double(g[i]) * double(xr[i]) * s);
    }
    mean /= double(D);
    for (int64_t i = 0; i < D; ++i) {
      const double gw = double(g[i]) * (w.empty() ? 1.0 : double(w.f32()[i]));
      o[i] = float(s * (gw - double(xr[i]) * s * mean));
    }
  }
}

void RefBackend::copy(const Tensor& dst, const Tensor& src) {
  check_same("copy", dst, src);
  if (src.type != DType::F32 || (dst.type != DType::F32 && dst.type != DType::F16))
    throw std::invalid_argument(std::string("copy: ") + dtype_name(src.type) + " to " + dtype_name(dst.type) + " (f32 to f32 or f16)");
  if (dst.type == DType::F16) {
    for (int64_t r = 0; r < src.rows(); ++r) {
      const float* x = row_of(src, r);
      uint16_t* y = reinterpret_cast<uint16_t*>(row_of(dst, r));  // (row_of's offsets are bytes)
      for (int64_t i = 0; i < src.cols(); ++i) y[i] = f32_to_f16(x[i]);
    }
    return;
  }
  for (int64_t r = 0; r < src.rows(); ++r) std::memcpy(row_of(dst, r), row_of(src, r), size_t(src.cols()) * sizeof(float));
}

void RefBackend::lora_dropout(const Tensor& y, const Tensor& x, uint64_t seed, uint32_t id, float p, bool accumulate) {
  check_same("lora_dropout", y, x);
  const int64_t K = x.cols();
  const float keep = 1.0f / (1.0f - p);
  for (int64_t m = 0; m < x.rows(); ++m) {
    const float* xr = row_of(x, m); float* o = row_of(y, m);
    for (int64_t j = 0; j < K; ++j) {
      const float v = lora_keep(seed, id, uint64_t(m * K + j), p) ? xr[j] * keep : 0.0f;
      o[j] = accumulate ? o[j] + v : v;
    }
  }
}

void RefBackend::zero(const Tensor& x) {
  for (int64_t r = 0; r < x.rows(); ++r) std::memset(row_of(x, r), 0, size_t(x.cols()) * sizeof(float));
}

void RefBackend::swiglu(const Tensor& out, const Tensor& gate, const Tensor& up) {
  check_same("swiglu", out, gate); check_same("swiglu", gate, up);
  for (int64_t r = 0; r < gate.rows(); ++r) {
    const float* g = row_of(gate, r); const float* u = row_of(up, r); float* o = row_of(out, r);
    for (int64_t i = 0; i < gate.cols(); ++i) o[i] = float(double(g[i]) * sigm(g[i]) * double(u[i]));
  }
}

void RefBackend::swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate, const Tensor& up) {
  check_same("swiglu_backward", dgate, gate); check_same("swiglu_backward", dup, gate); check_same("swiglu_backward", dout, gate);
  for (int64_t r = 0; r < gate.rows(); ++r) {
    const float* g = row_of(gate, r); const float* u = row_of(up, r); const float* d = row_of(dout, r);
    float* dg = row_of(dgate, r); float* du = row_of(dup, r);
    for (int64_t i = 0; i < gate.cols(); ++i) {
      const double sg = sigm(g[i]), dd = d[i];
      du[i] = float(dd * double(g[i]) * sg);
      dg[i] = float(dd * double(u[i]) * sg * (1.0 + double(g[i]) * (1.0 - sg)));
    }
  }
}

void RefBackend::add(const Tensor& y, const Tensor& x) {
  check_same("add", y, x);
  for (int64_t r = 0; r < y.rows(); ++r) { float* o = row_of(y, r); const float* a = row_of(x, r); for (int64_t i = 0; i < y.cols(); ++i) o[i] += a[i]; }
}

void RefBackend::sigmoid(const Tensor& x) {
  for (int64_t r = 0; r < x.rows(); ++r) { float* o = row_of(x, r); for (int64_t i = 0; i < x.cols(); ++i) o[i] = 1.0f / (1.0f + std::exp(-o[i])); }
}

void RefBackend::sigmoid_backward(const Tensor& dx, const Tensor& y) {
  check_same("sigmoid_backward", dx, y);
  for (int64_t r = 0; r < dx.rows(); ++r) {
    float* d = row_of(dx, r); const float* a = row_of(y, r);
    for (int64_t i = 0; i < dx.cols(); ++i) d[i] *= a[i] * (1.0f - a[i]);
  }
}

void RefBackend::mul_cols(const Tensor& x, const Tensor& g) {
  check_cols("mul_cols", g, x.cols());
  for (int64_t r = 0; r < x.rows(); ++r) { float* o = row_of(x, r); for (int64_t i = 0; i < x.cols(); ++i) o[i] *= g.f32()[i]; }
}

void RefBackend::clamp(const Tensor& x, float c) {
  for (int64_t r = 0; r < x.rows(); ++r) { float* o = row_of(x, r); for (int64_t i = 0; i < x.cols(); ++i) o[i] = std::clamp(o[i], -c, c); }
}

void RefBackend::clamp_backward(const Tensor& dx, const Tensor& x_pre, float c) {
  check_same("clamp_backward", dx, x_pre);
  for (int64_t r = 0; r < dx.rows(); ++r) {
    float* d = row_of(dx, r); const float* a = row_of(x_pre, r);
    for (int64_t i = 0; i < dx.cols(); ++i) if (a[i] > c || a[i] < -c) d[i] = 0;
  }
}

namespace {
void rotate(const Tensor& x, const Tensor& cos, const Tensor& sin, float sign) {
  const int64_t hd = x.ne[0], H = x.ne[1], T = x.ne[2], half = hd / 2;
  check_rows("rope cos", cos, T); check_cols("rope cos", cos, half); check_same("rope sin", sin, cos);
  for (int64_t t = 0; t < T; ++t) {
    const float* c = cos.row(t); const float* s = sin.row(t);
    for (int64_t h = 0; h < H; ++h) {
      float* v = at(x, t, h);
      for (int64_t j = 0; j < half; ++j) {
        const float a = v[j], b = v[j + half], sj = sign * s[j];
        v[j] = a * c[j] - b * sj;
        v[j + half] = b * c[j] + a * sj;
      }
    }
  }
}
}  // namespace

void RefBackend::rope(const Tensor& x, const Tensor& cos, const Tensor& sin) { rotate(x, cos, sin, 1.0f); }
void RefBackend::rope_backward(const Tensor& dx, const Tensor& cos, const Tensor& sin) { rotate(dx, cos, sin, -1.0f); }

void RefBackend::attention(const Tensor& out, const Tensor& q, const Tensor& K, const Tensor& V, int64_t pos0, float scale,
                           const Tensor& att, const Tensor& scratch) {
  const int64_t hd = q.ne[0], Hq = q.ne[1], T = q.ne[2], Hkv = K.ne[1], n_all = pos0 + T;
  if (K.ne[2] < n_all || V.ne[2] < n_all || K.ne[0] != hd || Hq % Hkv != 0)
    throw std::invalid_argument("attention: q " + shape_of(q) + " does not fit the cache " + shape_of(K));
  if (K.type == DType::F16 && V.type == DType::F16 && att.empty()) {
    // the f16 cache is its f32 widening (exact), attended as such
    std::vector<float> k32(size_t(n_all * Hkv * hd)), v32(k32.size());
    for (int64_t j = 0; j < n_all; ++j)
      for (int64_t h = 0; h < Hkv; ++h)
        for (int64_t i = 0; i < hd; ++i) {
          const int64_t off = j * K.nb[2] + h * K.nb[1] + i * 2, offv = j * V.nb[2] + h * V.nb[1] + i * 2;
          k32[size_t((j * Hkv + h) * hd + i)] = f16_to_f32(*reinterpret_cast<const uint16_t*>(static_cast<const char*>(K.data) + off));
          v32[size_t((j * Hkv + h) * hd + i)] = f16_to_f32(*reinterpret_cast<const uint16_t*>(static_cast<const char*>(V.data) + offv));
        }
    attention(out, q, mat3(k32.data(), n_all, Hkv, hd), mat3(v32.data(), n_all, Hkv, hd), pos0, scale, att, scratch);
    return;
  }
  if (K.type != DType::F32 || V.type != DType::F32)
    throw std::invalid_argument(std::string("attention: a ") + dtype_name(K.type) + " cache" + (att.empty() ? "" : " with probabilities") +
                                " (f32, or f16 without probabilities)");
  const int64_t group = Hq / Hkv;
  std::vector<double> p(static_cast<size_t>(n_all));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < Hq; ++h) {
      const float* qv = at(q, t, h); const int64_t kh = h / group, n = pos0 + t + 1;
      for (int64_t j = 0; j < n; ++j) {
        double s = 0; const float* kv = at(K, j, kh);
        for (int64_t i = 0; i < hd; ++i) s += double(qv[i]) * kv[i];
        p[size_t(j)] = double(scale) * s;
      }
      softmax_d(p, n);
      if (!att.empty()) {
        float* a = att.row(t * Hq + h);
        for (int64_t j = 0; j < n_all; ++j) a[j] = j < n ? float(p[size_t(j)]) : 0.0f;
      }
      float* o = at(out, t, h);
      for (int64_t i = 0; i < hd; ++i) {
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += p[size_t(j)] * at(V, j, kh)[i];
        o[i] = float(s);
      }
    }
}

void RefBackend::attention_backward(const Tensor& dq, const Tensor& dK, const Tensor& dV, const Tensor& dout, const Tensor& q,
                                    const Tensor& K, const Tensor& V, const Tensor& att, int64_t pos0, float scale) {
  const int64_t hd = q.ne[0], Hq = q.ne[1], T = q.ne[2], Hkv = K.ne[1], group = Hq / Hkv, n_all = pos0 + T;
  check_rows("attention_backward att", att, T * Hq); check_cols("attention_backward att", att, n_all);
  std::vector<double> ds(static_cast<size_t>(n_all));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t kh = h / group, n = pos0 + t + 1;
      const float* p = att.row(t * Hq + h); const float* go = at(dout, t, h); const float* qv = at(q, t, h);
      double sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        double dp = 0; const float* vv = at(V, j, kh);
        for (int64_t i = 0; i < hd; ++i) dp += double(go[i]) * vv[i];
        ds[size_t(j)] = dp; sum += double(p[j]) * dp;
      }
      for (int64_t j = 0; j < n; ++j) ds[size_t(j)] = double(p[j]) * (ds[size_t(j)] - sum);
      float* g = at(dq, t, h);
      for (int64_t i = 0; i < hd; ++i) {
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += ds[size_t(j)] * at(K, j, kh)[i];
        g[i] = float(double(scale) * s);
      }
      for (int64_t j = 0; j < n; ++j) {
        float* gk = at(dK, j, kh); float* gv = at(dV, j, kh);
        for (int64_t i = 0; i < hd; ++i) {
          gk[i] += float(double(scale) * ds[size_t(j)] * qv[i]);
          gv[i] += float(double(p[j]) * go[i]);
        }
      }
    }
}

void RefBackend::attention_kv8(const Tensor& out, const Tensor& q, const Tensor& K8, const Tensor& Ks, const Tensor& V8,
                               const Tensor& Vs, int64_t pos0, float scale, const Tensor& scratch) {
  const int64_t hd = q.ne[0], Hq = q.ne[1], T = q.ne[2], Hkv = K8.ne[1], group = Hq / Hkv;
  auto k8 = [&](const Tensor& t, int64_t j, int64_t h) { return static_cast<const int8_t*>(t.data) + j * t.nb[2] + h * t.nb[1]; };
  std::vector<double> p(static_cast<size_t>(pos0 + T));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < Hq; ++h) {
      const float* qv = at(q, t, h); const int64_t kh = h / group, n = pos0 + t + 1;
      for (int64_t j = 0; j < n; ++j) {
        double s = 0; const int8_t* kr = k8(K8, j, kh);
        for (int64_t i = 0; i < hd; ++i) s += double(qv[i]) * double(kr[i]);
        p[size_t(j)] = double(scale) * double(Ks.row(j)[kh]) * s;
      }
      softmax_d(p, n);
      float* o = at(out, t, h);
      for (int64_t i = 0; i < hd; ++i) {
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += p[size_t(j)] * double(Vs.row(j)[kh]) * double(k8(V8, j, kh)[i]);
        o[i] = float(s);
      }
    }
}

void softmax_inplace(float* x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) { x[i] = std::exp(x[i] - m); sum += x[i]; }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void RefBackend::kv_quantize(const Tensor& q, const Tensor& s, const Tensor& x) {
  const int64_t hd = x.cols();
  for (int64_t r = 0; r < x.rows(); ++r) {
    const float* xr = row_of(x, r);
    int8_t* qr = static_cast<int8_t*>(q.data) + r * q.nb[1];
    float amax = 0;
    for (int64_t i = 0; i < hd; ++i) amax = std::max(amax, std::fabs(xr[i]));
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    for (int64_t i = 0; i < hd; ++i) qr[i] = int8_t(std::lrintf(xr[i] * id));
    s.f32()[r] = d;
  }
}

void RefBackend::moe_route(const Tensor& idx, const Tensor& w, const Tensor& probs, const Tensor& logits, bool renorm) {
  const int64_t T = logits.rows(), E = logits.cols(), k = w.cols();
  if (k > E || k < 1) throw std::invalid_argument("moe_route: top-k " + std::to_string(k) + " of " + std::to_string(E) + " experts");
  check_same("moe_route probs", probs, logits); check_rows("moe_route w", w, T);
  int32_t* ix = static_cast<int32_t*>(idx.data);
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits.row(t); float* p = probs.row(t);
    float m = l[0];
    for (int64_t e = 1; e < E; ++e) m = std::max(m, l[e]);
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) { p[e] = std::exp(l[e] - m); sum += p[e]; }
    const float inv = float(1.0 / sum);
    for (int64_t e = 0; e < E; ++e) p[e] *= inv;
    float* wv = w.row(t); int32_t* it = ix + t * k;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e) {
        bool taken = false;
        for (int64_t q = 0; q < j; ++q) if (it[q] == e) taken = true;
        if (!taken && (best < 0 || p[e] > p[best])) best = e;
      }
      it[j] = int32_t(best); wv[j] = p[best];
    }
    if (renorm) { float s = 0; for (int64_t j = 0; j < k; ++j) s += wv[j]; for (int64_t j = 0; j < k; ++j) wv[j] /= s; }
  }
}

void RefBackend::moe_route_backward(const Tensor& dlogits, const Tensor& dw, const Tensor& idx, const Tensor& w,
                                    const Tensor& probs, bool renorm) {
  const int64_t T = probs.rows(), E = probs.cols(), k = w.cols();
  check_same("moe_route_backward", dlogits, probs); check_same("moe_route_backward dw", dw, w);
  thread_local std::vector<double> dp;  // grows once (the cpu backend runs this in the training step: no allocation)
  if (dp.size() < size_t(E)) dp.resize(size_t(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* p = probs.row(t); const float* g = dw.row(t); const float* wv = w.row(t);
    const int32_t* it = ints(idx) + t * k;
    std::fill(dp.begin(), dp.begin() + E, 0.0);
    if (renorm) {
      double S = 0, gw = 0;
      for (int64_t j = 0; j < k; ++j) { S += p[it[j]]; gw += double(g[j]) * wv[j]; }
      for (int64_t j = 0; j < k; ++j) dp[size_t(it[j])] += (double(g[j]) - gw) / S;
    } else {
      for (int64_t j = 0; j < k; ++j) dp[size_t(it[j])] += g[j];
    }
    double pd = 0;
    for (int64_t e = 0; e < E; ++e) pd += double(p[e]) * dp[size_t(e)];
    float* o = dlogits.row(t);
    for (int64_t e = 0; e < E; ++e) o[e] = float(double(p[e]) * (dp[size_t(e)] - pd));
  }
}

void RefBackend::moe_group(const Tensor& offsets, const Tensor& slot_tok, const Tensor& slot_w, const Tensor& slot_pair, const Tensor& idx,
                           const Tensor& w, int E) {
  check_moe_group(offsets, slot_tok, slot_w, slot_pair, idx, w, E);
  const int64_t T = w.rows(), k = w.cols();
  const int32_t* ix = ints(idx);
  for (int64_t i = 0; i < T * k; ++i)
    if (ix[i] < 0 || ix[i] >= E) throw std::out_of_range("moe_group: expert " + std::to_string(ix[i]) + " of " + std::to_string(E));
  thread_local std::vector<int32_t> counts;  // grows once
  if (counts.size() < size_t(E)) counts.resize(size_t(E));
  group_by_expert(ix, w.f32(), T, int(k), E, counts.data(), static_cast<int32_t*>(offsets.data), static_cast<int32_t*>(slot_tok.data),
                  slot_w.f32(), slot_pair.empty() ? nullptr : static_cast<int32_t*>(slot_pair.data));
}

void RefBackend::gather_rows(const Tensor& dst, const Tensor& src, const Tensor& rows) {
  check_cols("gather_rows", dst, src.cols());
  for (int64_t i = 0; i < dst.rows(); ++i) {
    const int64_t r = ints(rows)[i];
    if (r < 0 || r >= src.rows()) throw std::out_of_range("gather_rows: row " + std::to_string(r) + " of " + std::to_string(src.rows()));
    std::copy(src.row(r), src.row(r) + src.cols(), dst.row(i));
  }
}

void RefBackend::scatter_add_rows(const Tensor& dst, const Tensor& src, const Tensor& rows, const Tensor& w) {
  check_cols("scatter_add_rows", dst, src.cols());
  for (int64_t i = 0; i < src.rows(); ++i) {
    const int64_t r = rows.empty() ? i : ints(rows)[i];
    if (r < 0 || r >= dst.rows()) throw std::out_of_range("scatter_add_rows: row " + std::to_string(r) + " of " + std::to_string(dst.rows()));
    const float a = w.empty() ? 1.0f : w.f32()[i];
    float* o = dst.row(r); const float* s = src.row(i);
    for (int64_t c = 0; c < src.cols(); ++c) o[c] += a * s[c];
  }
}

void RefBackend::row_dots(const Tensor& out, const Tensor& a, const Tensor& rows, const Tensor& b) {
  check_cols("row_dots", a, b.cols());
  for (int64_t i = 0; i < b.rows(); ++i) {
    const int64_t r = rows.empty() ? i : ints(rows)[i];
    double s = 0; const float* x = a.row(r); const float* y = b.row(i);
    for (int64_t c = 0; c < b.cols(); ++c) s += double(x[c]) * y[c];
    out.f32()[i] = float(s);
  }
}

void RefBackend::embedding(const Tensor& x, const Tensor& table, const Tensor& ids) {
  check_cols("embedding", x, table.cols());
  const int64_t V = table.rows();
  for (int64_t t = 0; t < x.rows(); ++t) {
    const int64_t id = ints(ids)[t];
    if (id < 0 || id >= V) throw std::out_of_range("token id " + std::to_string(id) + " is out of range [0, " + std::to_string(V) + ")");
    row_to_f32(x.row(t), table.data, table.type, id, table.cols());
  }
}

double RefBackend::cross_entropy(const Tensor& logits, const Tensor& labels, float scale) {
  const int64_t n = logits.rows(), V = logits.cols();
  double loss = 0;
  for (int64_t r = 0; r < n; ++r) {
    float* l = logits.row(r); const int64_t y = ints(labels)[r];
    if (y == -100) { std::fill(l, l + V, 0.0f); continue; }
    if (y < 0 || y >= V) throw std::out_of_range("label " + std::to_string(y) + " is out of range [0, " + std::to_string(V) + ")");
    double m = l[0];
    for (int64_t i = 1; i < V; ++i) m = std::max(m, double(l[i]));
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(double(l[i]) - m);
    const double lse = m + std::log(sum);
    loss += lse - double(l[y]);
    for (int64_t i = 0; i < V; ++i) l[i] = float(double(scale) * (std::exp(double(l[i]) - lse) - (i == y ? 1.0 : 0.0)));
  }
  return loss;
}

void RefBackend::adamw(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, float lr, float beta1, float beta2,
                       float eps, float weight_decay, int64_t step) {
  check_same("adamw", p, g); check_same("adamw", p, m); check_same("adamw", p, v);
  if (step < 1) throw std::invalid_argument("adamw: step must be >= 1");
  // torch.optim.AdamW (foreach=False): p *= 1 − lr·wd; m, v updated; p −= (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps)
  const double bc1 = 1.0 - std::pow(double(beta1), double(step)), bc2 = 1.0 - std::pow(double(beta2), double(step));
  const float step_size = float(double(lr) / bc1), bc2_sqrt = float(std::sqrt(bc2));
  for (int64_t r = 0; r < p.rows(); ++r) {
    float* pp = row_of(p, r); const float* gg = row_of(g, r); float* mm = row_of(m, r); float* vv = row_of(v, r);
    for (int64_t i = 0; i < p.cols(); ++i) {
      pp[i] *= 1.0f - lr * weight_decay;
      mm[i] += (1.0f - beta1) * (gg[i] - mm[i]);   // torch: exp_avg.lerp_(grad, 1 − β1)
      vv[i] = beta2 * vv[i] + (1.0f - beta2) * gg[i] * gg[i];
      pp[i] -= step_size * mm[i] / (std::sqrt(vv[i]) / bc2_sqrt + eps);
    }
  }
}

}  // namespace moe
