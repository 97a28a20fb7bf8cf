// The ptxas table's target (kernels/README.md): no kernel spills registers or keeps a stack frame. Runs
// kernels/ptxas-report.mjs for sm_80 and sm_90 (the two ends of the architectures the build targets; the full
// table covers 80/86/89/90) where nvcc exists; skipped, saying so, where it does not. No GPU needed.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./fixtures.js";

const nvcc = spawnSync(process.env.NVCC || "nvcc", ["--version"], { encoding: "utf8" });
const hasNvcc = nvcc.status === 0;

describe("ptxas: registers, shared memory, spills", () => {
  it.skipIf(!hasNvcc)("every kernel of kernels/*.cu compiles for sm_80 and sm_90 with no spills and no stack frame", () => {
    const r = spawnSync(process.execPath, [join(ROOT, "kernels/ptxas-report.mjs"), "--arch", "80,90", "--json"], { encoding: "utf8", timeout: 600_000 });
    expect(r.status, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as Array<{ kernel: string; arch: string; registers: number; spill_bytes: number; stack_bytes: number }>;
    expect(rows.length).toBeGreaterThan(40);
    expect(rows.filter((x) => x.spill_bytes > 0 || x.stack_bytes > 0)).toEqual([]);
    expect(new Set(rows.map((x) => x.arch))).toEqual(new Set(["sm_80", "sm_90"]));
    for (const k of ["gemm_kernel", "attention_kernel", "attention_ds_kernel", "cross_entropy_kernel", "moe_route_kernel"])
      expect(rows.some((x) => x.kernel.includes(k))).toBe(true);
  }, 600_000);
  it.skipIf(hasNvcc)("(nvcc not found: the ptxas check is skipped here)", () => expect(hasNvcc).toBe(false));
});
