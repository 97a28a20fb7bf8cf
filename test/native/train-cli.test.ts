// `moe-studio grad` and `--adapter` as a user runs them, against the peft + autograd goldens
// (test/fixtures/goldens/train/<name>/, make_train_goldens.py). Every tensor's gradient is compared in the C++ suite
// (native/tests/test_train_goldens.cpp); here the command line: the loss (|Δ| ≤ 1e-5, the goldens' tolerance), the
// gradient norm over every adapter tensor printed under peft's names (relative 1e-5: the norm averages the
// per-element float32 drift), every name peft wrote, and logits with the adapter applied unmerged (1e-4, as for inference).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { modelDir, ROOT } from "./fixtures.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const GOLDENS = join(ROOT, "test/fixtures/goldens/train");

interface TrainGolden {
  ids: number[]; labels: number[]; loss: number; grad_norm: number; n_targets: number; logits: number[][];
  adapter_tensors: Record<string, unknown>;
}
const golden = (name: string): TrainGolden => JSON.parse(readFileSync(join(GOLDENS, name, "golden.json"), "utf8"));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 300_000, maxBuffer: 256 << 20 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// a dense model, a fused-experts MoE with rslora, shared experts with dense layers, and CLA with per-expert adapters
describe.each(["llama", "qwen3_moe", "qwen2_moe", "hunyuan_large"].filter((n) => existsSync(join(GOLDENS, n))))("grad / --adapter: %s", (name) => {
  const g = golden(name);
  const adapter = join(GOLDENS, name, "adapter");

  it("grad --json: peft's loss, gradient norm and tensor names", () => {
    const r = cli(["grad", "--model", modelDir(name), "--adapter", adapter, "--ids", g.ids.join(","), "--labels", g.labels.join(","), "--json"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { loss: number; n_targets: number; grads: Record<string, number[]> };
    expect(Math.abs(j.loss - g.loss)).toBeLessThanOrEqual(1e-5);
    expect(j.n_targets).toBe(g.n_targets);
    expect(Object.keys(j.grads).sort()).toEqual(Object.keys(g.adapter_tensors).sort());
    let sq = 0;
    for (const v of Object.values(j.grads)) for (const x of v) sq += x * x;
    expect(Math.abs(Math.sqrt(sq) - g.grad_norm) / g.grad_norm).toBeLessThanOrEqual(1e-5);
  });

  it("logits --adapter applies the adapter unmerged", () => {
    const r = cli(["logits", "--model", modelDir(name), "--adapter", adapter, "--ids", g.ids.join(",")]);
    expect(r.code).toBe(0);
    const rows = (JSON.parse(r.out) as { logits: number[][] }).logits;
    let err = 0;
    for (let t = 0; t < g.ids.length; t++) for (let i = 0; i < g.logits[t].length; i++) err = Math.max(err, Math.abs(rows[t][i] - g.logits[t][i]));
    expect(err).toBeLessThanOrEqual(1e-4);
  });
});

// Q-LoRA: the base's projections quantized to NF4 at load (as bitsandbytes does); goldens/train/<name>/nf4/ are peft +
// autograd on the same NF4-dequantized base. Same tolerances (the engine's NF4 bytes equal the goldens').
describe.each(["qwen3_moe", "hunyuan_large"].filter((n) => existsSync(join(GOLDENS, n, "nf4"))))("grad --base-quant nf4: %s", (name) => {
  it("peft's loss and gradient norm through the NF4 base", () => {
    const g = golden(name);
    const n = JSON.parse(readFileSync(join(GOLDENS, name, "nf4", "golden.json"), "utf8")) as TrainGolden;
    const r = cli(["grad", "--model", modelDir(name), "--adapter", join(GOLDENS, name, "adapter"), "--base-quant", "nf4",
      "--ids", g.ids.join(","), "--labels", g.labels.join(","), "--json"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { loss: number; grads: Record<string, number[]> };
    expect(Math.abs(j.loss - n.loss)).toBeLessThanOrEqual(1e-5);
    expect(Math.abs(j.loss - g.loss)).toBeGreaterThan(1e-4);  // the NF4 base is not the stored one
    let sq = 0;
    for (const v of Object.values(j.grads)) for (const x of v) sq += x * x;
    expect(Math.abs(Math.sqrt(sq) - n.grad_norm) / n.grad_norm).toBeLessThanOrEqual(1e-5);
  });
});

describe("grad: bad input", () => {
  it("an adapter for another model, labels of the wrong length, no adapter: one clear line each", () => {
    const other = cli(["grad", "--model", modelDir("qwen3_moe"), "--adapter", join(GOLDENS, "llama", "adapter"), "--ids", "1,2,3", "--json"]);
    expect(other.code).toBe(1);
    expect(other.err).toMatch(/adapter_model\.safetensors: .* has no place for: base_model\.model\.model\.layers\.0\.mlp\.down_proj/);
    const len = cli(["grad", "--model", modelDir("llama"), "--adapter", join(GOLDENS, "llama", "adapter"), "--ids", "1,2,3", "--labels", "1,2", "--json"]);
    expect(len.code).toBe(1);
    expect(len.err).toMatch(/--labels has 2 entries, --ids 3/);
    const none = cli(["grad", "--model", modelDir("llama"), "--ids", "1,2,3", "--json"]);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/--adapter is required/);
    const masked = cli(["grad", "--model", modelDir("llama"), "--adapter", join(GOLDENS, "llama", "adapter"), "--ids", "1,2,3", "--labels", "-100,-100,-100", "--json"]);
    expect(masked.code).toBe(1);
    expect(masked.err).toMatch(/no label to learn from/);
    for (const r of [other, len, none, masked]) expect(r.err.trim().split("\n").length).toBe(1);
  });
});
