// vitest: unit tests (pure TS, fast), native tests (load the addon and the fixture models) and e2e tests (the app
// served by `moe-studio serve`, driven in Debian's Chromium by playwright-core; see test/e2e/harness.ts).
// Files run one at a time: native tests load models and spin the engine's thread pool on a 2-core machine, and an
// e2e file runs a server, an engine worker and a browser, so running them in parallel only adds contention (and
// memory) without finishing sooner.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts", "test/native/**/*.test.ts", "test/e2e/**/*.e2e.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    pool: "forks",
    reporters: ["default"],
  },
});
