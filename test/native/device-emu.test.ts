// `--device emu`: whole models on the CUDA kernels (kernels/) run by the SIMT emulator, against transformers' goldens
// and against the CPU backend, for EVERY fixture architecture (test/fixtures), plus a quantized model and the int8
// KV cache. This is how the GPU code path is tested on machines without a GPU: the same kernel text and the same
// host code (native/cuda/kernel_backend.inc) run on a device.
//
// Tolerances. Logits: max |emu − golden| ≤ 1e-4, the bound models.test.ts holds the CPU backend to (fp32 compute
// on the same weights; only summation order differs: f32 tiles and warp butterflies instead of the CPU's SIMD
// lanes, ~1e-6 relative on logits of magnitude 1-10). emu vs cpu: ≤ 1e-4 for the same reason. Quantized weights:
// the CPU backend's 4-bit kernels round activations to 8 bits by default (cpu/qmatmul.h), which moves these random
// fixtures' logits by up to ~1 (an expert choice flips); the kernels keep activations f32, so the comparison runs
// the CPU side in its own process with MOE_QUANT_ACT=f32 (its f32-activation kernels), and holds both to 1e-4.
// Greedy ids must be equal.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type GenerateOptions, type LoadedModel } from "../../electron/engine/engine.js";
import { quantizeModelFolder } from "../../electron/engine/quantize.js";
import { fixtureNames, golden, modelDir, ROOT } from "./fixtures.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");

const GREEDY: GenerateOptions = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 };

function maxAbs(a: number[][], b: number[][]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let t = 0; t < a.length; t++) {
    expect(a[t].length).toBe(b[t].length);
    for (let v = 0; v < a[t].length; v++) m = Math.max(m, Math.abs(a[t][v] - b[t][v]));
  }
  return m;
}

async function greedy(model: LoadedModel, ids: number[], n: number, eos: number[]): Promise<number[]> {
  const chat = model.chat();
  try {
    const r = await chat.generate({ ids }, { ...GREEDY, maxTokens: n, eosIds: eos }).result;
    return r.ids;
  } finally {
    chat.dispose();
  }
}

describe.each(fixtureNames())("%s on --device emu", (name) => {
  const g = golden(name);
  let emu: LoadedModel, cpu: LoadedModel;
  beforeAll(async () => {
    emu = await loadModel(modelDir(name), { threads: 2, device: "emu" });
    cpu = await loadModel(modelDir(name), { threads: 2 });
  });
  afterAll(() => { emu?.close(); cpu?.close(); });

  it("logits match transformers and the cpu backend (max abs error <= 1e-4)", async () => {
    expect(emu.info.backend).toBe("emu");
    const rows = await emu.logits(g.prompt_ids);
    const vsGolden = maxAbs(rows, g.logits), vsCpu = maxAbs(rows, await cpu.logits(g.prompt_ids));
    console.log(`[${name}] emu logits: max abs error ${vsGolden.toExponential(2)} vs transformers, ${vsCpu.toExponential(2)} vs cpu`);
    expect(vsGolden).toBeLessThanOrEqual(1e-4);
    expect(vsCpu).toBeLessThanOrEqual(1e-4);
  });

  it("greedy decode (prefill, then one token at a time through the cache) equals transformers' greedy_ids", async () => {
    const ids = await greedy(emu, g.prompt_ids, g.greedy_ids.length, g.eos_token_ids);
    expect(ids).toEqual(g.greedy_ids.slice(0, ids.length));
    if (ids.length < g.greedy_ids.length) expect(g.eos_token_ids).toContain(g.greedy_ids[ids.length]);
  });
});

describe("emu: a quantized model and the int8 KV cache", () => {
  const g = golden("qwen3_moe");
  const dir = mkdtempSync(join(tmpdir(), "moe-emu-q-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // (the fixture's 64-wide rows are not Q4_K's 256-blocks, so "q4_k" writes Q4_0 there: the quantizer's fallback)
  it.each([["q8_0", "keep"], ["q4_0", "keep"], ["q4_k", "q8_0"]] as const)(
    "%s weights, embeddings %s: emu matches cpu's f32-activation kernels (<= 1e-4)", async (format, embeddings) => {
      const out = join(dir, `${format}-${embeddings}`);
      await quantizeModelFolder({ model: modelDir("qwen3_moe"), out, format, embeddings, threads: 2 });
      const ids = g.prompt_ids.join(",");
      const r = spawnSync(process.execPath, [BIN, "logits", "--model", out, "--ids", ids, "--json"], {
        encoding: "utf8", env: { ...process.env, MOE_QUANT_ACT: "f32" }, maxBuffer: 64 << 20,
      });
      expect(r.status, r.stderr).toBe(0);
      const cpu = JSON.parse(r.stdout).logits as number[][];
      const emu = await loadModel(out, { threads: 2, device: "emu" });
      try {
        const d = maxAbs(await emu.logits(g.prompt_ids), cpu);
        console.log(`[qwen3_moe ${format}, embeddings ${embeddings}] emu vs cpu (f32 activations) logits max abs ${d.toExponential(2)}`);
        expect(d).toBeLessThanOrEqual(1e-4);
      } finally { emu.close(); }
    });

  it.each(["int8", "f16"] as const)("%s KV cache: emu's greedy ids equal cpu's", async (kvCache) => {
    const emu = await loadModel(modelDir("qwen3_moe"), { threads: 2, device: "emu", kvCache });
    const cpu = await loadModel(modelDir("qwen3_moe"), { threads: 2, kvCache });
    try {
      expect(emu.info.kvCache).toBe(kvCache);
      expect(await greedy(emu, g.prompt_ids, 12, [])).toEqual(await greedy(cpu, g.prompt_ids, 12, []));
    } finally { emu.close(); cpu.close(); }
  });

  it("cuda is refused saying why", async () => {
    await expect(loadModel(modelDir("qwen3"), { device: "cuda" })).rejects.toThrow(/--device cuda: .*(no CUDA device|does not run whole models yet)/);
  });
});
