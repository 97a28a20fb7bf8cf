// Minimal C++ test harness for native/tests/*.cpp (no dependency to download). Each file registers tests with
// TEST(name) { ... CHECK(cond); CHECK_NEAR(a, b, tol); }. main.cpp runs them all (or those whose name contains
// argv[1]) and prints "N passed, M failed"; the exit code is non-zero on any failure.
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace moe_test {
struct Case { const char* name; std::function<void()> fn; };
inline std::vector<Case>& registry() { static std::vector<Case> r; return r; }
inline int& failures() { static int f = 0; return f; }
struct Register { Register(const char* n, std::function<void()> f) { registry().push_back({n, std::move(f)}); } };
}  // namespace moe_test

#define MOE_TEST_CAT2(a, b) a##b
#define MOE_TEST_CAT(a, b) MOE_TEST_CAT2(a, b)
#define TEST(name)                                                                   \
  static void MOE_TEST_CAT(test_fn_, name)();                                        \
  static moe_test::Register MOE_TEST_CAT(test_reg_, name)(#name, MOE_TEST_CAT(test_fn_, name)); \
  static void MOE_TEST_CAT(test_fn_, name)()

#define CHECK(cond)                                                                  \
  do { if (!(cond)) { ++moe_test::failures();                                        \
    std::fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_NEAR(a, b, tol)                                                        \
  do { double _a = (a), _b = (b);                                                    \
    if (!(std::fabs(_a - _b) <= (tol))) { ++moe_test::failures();                    \
      std::fprintf(stderr, "  %s:%d: |%s - %s| = |%g - %g| > %g\n", __FILE__, __LINE__, #a, #b, _a, _b, double(tol)); } } while (0)
// CHECK_THROWS(expr, "substring"): expr must throw a std::exception whose what() contains the substring.
#define CHECK_THROWS(expr, substr)                                                   \
  do { bool _thrown = false; try { expr; } catch (const std::exception& _e) { _thrown = true; \
      if (std::string(_e.what()).find(substr) == std::string::npos) { ++moe_test::failures(); \
        std::fprintf(stderr, "  %s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, _e.what(), substr); } } \
    if (!_thrown) { ++moe_test::failures(); std::fprintf(stderr, "  %s:%d: %s did not throw\n", __FILE__, __LINE__, #expr); } } while (0)
