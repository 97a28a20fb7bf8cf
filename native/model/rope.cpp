#include "model/rope.h"
#include <algorithm>
#include <cmath>

namespace moe {

static constexpr double kPi = 3.14159265358979323846;

namespace {
// torch: 1.0 / (base ** (arange(0, d, 2).float() / d)) in f32.
void base_inv_freq(double base, int dim, float* out) {
  for (int i = 0; i < dim / 2; ++i) {
    float e = float(2 * i) / float(dim);
    float p = float(std::pow(base, double(e)));
    out[i] = 1.0f / p;
  }
}
}  // namespace

float rope_inv_freq(const RopeSpec& r, int head_dim, int64_t max_position, int64_t seq_len, float* inv) {
  const int dim = head_dim;
  const int half = dim / 2;
  const std::string& t = r.type;
  if (t == "linear") {
    base_inv_freq(r.theta, dim, inv);
    for (int i = 0; i < half; ++i) inv[i] /= float(r.factor);
    return 1.0f;
  }
  if (t == "dynamic") {
    double L = double(std::max<int64_t>(seq_len, max_position));
    double base = r.theta * std::pow(r.factor * L / double(max_position) - (r.factor - 1), double(dim) / double(dim - 2));
    base_inv_freq(base, dim, inv);
    return 1.0f;
  }
  if (t == "ntk_alpha") {
    base_inv_freq(r.theta * std::pow(r.alpha, double(dim) / double(dim - 2)), dim, inv);
    return 1.0f;
  }
  if (t == "llama3") {
    base_inv_freq(r.theta, dim, inv);
    const float factor = float(r.factor), lo = float(r.low_freq_factor), hi = float(r.high_freq_factor);
    const float old_ctx = float(r.original_max_position);
    const float low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
    for (int i = 0; i < half; ++i) {
      float f = inv[i];
      float wavelen = float(2 * kPi) / f;
      float fl = wavelen > low_wavelen ? f / factor : f;
      bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      if (medium) {
        float smooth = (old_ctx / wavelen - lo) / (hi - lo);
        fl = (1 - smooth) * fl / factor + smooth * fl;
      }
      inv[i] = fl;
    }
    return 1.0f;
  }
  if (t == "yarn") {
    const double factor = r.factor;
    auto get_mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    double attn = r.attention_factor;
    if (attn < 0) {
      if (r.mscale != 0 && r.mscale_all_dim != 0) attn = get_mscale(factor, r.mscale) / get_mscale(factor, r.mscale_all_dim);
      else attn = get_mscale(factor, 1.0);
    }
    const double base = r.theta, omp = r.original_max_position;
    auto corr_dim = [&](double rot) { return (dim * std::log(omp / (rot * 2 * kPi))) / (2 * std::log(base)); };
    double low = corr_dim(r.beta_fast), high = corr_dim(r.beta_slow);
    if (r.truncate) { low = std::floor(low); high = std::ceil(high); }
    low = std::max(low, 0.0); high = std::min(high, double(dim - 1));
    if (low == high) high += 0.001;
    for (int i = 0; i < half; ++i) {
      float pos_freq = float(std::pow(base, double(float(2 * i) / float(dim))));
      float extrap = 1.0f / pos_freq;
      float interp = 1.0f / (float(factor) * pos_freq);
      float ramp = (float(i) - float(low)) / (float(high) - float(low));
      ramp = std::min(1.0f, std::max(0.0f, ramp));
      float ef = 1.0f - ramp;  // extrapolation weight
      inv[i] = interp * (1 - ef) + extrap * ef;
    }
    return float(attn);
  }
  base_inv_freq(r.theta, dim, inv);  // default
  return 1.0f;
}

void rope_tables(const float* inv_freq, float scaling, int head_dim, int64_t pos0, int64_t T, float* cos, float* sin) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < T; ++t) {
    float p = float(pos0 + t);
    for (int i = 0; i < half; ++i) {
      float f = inv_freq[i] * p;  // f32 product, as torch's (inv_freq @ position_ids)
      cos[t * half + i] = float(std::cos(double(f))) * scaling;
      sin[t * half + i] = float(std::sin(double(f))) * scaling;
    }
  }
}

}  // namespace moe
