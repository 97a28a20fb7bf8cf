// `moe-studio quantize` and the folder it writes: layout, quantization_config, copies, loading it back, the
// fallback for rows that are not a multiple of the block, and bad input (already quantized, unsupported
// format, existing destination, a disk that fills up mid-write, cancel and Ctrl-C): clear errors, nothing left.
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../../electron/engine/engine.js";
import { QuantizeCancelled, quantizeModelFolder } from "../../electron/engine/quantize.js";
import { modelDir, ROOT } from "./fixtures.js";
import { writeHeader } from "./safetensors-surgery.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const tmp = mkdtempSync(join(tmpdir(), "moe-quantize-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 300_000, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The safetensors header of a file (JSON). */
function header(path: string): Record<string, { dtype: string; shape: number[]; data_offsets: number[] }> & { __metadata__: Record<string, string> } {
  const fd = openSync(path, "r");
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE());
    const h = Buffer.alloc(n);
    readSync(fd, h, 0, n, 8);
    return JSON.parse(h.toString("utf8"));
  } finally {
    closeSync(fd);
  }
}

/** Nothing but the expected entries in the folder (no .partial temp folders). */
function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.includes(".partial-"));
}

describe("quantize a sharded model (qwen2_moe, f32, 3 shards + index) to q8_0 from the CLI", () => {
  const out = join(tmp, "qwen2_moe-q8");
  let r: ReturnType<typeof cli>;
  it("writes the folder and reports sizes and peak RSS", () => {
    r = cli(["quantize", "--model", modelDir("qwen2_moe"), "--bits", "8", "--out", out, "--threads", "2"]);
    expect(r.err).toMatch(/quantize: 100%/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/format: q8_0 \(8-bit\), embeddings: q8_0/);
    expect(r.out).toMatch(/peak RSS: \d+\.\d MiB/);
    expect(leftovers(tmp)).toEqual([]);
  });

  it("keeps shard names, rewrites the index and copies tokenizer and template files", () => {
    const src = readdirSync(modelDir("qwen2_moe")).sort();
    expect(readdirSync(out).sort()).toEqual(src);
    const idx = JSON.parse(readFileSync(join(out, "model.safetensors.index.json"), "utf8"));
    const srcIdx = JSON.parse(readFileSync(join(modelDir("qwen2_moe"), "model.safetensors.index.json"), "utf8"));
    expect(idx.weight_map).toEqual(Object.fromEntries(Object.entries(srcIdx.weight_map).sort()));
    expect(readFileSync(join(out, "tokenizer.json"), "utf8")).toBe(readFileSync(join(modelDir("qwen2_moe"), "tokenizer.json"), "utf8"));
  });

  it("stores linear weights as U8 GGUF blocks and keeps routers, norms and biases float", () => {
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    const qc = cfg.quantization_config;
    expect(qc).toMatchObject({ quant_method: "moe-studio", version: 1, format: "q8_0", bits: 8, embeddings: "q8_0", block_layout: "gguf" });
    const all: Record<string, { dtype: string; shape: number[]; meta?: string }> = {};
    for (const f of readdirSync(out).filter((f) => f.endsWith(".safetensors"))) {
      const h = header(join(out, f));
      for (const [k, v] of Object.entries(h)) if (k !== "__metadata__") all[k] = { ...(v as { dtype: string; shape: number[] }), meta: h.__metadata__[`quant.${k}`] };
    }
    // q_proj [64, 64] -> U8 [64, 2 blocks * 34 bytes]
    expect(all["model.layers.0.self_attn.q_proj.weight"]).toMatchObject({ dtype: "U8", shape: [64, 68], meta: "q8_0" });
    expect(all["model.embed_tokens.weight"].meta).toBe("q8_0");
    expect(all["lm_head.weight"].meta).toBe("q8_0");
    for (const kept of ["model.layers.1.mlp.gate.weight", "model.layers.1.mlp.shared_expert_gate.weight", "model.layers.0.input_layernorm.weight",
      "model.layers.0.self_attn.q_proj.bias", "model.norm.weight"]) {
      expect(all[kept].dtype, kept).toBe("F32");
      expect(all[kept].meta).toBeUndefined();
      expect(qc.modules_not_quantized).toContain(kept);
    }
    // every expert and the shared expert (gate, up, down), every attention projection
    const linear = Object.keys(all).filter((n) => /\.experts\.|\.shared_expert\.|_proj\.weight$/.test(n));
    expect(linear.filter((n) => n.includes(".experts.")).length).toBeGreaterThanOrEqual(3);
    for (const n of linear) {
      if (qc.fallbacks[n]) expect(all[n], n).toMatchObject({ dtype: "F32", meta: undefined }); // rows not a multiple of 32
      else expect(all[n].meta, n).toBe("q8_0");
    }
    expect(Object.keys(qc.fallbacks).length).toBeLessThan(linear.length / 2);
  });

  it("loads in the engine as a q8_0 model with the same parameter count", async () => {
    const m = await loadModel(out, { threads: 2 });
    const f = await loadModel(modelDir("qwen2_moe"), { threads: 2 });
    try {
      expect(m.info.dtype).toBe("q8_0");
      expect(m.info.paramsTotal).toBe(f.info.paramsTotal);
      expect(m.info.weightBytes).toBeLessThan(f.info.weightBytes * 0.35);
    } finally {
      m.close();
      f.close();
    }
  });
});

