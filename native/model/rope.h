// Rotary position embeddings, computed exactly as transformers' modeling_rope_utils.py does (f32 tables).
//   inv_freq[i] = 1 / base^(2i/d),  i in [0, d/2)                           (default)
//   linear:  inv_freq / factor
//   dynamic: base' = base·(factor·L/max_pos − (factor−1))^(d/(d−2)) when L = seq_len > max_pos (recomputed per call)
//   ntk_alpha (Hunyuan): base' = base·alpha^(d/(d−2))
//   llama3:  per-frequency blend of inv_freq and inv_freq/factor by wavelength vs original context
//   yarn:    ramp between interpolated (1/(factor·base^…)) and extrapolated frequencies; cos/sin × attention_factor
// Rotation (rotate_half convention, backend.h `rope`): for j < d/2, (x_j, x_{j+d/2}) -> (x_j·c − x_{j+d/2}·s, x_{j+d/2}·c + x_j·s),
// with c = cos(pos·inv_freq_j)·a, s = sin(pos·inv_freq_j)·a, a = attention scaling.
#pragma once
#include <cstdint>
#include "format/config.h"

namespace moe {

// Writes d/2 inverse frequencies for a sequence of seq_len tokens (only "dynamic" depends on seq_len);
// returns the attention scaling applied to cos and sin (1 except for yarn).
float rope_inv_freq(const RopeSpec& r, int head_dim, int64_t max_position, int64_t seq_len, float* inv_freq);

// cos/sin tables for T positions pos0..pos0+T-1: cos, sin: [T, d/2].
void rope_tables(const float* inv_freq, float scaling, int head_dim, int64_t pos0, int64_t T, float* cos, float* sin);

// The rotation itself is the backend's `rope` op (backend/backend.h).

}  // namespace moe
