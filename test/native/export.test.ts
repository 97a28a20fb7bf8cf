// `moe-studio export` (issue 12): a peft adapter folded into the base weights, as a user runs it, against the
// peft goldens (test/fixtures/goldens/train/<name>/: golden.json `logits` are peft's with the adapter).
//   - fp32 export, loaded by `moe-studio logits`: peft's logits within 1e-4, and our unmerged `logits --adapter`'s
//     within 1e-4; every tensor name and shape is the source fixture's (all fixtures are in the hub layout);
//   - bf16 export: within BF16_TOL of peft's (weights rounded once to bf16; see below);
//   - a transformers-5 fused copy of qwen3_moe ([E, 2F, H] gate_up_proj) exports to the hub's per-expert names;
//   - shards + index as save_pretrained; config.json's dtype in the file's dialect; tokenizer/template/generation copied;
//   - --quantize / --gguf run the existing writers on the merged folder;
//   - cancel, a full disk, --force and bad adapters leave nothing behind.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, copyFileSync, openSync, readSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ExportMergedCancelled, exportMergedModel, isCopiedFile, withDType } from "../../electron/engine/export-merged.js";
import { modelDir, ROOT } from "./fixtures.js";
import { readHeader, writeHeader } from "./safetensors-surgery.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const GOLDENS = join(ROOT, "test/fixtures/goldens/train");
// bf16 keeps 8 mantissa bits: each merged weight moves by ≤ 2^-9 relative, which over 4 layers of these tiny random
// models moves a position's logits (O(1..10)) by ≤ BF16_TOL (measured: max 0.022-0.035 on llama, qwen3_moe, mixtral,
// qwen2_moe; 0.049 on Hunyuan-Large's other positions). Top-1-of-16 routing (Hunyuan-Large) can flip a near-tie
// expert under bf16 router weights: one position may then move by up to BF16_FLIP (measured 0.22 at its position 4).
const BF16_TOL = 0.06, BF16_FLIP = 0.3;

interface TrainGolden { ids: number[]; logits: number[][] }
const golden = (name: string): TrainGolden => JSON.parse(readFileSync(join(GOLDENS, name, "golden.json"), "utf8"));

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 300_000, maxBuffer: 256 << 20, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function logits(model: string, ids: number[], adapter?: string): number[][] {
  const r = cli(["logits", "--model", model, ...(adapter ? ["--adapter", adapter] : []), "--ids", ids.join(",")]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  return (JSON.parse(r.out) as { logits: number[][] }).logits;
}

function maxDiff(a: number[][], b: number[][]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let t = 0; t < a.length; t++) {
    expect(a[t].length).toBe(b[t].length);
    for (let i = 0; i < a[t].length; i++) m = Math.max(m, Math.abs(a[t][i] - b[t][i]));
  }
  return m;
}

/** name -> [dtype, shape] over every safetensors file of a folder. */
function tensorsOf(dir: string): Map<string, [string, number[]]> {
  const m = new Map<string, [string, number[]]>();
  for (const f of readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort())
    for (const [k, v] of Object.entries(readHeader(join(dir, f)).header)) if (k !== "__metadata__") m.set(k, [v.dtype, v.shape]);
  return m;
}

const tmps: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "moe-export-test-"));
  tmps.push(d);
  return d;
}
afterAll(() => { for (const d of tmps) rmSync(d, { recursive: true, force: true }); });

const NAMES = ["llama", "qwen3_moe", "mixtral", "qwen2_moe", "hunyuan_large"].filter((n) => existsSync(join(GOLDENS, n)));

