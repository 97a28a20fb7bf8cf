// Block quantization (layouts in quant.h). The scale search, per block, minimises the squared reconstruction
// error E = sum_i (x_i - w_i)^2 of that block, as llama.cpp's make_qx_quants / make_qkx2_quants do (our own
// formulation, unweighted):
//
// Symmetric formats (Q8_0: q in [-127, 127]; Q4_0: q in [-8, 7], w = d*q):
//   Let m be the element of largest magnitude (with its sign). Absmax maps m to -nneg (Q4_0 uses the extra
//   negative level this way: d = m / -8). We try 19 candidate inverse scales  iscale = -(nneg + 0.1*s) / m,
//   s = -9..9 (s = 0 is absmax), quantize q_i = clamp(round(iscale * x_i)), then for those q take the
//   least-squares scale  d* = sum x_i q_i / sum q_i^2  (the d minimising E for fixed q), round it to f16 (what
//   is stored), and keep the candidate with the least E (closed form from its sums); the winner's q are then
//   re-rounded against its stored d. The least-squares step never increases E for fixed q, so the result is
//   never worse than absmax's q up to the f16 rounding of d; measured 11-13% lower MSE (tests).
//
// Q4_K (asymmetric, per 32-weight sub-block j: w = s_j*q - b_j, q in [0, 15], b_j >= 0):
//   For each sub-block: with lo = min(min x, 0), hi = max x, try 21 inverse scales iscale = (15 + t)/(hi - lo),
//   t = -1.0, -0.9, ..., 1.0; quantize q_i = clamp(round(iscale*(x_i - lo)), 0, 15); for those q solve the 2x2
//   least-squares problem for (s, c) in x ≈ s*q + c:
//     det = n*Sqq - Sq^2,  s = (n*Sqx - Sq*Sx)/det,  c = (Sqq*Sx - Sq*Sqx)/det   (c clamped to <= 0, then
//     s = Sqx/Sqq)  — and keep the (s, b = -c) with the least E.
//   Then the super-block: d = max_j s_j / 63, dmin = max_j b_j / 63 (as f16), sc_j = round(s_j/d),
//   m_j = round(b_j/dmin) (6 bits each), and the final q_i = clamp(round((x_i + dmin*m_j) / (d*sc_j)), 0, 15)
//   with the stored, quantized scales.
#include "quant/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include "cpu/thread_pool.h"

namespace moe {

int qblock_size(DType t) {
  switch (t) {
    case DType::Q8_0: return QK8_0;
    case DType::Q4_0: return QK4_0;
    case DType::Q4_K: return QK_K;
    default: throw std::invalid_argument(std::string("not a block-quantized type: ") + dtype_name(t));
  }
}

int qblock_bytes(DType t) {
  switch (t) {
    case DType::Q8_0: return int(sizeof(BlockQ8_0));
    case DType::Q4_0: return int(sizeof(BlockQ4_0));
    case DType::Q4_K: return int(sizeof(BlockQ4_K));
    default: throw std::invalid_argument(std::string("not a block-quantized type: ") + dtype_name(t));
  }
}

size_t qbytes(DType t, int64_t count) {
  const int b = qblock_size(t);
  if (count < 0 || count % b != 0)
    throw std::invalid_argument(std::string(qtype_name(t)) + ": " + std::to_string(count) + " values is not a multiple of the block of " +
                                std::to_string(b));
  return size_t(count / b) * size_t(qblock_bytes(t));
}

DType qtype_from_name(const std::string& name) {
  if (name == "q8_0") return DType::Q8_0;
  if (name == "q4_0") return DType::Q4_0;
  if (name == "q4_k") return DType::Q4_K;
  throw std::invalid_argument("unsupported quantization format '" + name + "' (expected q8_0, q4_0 or q4_k)");
}

const char* qtype_name(DType t) { return dtype_name(t); }

namespace {

inline int round_int(float v) { return int(std::lrintf(v)); }  // round half to even (default FP mode)
inline float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

// Symmetric block search (Q8_0, Q4_0). Writes q[n] in [qmin, qmax] and returns the stored (f16) scale.
// One pass per candidate: for its q the error at scale d is E(d) = Sxx - 2 d Sqx + d^2 Sqq (closed form), taken
// at the stored f16 d; only the winner is re-rounded against its stored d (which can only lower its error).
uint16_t search_symmetric(const float* x, int n, int nneg, int qmin, int qmax, int8_t* q) {
  float m = 0, amax = 0, sxx = 0;
  for (int i = 0; i < n; ++i) { sxx += x[i] * x[i]; if (std::fabs(x[i]) > amax) { amax = std::fabs(x[i]); m = x[i]; } }
  if (amax == 0) { std::fill(q, q + n, int8_t(0)); return 0; }
  float best_err = INFINITY; uint16_t best_d = 0;
  for (int s = -9; s <= 9; ++s) {
    const float iscale = -(float(nneg) + 0.1f * float(s)) / m;
    float sqx = 0, sqq = 0;
    for (int i = 0; i < n; ++i) {
      const float v = std::clamp(float(round_int(iscale * x[i])), float(qmin), float(qmax));
      sqx += x[i] * v; sqq += v * v;
    }
    if (sqq == 0) continue;
    const uint16_t dh = f32_to_f16(sqx / sqq);
    const float d = f16_to_f32(dh);
    if (d == 0 || !std::isfinite(d)) continue;
    const float err = sxx - 2 * d * sqx + d * d * sqq;
    if (err < best_err) { best_err = err; best_d = dh; }
  }
  if (best_err == INFINITY) { std::fill(q, q + n, int8_t(0)); return 0; }  // e.g. values below f16's range
  const float id = 1.0f / f16_to_f32(best_d);
  for (int i = 0; i < n; ++i) q[i] = int8_t(std::clamp(round_int(x[i] * id), qmin, qmax));
  return best_d;
}

void quantize_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) b[i].d = search_symmetric(x + i * QK8_0, QK8_0, 127, -127, 127, b[i].qs);
}