describe("rows that are not a multiple of the block (mixtral: f16, experts' down_proj rows of 48)", () => {
  it("q4_k falls back to q4_0 for rows of 64 and keeps rows of 48 in f16, recorded in quantization_config", async () => {
    const out = join(tmp, "mixtral-q4k");
    const r = await quantizeModelFolder({ model: modelDir("mixtral"), out, format: "q4_k", threads: 2 });
    const fb = r.config.fallbacks;
    expect(fb["model.layers.0.self_attn.q_proj.weight"]).toBe("q4_0");
    const down = Object.keys(fb).find((n) => /experts\.\d+\.w2\.weight$|experts\.down_proj$/.test(n));
    expect(down, JSON.stringify(fb)).toBeDefined();
    expect(fb[down!]).toBe("f16");
    const m = await loadModel(out, { threads: 2 });
    try {
      const logits = await m.logits([1, 2, 3, 4]);
      expect(logits.length).toBe(4);
      for (const row of logits) for (const v of row) expect(Number.isFinite(v)).toBe(true);
    } finally {
      m.close();
    }
  });
});

/**
 * A llama big enough that quantizing takes a moment: hidden 1024, 3 layers, 23 f32 tensors of 1024 x 1024 (~96 MiB),
 * with the llama fixture's tokenizer. It must be a model the engine loads: quantize validates its source first.
 */
function bigFolder(): string {
  const dir = join(tmp, "big");
  if (existsSync(dir)) return dir;
  mkdirSync(dir);
  const D = 1024, L = 3, bytes = D * D * 4;
  const names = ["model.embed_tokens.weight", "lm_head.weight"];
  for (let i = 0; i < L; i++) {
    for (const w of ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]) {
      names.push(`model.layers.${i}.${w}.weight`);
    }
  }
  const norms = ["model.norm.weight", ...[...Array(L).keys()].flatMap((i) => [`model.layers.${i}.input_layernorm.weight`, `model.layers.${i}.post_attention_layernorm.weight`])];
  const h: Record<string, unknown> = {};
  names.forEach((n, i) => (h[n] = { dtype: "F32", shape: [D, D], data_offsets: [i * bytes, (i + 1) * bytes] }));
  const big = names.length * bytes;
  norms.forEach((n, i) => (h[n] = { dtype: "F32", shape: [D], data_offsets: [big + i * D * 4, big + (i + 1) * D * 4] }));
  const data = Buffer.alloc(big + norms.length * D * 4);
  for (let i = 0; i < big / 4; i += 97) data.writeFloatLE(Math.sin(i) * 0.05, i * 4);
  for (let i = big / 4; i < data.length / 4; i++) data.writeFloatLE(1, i * 4);
  writeHeader(join(dir, "model.safetensors"), h, data);
  writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "llama", hidden_size: D, num_hidden_layers: L, num_attention_heads: 8,
    num_key_value_heads: 8, vocab_size: D, intermediate_size: D, max_position_embeddings: 256, rms_norm_eps: 1e-5 }));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(modelDir("llama"), f), join(dir, f));
  return dir;
}