describe.each(NAMES)("export: %s", (name) => {
  const g = golden(name);
  const adapter = join(GOLDENS, name, "adapter");

  it("fp32: peft's logits and our unmerged ones within 1e-4; the source's names, shapes and files", () => {
    const out = join(tmp(), "merged");
    const r = cli(["export", "--model", modelDir(name), "--adapter", adapter, "--out", out, "--dtype", "fp32", "--json"]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out) as { mergedPairs: number; files: string[] };
    expect(j.mergedPairs).toBeGreaterThan(0);
    const merged = logits(out, g.ids);
    const dPeft = maxDiff(merged, g.logits), dOurs = maxDiff(merged, logits(modelDir(name), g.ids, adapter));
    expect(dPeft).toBeLessThanOrEqual(1e-4);
    expect(dOurs).toBeLessThanOrEqual(1e-4);
    // the adapter moved the logits (a no-op merge would fail here)
    expect(maxDiff(merged, logits(modelDir(name), g.ids))).toBeGreaterThan(0.05);
    // hub layout: the source fixture's names and shapes, every tensor f32
    const src = tensorsOf(modelDir(name)), dst = tensorsOf(out);
    expect([...dst.keys()].sort()).toEqual([...src.keys()].sort());
    for (const [k, [dt, sh]] of dst) {
      expect(sh, k).toEqual(src.get(k)![1]);
      expect(dt).toBe("F32");
    }
    // every non-weight file of the source, config.json's dtype in its own dialect
    for (const f of readdirSync(modelDir(name))) if (isCopiedFile(f)) expect(existsSync(join(out, f)), f).toBe(true);
    expect(readdirSync(modelDir(name)).filter(isCopiedFile).length).toBeGreaterThanOrEqual(3);  // tokenizer, its config, generation config
    const cfgSrc = JSON.parse(readFileSync(join(modelDir(name), "config.json"), "utf8"));
    const cfgText = readFileSync(join(out, "config.json"), "utf8"), cfg = JSON.parse(cfgText);
    if ("torch_dtype" in cfgSrc || "dtype" in cfgSrc)  // the source's text with one value changed
      expect(cfgText.replace(/"(torch_dtype|dtype)": "[a-z0-9]+"/g, "")).toBe(readFileSync(join(modelDir(name), "config.json"), "utf8").replace(/"(torch_dtype|dtype)": "[a-z0-9]+"/g, ""));
    if ("torch_dtype" in cfgSrc) expect(cfg.torch_dtype).toBe("float32");
    if ("dtype" in cfgSrc) expect(cfg.dtype).toBe("float32");
    expect({ ...cfg, dtype: undefined, torch_dtype: undefined }).toEqual({ ...cfgSrc, dtype: undefined, torch_dtype: undefined });
    expect(readdirSync(join(out, ".."))).toEqual(["merged"]);
  });

  it(`bf16: peft's logits within ${BF16_TOL} (one routing flip: ${BF16_FLIP})`, () => {
    const out = join(tmp(), "merged-bf16");
    const r = cli(["export", "--model", modelDir(name), "--adapter", adapter, "--out", out, "--dtype", "bf16"]);
    expect(r.code, r.err).toBe(0);
    for (const [, [dt]] of tensorsOf(out)) expect(dt).toBe("BF16");
    const rows = logits(out, g.ids);
    const per = rows.map((r, t) => maxDiff([r], [g.logits[t]]));
    expect(Math.max(...per)).toBeLessThanOrEqual(BF16_FLIP);
    expect(per.filter((d) => d > BF16_TOL).length).toBeLessThanOrEqual(1);
  });
});