void quantize_q4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  int8_t q[QK4_0];
  for (int64_t i = 0; i < nb; ++i) {
    b[i].d = search_symmetric(x + i * QK4_0, QK4_0, 8, -8, 7, q);
    for (int j = 0; j < QK4_0 / 2; ++j) b[i].qs[j] = uint8_t((q[j] + 8) | ((q[j + QK4_0 / 2] + 8) << 4));
  }
}

// One 32-weight Q4_K sub-block: best (s, b) with x ≈ s*q - b, s >= 0, b >= 0. One pass per candidate: with
// c = -b, E = Sxx - 2 s Sqx - 2 c Sx + s^2 Sqq + 2 s c Sq + n c^2 (closed form from the candidate's sums).
void search_q4k_sub(const float* x, float& s_out, float& b_out) {
  constexpr int n = 32;
  float lo = 0, hi = x[0], sx = 0, sxx = 0;
  for (int i = 0; i < n; ++i) { lo = std::min(lo, x[i]); hi = std::max(hi, x[i]); sx += x[i]; sxx += x[i] * x[i]; }
  if (hi <= lo) { s_out = 0; b_out = -lo; return; }  // constant block: w = -b
  auto error = [&](float s, float c, float sq, float sqq, float sqx) {
    return sxx - 2 * s * sqx - 2 * c * sx + s * s * sqq + 2 * s * c * sq + float(n) * c * c;
  };
  float best_s = 0, best_c = 0, best_err = INFINITY;
  for (int t = -10; t <= 11; ++t) {  // t = 11: plain min/max (scale (hi-lo)/15, offset lo), no least squares
    const float iscale = t == 11 ? 15.0f / (hi - lo) : (15.0f + 0.1f * float(t)) / (hi - lo);
    float sq = 0, sqq = 0, sqx = 0;
    for (int i = 0; i < n; ++i) {
      const float q = std::clamp(float(round_int(iscale * (x[i] - lo))), 0.0f, 15.0f);
      sq += q; sqq += q * q; sqx += q * x[i];
    }
    float s, c;
    if (t == 11) { s = (hi - lo) / 15.0f; c = lo; }
    else {
      const float det = float(n) * sqq - sq * sq;
      if (det <= 0) continue;
      s = (float(n) * sqx - sq * sx) / det; c = (sqq * sx - sq * sqx) / det;
      if (c > 0) { c = 0; s = sqx / sqq; }
    }
    if (s <= 0) continue;
    const float err = error(s, c, sq, sqq, sqx);
    if (err < best_err) { best_err = err; best_s = s; best_c = c; }
  }
  if (best_err == INFINITY) { best_s = (hi - lo) / 15.0f; best_c = lo; }
  s_out = best_s; b_out = -best_c;
}

