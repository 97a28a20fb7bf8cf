// vitest: unit tests (pure TS, fast) and native tests (load the addon and the fixture models).
// Native tests run files one at a time: each loads models and spins the engine's thread pool on a 2-core machine,
// so running them in parallel only adds contention (and memory) without finishing sooner.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts", "test/native/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    pool: "forks",
    reporters: ["default"],
  },
});
