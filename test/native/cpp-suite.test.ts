// The C++ suite (native/tests, built with the addon by `npm run build:native`) must pass.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./fixtures.js";

describe("native C++ tests", () => {
  it("moe_native_tests exits 0", () => {
    // next to the addon in use (MOE_STUDIO_ADDON points at a private build), else the default build folder
    const addon = process.env.MOE_STUDIO_ADDON;
    const exe = process.env.MOE_NATIVE_TESTS ?? join(addon ? dirname(addon) : join(ROOT, "native/build/Release"), "moe_native_tests");
    expect(existsSync(exe), `${exe} is missing: run "npm run build:native"`).toBe(true);
    const r = spawnSync(exe, [], { encoding: "utf8", timeout: 600_000 });
    if (r.status !== 0) console.log(r.stdout.slice(-4000), r.stderr.slice(-4000));
    expect(r.status).toBe(0);
  }, 620_000);
});
