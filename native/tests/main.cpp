#include "tests/test.h"
#include <cstring>
#include <exception>

int main(int argc, char** argv) {
  int passed = 0, failed = 0;
  for (auto& c : moe_test::registry()) {
    if (argc > 1 && !std::strstr(c.name, argv[1])) continue;
    int before = moe_test::failures();
    try { c.fn(); } catch (const std::exception& e) {
      ++moe_test::failures(); std::fprintf(stderr, "  unexpected exception: %s\n", e.what());
    }
    bool ok = moe_test::failures() == before;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name);
    (ok ? passed : failed)++;
  }
  std::printf("native: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