describe("export: layouts and shards", () => {
  it("a transformers-5 fused qwen3_moe ([E, 2F, H] gate_up_proj) is written per expert, as the hub has it", () => {
    const src = modelDir("qwen3_moe"), fused = join(tmp(), "fused");
    mkdirSync(fused);
    for (const f of readdirSync(src)) if (f !== "model.safetensors") copyFileSync(join(src, f), join(fused, f));
    const { header, data } = readHeader(join(src, "model.safetensors"));
    const parts: Buffer[] = [];
    const h: Record<string, unknown> = { __metadata__: { format: "pt" } };
    let off = 0;
    const put = (name: string, dtype: string, shape: number[], bufs: Buffer[]) => {
      const b = Buffer.concat(bufs);
      h[name] = { dtype, shape, data_offsets: [off, off + b.length] };
      off += b.length;
      parts.push(b);
    };
    const slice = (n: string) => data.subarray(header[n].data_offsets[0], header[n].data_offsets[1]);
    for (const [n, v] of Object.entries(header)) {
      if (n === "__metadata__") continue;
      const m = /^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.gate_proj\.weight$/.exec(n);
      if (/\.mlp\.experts\.\d+\./.test(n) && !(m && m[2] === "0")) continue;
      if (!m) { put(n, v.dtype, v.shape, [slice(n)]); continue; }
      const base = m[1];
      let E = 0;
      while (header[`${base}.${E}.gate_proj.weight`]) E++;
      const [F, H] = v.shape;
      const gu: Buffer[] = [], dn: Buffer[] = [];
      for (let e = 0; e < E; e++) {
        gu.push(slice(`${base}.${e}.gate_proj.weight`), slice(`${base}.${e}.up_proj.weight`));
        dn.push(slice(`${base}.${e}.down_proj.weight`));
      }
      put(`${base}.gate_up_proj`, v.dtype, [E, 2 * F, H], gu);
      put(`${base}.down_proj`, v.dtype, [E, H, F], dn);
    }
    writeHeader(join(fused, "model.safetensors"), h, Buffer.concat(parts));
    expect(Object.keys(h).some((k) => k.endsWith("experts.gate_up_proj"))).toBe(true);
    const out = join(tmp(), "merged");
    const adapter = join(GOLDENS, "qwen3_moe", "adapter");
    const r = cli(["export", "--model", fused, "--adapter", adapter, "--out", out, "--dtype", "fp32"]);
    expect(r.code, r.err).toBe(0);
    const want = tensorsOf(src), got = tensorsOf(out);
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, [, sh]] of got) expect(sh, k).toEqual(want.get(k)![1]);
    const g = golden("qwen3_moe");
    expect(maxDiff(logits(out, g.ids), g.logits)).toBeLessThanOrEqual(1e-4);
  });

  it("--shard-size cuts shards as save_pretrained (model-0000i-of-0000n + index); the folder loads", () => {
    const out = join(tmp(), "sharded");
    const r = cli(["export", "--model", modelDir("qwen2_moe"), "--adapter", join(GOLDENS, "qwen2_moe", "adapter"), "--out", out,
      "--dtype", "fp32", "--shard-size", "300KB", "--json"]);
    expect(r.code, r.err).toBe(0);
    const files = readdirSync(out).filter((f) => f.endsWith(".safetensors")).sort();
    expect(files.length).toBeGreaterThan(2);
    files.forEach((f, i) => expect(f).toBe(`model-${String(i + 1).padStart(5, "0")}-of-${String(files.length).padStart(5, "0")}.safetensors`));
    const idx = JSON.parse(readFileSync(join(out, "model.safetensors.index.json"), "utf8")) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    let total = 0;
    for (const f of files) {
      const { header } = readHeader(join(out, f));
      let n = 0;
      for (const [k, v] of Object.entries(header)) if (k !== "__metadata__") { n += v.data_offsets[1] - v.data_offsets[0]; expect(idx.weight_map[k]).toBe(f); }
      expect(n <= 300_000 || Object.keys(header).length === 2).toBe(true);
      total += n;
    }
    expect(idx.metadata.total_size).toBe(total);
    const g = golden("qwen2_moe");
    expect(maxDiff(logits(out, g.ids), g.logits)).toBeLessThanOrEqual(1e-4);
  });

  it("other formats' copies of the unmerged weights are not copied; READMEs, tokenizer models and licenses are", () => {
    for (const f of ["pytorch_model.bin", "pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json", "consolidated.00.pth",
      "model.gguf", "flax_model.msgpack", "tf_model.h5", "model.safetensors", "model.safetensors.index.json", "config.json"])
      expect(isCopiedFile(f), f).toBe(false);
    for (const f of ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", "chat_template.jinja", "generation_config.json",
      "special_tokens_map.json", "README.md", "LICENSE", "vocab.json", "merges.txt"])
      expect(isCopiedFile(f), f).toBe(true);
  });

  it("config.json's dtype goes where the file's dialect keeps it", () => {
    const w = (o: object, d: "f32" | "f16" | "bf16") => JSON.parse(withDType(JSON.stringify(o, null, 2), d));
    expect(w({ torch_dtype: "float16" }, "bf16")).toEqual({ torch_dtype: "bfloat16" });
    expect(w({ dtype: "float32", text: { dtype: "x" } }, "f16")).toEqual({ dtype: "float16", text: { dtype: "x" } });
    expect(w({ "a\\\"dtype": 1, dtype: null }, "f16")).toEqual({ "a\\\"dtype": 1, dtype: "float16" });
    expect(w({ rope_parameters: {} }, "f32")).toEqual({ rope_parameters: {}, dtype: "float32" });
    expect(w({ rope_theta: 1e4 }, "bf16")).toEqual({ rope_theta: 1e4, torch_dtype: "bfloat16" });
    expect(w({}, "bf16")).toEqual({ torch_dtype: "bfloat16" });
    // only the value changes: 0.0 stays 0.0 (transformers' strict configs refuse an int where a float is declared)
    expect(withDType('{\n  "router_jitter_noise": 0.0,\n  "torch_dtype": "float16"\n}\n', "f32"))
      .toBe('{\n  "router_jitter_noise": 0.0,\n  "torch_dtype": "float32"\n}\n');
  });
});