describe("bad input: clear errors, nothing left behind", () => {
  it("refuses an already quantized model (config.json has quantization_config)", () => {
    const q = join(tmp, "qwen2_moe-q8");
    if (!existsSync(q)) return; // written by the first describe
    const r = cli(["quantize", "--model", q, "--bits", "4", "--out", join(tmp, "twice")]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/config\.json: the model is already quantized \(quantization_config\.quant_method "moe-studio", format "q8_0"\)/);
    expect(existsSync(join(tmp, "twice"))).toBe(false);
  });

  it("refuses already quantized tensors even without a quantization_config", async () => {
    const q = join(tmp, "qwen2_moe-q8");
    if (!existsSync(q)) return;
    const stripped = join(tmp, "stripped");
    mkdirSync(stripped);
    for (const f of readdirSync(q)) writeFileSync(join(stripped, f), readFileSync(join(q, f)));
    const cfg = JSON.parse(readFileSync(join(q, "config.json"), "utf8"));
    delete cfg.quantization_config;
    writeFileSync(join(stripped, "config.json"), JSON.stringify(cfg));
    await expect(quantizeModelFolder({ model: stripped, out: join(tmp, "twice2"), format: "q4_0" })).rejects.toThrow(/is already quantized \(q8_0\)/);
    expect(existsSync(join(tmp, "twice2"))).toBe(false);
    expect(leftovers(tmp)).toEqual([]);
  });

  it("refuses an unsupported format, a bits/format mismatch and an existing destination", () => {
    let r = cli(["quantize", "--model", modelDir("llama"), "--format", "q5_k", "--out", join(tmp, "x")]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--format: unsupported format "q5_k" \(expected q8_0, q4_0, q4_k\)/);
    r = cli(["quantize", "--model", modelDir("llama"), "--bits", "8", "--format", "q4_k", "--out", join(tmp, "x")]);
    expect(r.err).toMatch(/--format q4_k is 4-bit but --bits is 8/);
    r = cli(["quantize", "--model", modelDir("llama"), "--bits", "3", "--out", join(tmp, "x")]);
    expect(r.err).toMatch(/--bits must be 8 or 4/);
    const exists = join(tmp, "exists");
    mkdirSync(exists);
    writeFileSync(join(exists, "keep.txt"), "mine");
    r = cli(["quantize", "--model", modelDir("llama"), "--bits", "4", "--out", exists]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/exists already exists: choose another --out or remove it first/);
    expect(readFileSync(join(exists, "keep.txt"), "utf8")).toBe("mine");
  });

  it("a disk that fills up mid-write (injected) fails with the file and the cause, leaving nothing", () => {
    const out = join(tmp, "full");
    const r = cli(["quantize", "--model", modelDir("qwen2_moe"), "--bits", "4", "--out", out], { MOE_QUANT_FAIL_AFTER_BYTES: "60000" });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/model-0000\d-of-00003\.safetensors: write failed: No space left on device \(injected/);
    expect(r.err.trim().split("\n").filter((l) => !l.startsWith("quantize:")).length).toBe(1);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(tmp)).toEqual([]);
  });

  it("cancel (AbortSignal) stops between tensors and removes the temporary folder", async () => {
    const src = bigFolder();
    const out = join(tmp, "cancelled");
    const ac = new AbortController();
    let calls = 0;
    const p = quantizeModelFolder({ model: src, out, format: "q4_k", threads: 1, signal: ac.signal, onProgress: () => { if (++calls === 1) ac.abort(); } });
    await expect(p).rejects.toBeInstanceOf(QuantizeCancelled);
    expect(calls).toBeLessThan(24);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(tmp)).toEqual([]);
  }, 60_000);

  it("Ctrl-C in the CLI cancels: exit 130, nothing written", async () => {
    const src = bigFolder();
    const out = join(tmp, "ctrlc");
    const child = spawn(process.execPath, [BIN, "quantize", "--model", src, "--bits", "4", "--out", out, "--threads", "1"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    let sent = false;
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
      if (!sent && /quantize: +\d+%/.test(err)) { sent = true; child.kill("SIGINT"); }
    });
    const code = await new Promise<number | null>((res) => child.on("close", (c) => res(c)));
    expect(sent).toBe(true);
    expect(code).toBe(130);
    expect(err).toMatch(/quantization cancelled: nothing was written/);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(tmp)).toEqual([]);
  }, 60_000);
});
