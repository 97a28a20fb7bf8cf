#include "model/ops.h"
#include <algorithm>
#include <cmath>
#include "cpu/matmul.h"

namespace moe {

void rmsnorm_forward(float* out, const float* x, const float* w, int64_t T, int64_t D, float eps, float* rstd) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D; float* o = out + t * D;
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += double(xr[i]) * double(xr[i]);
    float r = 1.0f / std::sqrt(float(ss / double(D)) + eps);
    if (rstd) rstd[t] = r;
    if (w) for (int64_t i = 0; i < D; ++i) o[i] = w[i] * (xr[i] * r);
    else   for (int64_t i = 0; i < D; ++i) o[i] = xr[i] * r;
  }
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t T, int64_t I) {
  const int64_t n = T * I;
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void softmax_inplace(float* x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) { x[i] = std::exp(x[i] - m); sum += x[i]; }
  float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void residual_forward(float* y, const float* x, int64_t n) { for (int64_t i = 0; i < n; ++i) y[i] += x[i]; }

void attention_forward(ThreadPool& pool, float* out, const float* q, int64_t q_stride, const float* K, const float* V,
                       int64_t pos0, int64_t T, int Hq, int Hkv, int hd, float scale, float* scores, int64_t ctx,
                       float* att) {
  const int group = Hq / Hkv;
  const int64_t kv_stride = int64_t(Hkv) * hd;
  pool.run(T * Hq, 1, [&](int64_t b, int64_t e, int tid) {
    float* sc = scores + int64_t(tid) * ctx;
    for (int64_t th = b; th < e; ++th) {
      const int64_t t = th / Hq; const int h = int(th % Hq), kh = h / group;
      const float* qv = q + t * q_stride + int64_t(h) * hd;
      const int64_t n = pos0 + t + 1;  // causal: keys 0..pos0+t
      vec_dot_rows_f32(sc, qv, K + int64_t(kh) * hd, kv_stride, n, hd, scale);  // sc[j] = scale * q·K[j]
      softmax_inplace(sc, n);
      if (att) std::copy(sc, sc + n, att + (t * Hq + h) * (pos0 + T));
      float* o = out + t * int64_t(Hq) * hd + int64_t(h) * hd;
      std::fill(o, o + hd, 0.0f);
      vec_axpy_rows_f32(o, sc, V + int64_t(kh) * hd, kv_stride, n, hd);  // o = sum_j sc[j] V[j]
    }
  });
}

void kv_quantize_rows(int8_t* q, float* s, const float* x, int64_t n, int hd) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * hd;
    float amax = 0;
    for (int i = 0; i < hd; ++i) amax = std::max(amax, std::fabs(xr[i]));
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < hd; ++i) q[r * hd + i] = int8_t(std::lrintf(xr[i] * id));
    s[r] = d;
  }
}

void attention_forward_kv8(ThreadPool& pool, float* out, const float* q, int64_t q_stride, const int8_t* K8, const float* Ks,
                           const int8_t* V8, const float* Vs, int64_t pos0, int64_t T, int Hq, int Hkv, int hd, float scale,
                           float* scores, int64_t ctx) {
  const int group = Hq / Hkv;
  const int64_t kv_stride = int64_t(Hkv) * hd;
  pool.run(T * Hq, 1, [&](int64_t b, int64_t e, int tid) {
    float* sc = scores + int64_t(tid) * ctx;
    for (int64_t th = b; th < e; ++th) {
      const int64_t t = th / Hq; const int h = int(th % Hq), kh = h / group;
      const float* qv = q + t * q_stride + int64_t(h) * hd;
      const int64_t n = pos0 + t + 1;
      for (int64_t j = 0; j < n; ++j) {
        const int8_t* kr = K8 + j * kv_stride + int64_t(kh) * hd;
        float d = 0;
        for (int i = 0; i < hd; ++i) d += qv[i] * float(kr[i]);  // vectorised by the compiler (int8 -> f32)
        sc[j] = scale * Ks[j * Hkv + kh] * d;
      }
      softmax_inplace(sc, n);
      float* o = out + t * int64_t(Hq) * hd + int64_t(h) * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const int8_t* vr = V8 + j * kv_stride + int64_t(kh) * hd;
        const float w = sc[j] * Vs[j * Hkv + kh];
        for (int i = 0; i < hd; ++i) o[i] += w * float(vr[i]);
      }
    }
  });
}

void moe_route_forward(const float* logits, int64_t T, int E, int k, bool renorm, int32_t* idx, float* w, float* p) {
  for (int64_t t = 0; t < T; ++t) {
    std::copy(logits + t * E, logits + (t + 1) * E, p);
    softmax_inplace(p, E);
    int32_t* ix = idx + t * k; float* wv = w + t * k;
    for (int j = 0; j < k; ++j) {  // selection of the k largest (k is small)
      int best = -1;
      for (int e = 0; e < E; ++e) {
        bool taken = false;
        for (int q = 0; q < j; ++q) if (ix[q] == e) { taken = true; break; }
        if (!taken && (best < 0 || p[e] > p[best])) best = e;
      }
      ix[j] = best; wv[j] = p[best];
    }
    if (renorm) {
      float s = 0; for (int j = 0; j < k; ++j) s += wv[j];
      for (int j = 0; j < k; ++j) wv[j] /= s;
    }
  }
}

}  // namespace moe