void quantize_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * QK_K;
    float s[8], mn[8], smax = 0, mmax = 0;
    for (int j = 0; j < 8; ++j) {
      search_q4k_sub(xb + 32 * j, s[j], mn[j]);
      smax = std::max(smax, s[j]); mmax = std::max(mmax, mn[j]);
    }
    BlockQ4_K& B = b[i];
    B.d = f32_to_f16(smax / 63.0f); B.dmin = f32_to_f16(mmax / 63.0f);
    const float d = f16_to_f32(B.d), dmin = f16_to_f32(B.dmin);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = d > 0 ? uint8_t(std::clamp(round_int(s[j] / d), 0, 63)) : 0;
      m[j] = dmin > 0 ? uint8_t(std::clamp(round_int(mn[j] / dmin), 0, 63)) : 0;
    }
    std::memset(B.scales, 0, sizeof B.scales);
    for (int j = 0; j < 8; ++j) {
      if (j < 4) { B.scales[j] = sc[j]; B.scales[j + 4] = m[j]; }
      else {
        B.scales[j + 4] = uint8_t((sc[j] & 15) | ((m[j] & 15) << 4));
        B.scales[j - 4] |= uint8_t((sc[j] >> 4) << 6);
        B.scales[j] |= uint8_t((m[j] >> 4) << 6);
      }
    }
    uint8_t q[QK_K];
    for (int j = 0; j < 8; ++j) {
      const float sj = d * float(sc[j]), bj = dmin * float(m[j]);
      for (int k = 0; k < 32; ++k) q[32 * j + k] = sj > 0 ? uint8_t(std::clamp(round_int((xb[32 * j + k] + bj) / sj), 0, 15)) : 0;
    }
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l) B.qs[32 * g + l] = uint8_t(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
  }
}

void dequantize_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < QK8_0; ++j) y[i * QK8_0 + j] = d * float(b[i].qs[j]);
  }
}

void dequantize_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      y[i * QK4_0 + j] = d * float((b[i].qs[j] & 15) - 8);
      y[i * QK4_0 + j + QK4_0 / 2] = d * float((b[i].qs[j] >> 4) - 8);
    }
  }
}

void dequantize_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    float* yb = y + i * QK_K;
    for (int g = 0; g < 4; ++g) {
      uint8_t sc0, m0, sc1, m1;
      q4k_scale_min(2 * g, b[i].scales, sc0, m0);
      q4k_scale_min(2 * g + 1, b[i].scales, sc1, m1);
      const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
      const uint8_t* q = b[i].qs + 32 * g;
      for (int l = 0; l < 32; ++l) {
        yb[64 * g + l] = d0 * float(q[l] & 15) - mm0;
        yb[64 * g + 32 + l] = d1 * float(q[l] >> 4) - mm1;
      }
    }
  }
}

}  // namespace

void quantize_row(DType t, const float* x, void* out, int64_t count) {
  const int64_t nb = int64_t(qbytes(t, count) / size_t(qblock_bytes(t)));
  switch (t) {
    case DType::Q8_0: quantize_q8_0(x, static_cast<BlockQ8_0*>(out), nb); break;
    case DType::Q4_0: quantize_q4_0(x, static_cast<BlockQ4_0*>(out), nb); break;
    default: quantize_q4_k(x, static_cast<BlockQ4_K*>(out), nb); break;
  }
}

void dequantize_row(DType t, const void* in, float* y, int64_t count) {
  const int64_t nb = int64_t(qbytes(t, count) / size_t(qblock_bytes(t)));
  switch (t) {
    case DType::Q8_0: dequantize_q8_0(static_cast<const BlockQ8_0*>(in), y, nb); break;
    case DType::Q4_0: dequantize_q4_0(static_cast<const BlockQ4_0*>(in), y, nb); break;
    default: dequantize_q4_k(static_cast<const BlockQ4_K*>(in), y, nb); break;
  }
}

void quantize_tensor(DType t, const float* x, void* out, int64_t count, ThreadPool* pool) {
  const size_t total = qbytes(t, count);
  const int bs = qblock_size(t), bb = qblock_bytes(t);
  const int64_t nb = int64_t(total / size_t(bb));
  auto run = [&](int64_t b0, int64_t b1, int) {
    quantize_row(t, x + b0 * bs, static_cast<uint8_t*>(out) + b0 * bb, (b1 - b0) * bs);
  };
  if (pool && pool->size() > 1 && nb > 64) pool->run(nb, 64, [&](int64_t a, int64_t b, int th) { run(a, b, th); });
  else run(0, nb, 0);
}

void dequantize_tensor(DType t, const void* in, float* y, int64_t count, ThreadPool* pool) {
  const size_t total = qbytes(t, count);
  const int bs = qblock_size(t), bb = qblock_bytes(t);
  const int64_t nb = int64_t(total / size_t(bb));
  auto run = [&](int64_t b0, int64_t b1, int) {
    dequantize_row(t, static_cast<const uint8_t*>(in) + b0 * bb, y + b0 * bs, (b1 - b0) * bs);
  };
  if (pool && pool->size() > 1 && nb > 256) pool->run(nb, 256, [&](int64_t a, int64_t b, int th) { run(a, b, th); });
  else run(0, nb, 0);
}

}  // namespace moe
