// Shared by the backend-op tests: random f32 buffers and the "max error relative to the output's scale" check.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>
#include "tests/test.h"

namespace moe_test {

using Buf = std::vector<float>;

inline Buf rnd(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Buf b(n);
  for (auto& v : b) v = u(g);
  return b;
}

inline double scale_of(const Buf& a) { double m = 0; for (float v : a) m = std::max(m, double(std::fabs(v))); return std::max(m, 1e-3); }

// max |got − want| / scale(want) <= tol, naming `what` and the worst element on failure.
inline void check_close(const std::string& what, const Buf& got, const Buf& want, double tol) {
  CHECK(got.size() == want.size());
  double worst = 0; size_t at = 0;
  const double s = scale_of(want);
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]) / s;
    if (!(e <= worst)) { worst = e; at = i; }
  }
  if (!(worst <= tol)) {
    ++failures();
    std::fprintf(stderr, "  %s: max rel err %.3g at %zu (got %g, want %g), tol %.3g\n", what.c_str(), worst, at,
                 double(got.empty() ? 0 : got[at]), double(want.empty() ? 0 : want[at]), tol);
  }
}

}  // namespace moe_test
