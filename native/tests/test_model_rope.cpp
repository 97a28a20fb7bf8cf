// RoPE inverse frequencies vs transformers 5.18 (values printed by modeling_rope_utils.ROPE_INIT_FUNCTIONS with
// head_dim 32, max_position_embeddings 256).
#include "tests/test.h"
#include "backend/backend.h"
#include "model/rope.h"

using namespace moe;

static void check_inv(const RopeSpec& r, int64_t seq_len, float want_att, std::initializer_list<double> want) {
  float inv[16];
  float att = rope_inv_freq(r, 32, 256, seq_len, inv);
  CHECK_NEAR(att, want_att, 1e-6);
  const int idx[] = {0, 1, 5, 7, 15};
  int k = 0;
  for (double w : want) { CHECK_NEAR(inv[idx[k]], w, std::fabs(w) * 2e-6 + 1e-12); ++k; }
}

TEST(model_rope_inv_freq_matches_transformers) {
  RopeSpec lin; lin.type = "linear"; lin.factor = 4; lin.theta = 10000;
  check_inv(lin, 256, 1.0f, {0.25, 0.140585333, 0.0140585322, 0.00444569858, 4.44569851e-05});
  RopeSpec dyn; dyn.type = "dynamic"; dyn.factor = 2; dyn.theta = 10000;
  check_inv(dyn, 1000, 1.0f, {1, 0.494818866, 0.0296641011, 0.00726312678, 2.61031855e-05});
  RopeSpec l3; l3.type = "llama3"; l3.factor = 8; l3.low_freq_factor = 1; l3.high_freq_factor = 4; l3.original_max_position = 64; l3.theta = 500000;
  check_inv(l3, 256, 1.0f, {1, 0.440366626, 0.00207005511, 0.000401430763, 5.6770881e-07});
  RopeSpec y; y.type = "yarn"; y.factor = 4; y.original_max_position = 64; y.theta = 10000;
  check_inv(y, 256, 1.13862944f, {1, 0.477990121, 0.0140585322, 0.00444569858, 4.44569851e-05});
  RopeSpec ym = y; ym.mscale = 0.707; ym.mscale_all_dim = 1.0; ym.beta_fast = 16;
  check_inv(ym, 256, 0.964326915f, {1, 0.477990121, 0.0140585322, 0.00444569858, 4.44569851e-05});
  RopeSpec na; na.type = "ntk_alpha"; na.alpha = 1000; na.theta = 10000;
  check_inv(na, 256, 1.0f, {1, 0.354813397, 0.00562341325, 0.000707945786, 1.77827928e-07});
  // dynamic below max_position is the default table
  float a[16], b[16];
  RopeSpec def; def.theta = 10000;
  rope_inv_freq(dyn, 32, 256, 100, a); rope_inv_freq(def, 32, 256, 100, b);
  for (int i = 0; i < 16; ++i) CHECK(a[i] == b[i]);
}

TEST(model_rope_rotation_preserves_norm) {
  float inv[4]; RopeSpec def; rope_inv_freq(def, 8, 16, 16, inv);
  float c[3 * 4], s[3 * 4];
  rope_tables(inv, 1.0f, 8, 5, 3, c, s);
  float x[3 * 8]; for (int i = 0; i < 24; ++i) x[i] = float(i % 7) - 3.0f;
  float before = 0, after = 0; for (float v : x) before += v * v;
  make_backend("ref")->rope(mat3(x, 3, 1, 8), mat(c, 3, 4), mat(s, 3, 4));
  for (float v : x) after += v * v;
  CHECK_NEAR(before, after, 1e-3);
  CHECK_NEAR(c[0], std::cos(5.0), 1e-6);  // position 5, frequency 1
}