describe("export: through the quantizer and the GGUF exporter", () => {
  const g = golden("llama");
  const adapter = join(GOLDENS, "llama", "adapter");

  it("--quantize q8_0: the quantized folder of the merged weights", () => {
    const parent = tmp(), out = join(parent, "q8");
    const r = cli(["export", "--model", modelDir("llama"), "--adapter", adapter, "--out", out, "--dtype", "bf16", "--quantize", "q8_0"]);
    expect(r.code, r.err).toBe(0);
    expect(readdirSync(parent)).toEqual(["q8"]);
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(cfg.quantization_config.format).toBe("q8_0");
    expect(cfg.torch_dtype ?? cfg.dtype).toBe("bfloat16");
    const d = maxDiff(logits(out, g.ids), g.logits);
    expect(d).toBeLessThanOrEqual(0.3);                                                   // q8_0 of the merged weights
    expect(maxDiff(logits(out, g.ids), logits(modelDir("llama"), g.ids))).toBeGreaterThan(d);  // closer to peft's than the base is
  });

  it("--gguf q8_0: --out is the .gguf of the merged weights", () => {
    const parent = tmp(), out = join(parent, "m.gguf");
    const r = cli(["export", "--model", modelDir("llama"), "--adapter", adapter, "--out", out, "--dtype", "fp32", "--gguf", "q8_0"]);
    expect(r.code, r.err).toBe(0);
    expect(readdirSync(parent)).toEqual(["m.gguf"]);
    const fd = openSync(out, "r"), b = Buffer.alloc(4);
    readSync(fd, b, 0, 4, 0);
    closeSync(fd);
    expect(b.toString("latin1")).toBe("GGUF");
  });
});

describe("export: what leaves nothing behind", () => {
  const adapter = join(GOLDENS, "llama", "adapter");

  it("an existing --out is refused (untouched) unless --force, which replaces it once the new one is complete", () => {
    const parent = tmp(), out = join(parent, "m");
    mkdirSync(out);
    writeFileSync(join(out, "keep.txt"), "mine");
    const r1 = cli(["export", "--model", modelDir("llama"), "--adapter", adapter, "--out", out, "--dtype", "fp32"]);
    expect(r1.code).toBe(1);
    expect(r1.err).toMatch(/already exists.*--force/);
    expect(readdirSync(out)).toEqual(["keep.txt"]);
    const r2 = cli(["export", "--model", modelDir("llama"), "--adapter", adapter, "--out", out, "--dtype", "bf16", "--force"]);
    expect(r2.code, r2.err).toBe(0);
    expect(existsSync(join(out, "keep.txt"))).toBe(false);
    expect(existsSync(join(out, "model.safetensors"))).toBe(true);
    expect(readdirSync(parent)).toEqual(["m"]);
  });

  it("bad adapters and arguments: one clear line, nothing written", () => {
    const parent = tmp(), out = join(parent, "m");
    const cases: Array<[string[], RegExp]> = [
      [["--adapter", join(GOLDENS, "qwen3_moe", "adapter")], /adapter_model\.safetensors: .*has no place for|does not fit|shape/],
      [["--adapter", join(parent, "nope")], /not an adapter folder/],
      [["--adapter", modelDir("llama")], /adapter_config\.json|adapter_model\.safetensors/],
      [["--adapter", adapter, "--dtype", "int8"], /--dtype must be bf16, fp16 or fp32/],
      [["--adapter", adapter, "--quantize", "q2"], /--quantize: unsupported format/],
      [["--adapter", adapter, "--quantize", "q8_0", "--gguf", "f16"], /exclusive/],
      [["--adapter", adapter, "--shard-size", "lots"], /--shard-size/],
    ];
    for (const [args, re] of cases) {
      const a = args.includes("--dtype") ? args : [...args, "--dtype", "fp32"];
      const r = cli(["export", "--model", modelDir("llama"), "--out", out, ...a]);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.err).toMatch(re);
      expect(r.err.trim().split("\n").length).toBe(1);
      expect(readdirSync(parent)).toEqual([]);
    }
  });

  it("a full disk mid-write (MOE_EXPORT_FAIL_AFTER_BYTES) leaves nothing", () => {
    const parent = tmp(), out = join(parent, "m");
    const r = cli(["export", "--model", modelDir("qwen2_moe"), "--adapter", join(GOLDENS, "qwen2_moe", "adapter"), "--out", out, "--dtype", "fp32",
      "--shard-size", "300KB"], { MOE_EXPORT_FAIL_AFTER_BYTES: "500000" });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/No space left on device/);
    expect(readdirSync(parent)).toEqual([]);
  });

  it("cancel before the merge, during it, or during the GGUF stage leaves nothing", async () => {
    const parent = tmp(), out = join(parent, "m");
    const ac = new AbortController();
    ac.abort();
    await expect(exportMergedModel({ model: modelDir("llama"), adapter, out, dtype: "f32", signal: ac.signal })).rejects.toBeInstanceOf(ExportMergedCancelled);
    expect(readdirSync(parent)).toEqual([]);
    // during the native merge (its cancel flag, or the check after it when the tiny fixture finished first)
    const ac1 = new AbortController();
    await expect(exportMergedModel({
      model: modelDir("qwen2_moe"), adapter: join(GOLDENS, "qwen2_moe", "adapter"), out, dtype: "bf16", signal: ac1.signal,
      onProgress: (stage) => { if (stage === "merge") ac1.abort(); },
    })).rejects.toBeInstanceOf(ExportMergedCancelled);
    expect(readdirSync(parent)).toEqual([]);
    const ac2 = new AbortController();
    const gguf = join(parent, "m.gguf");
    await expect(exportMergedModel({
      model: modelDir("llama"), adapter, out: gguf, dtype: "f32", gguf: "q8_0", signal: ac2.signal,
      onProgress: (stage) => { if (stage === "gguf") ac2.abort(); },
    })).rejects.toBeInstanceOf(ExportMergedCancelled);
    expect(readdirSync(parent)).toEqual([]);
  });
});
