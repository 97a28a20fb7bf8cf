// `moe-studio export-gguf` with bad input, as a user runs it: one clear line on stderr, exit code 1, and nothing
// left behind — no partial FILE.gguf, no FILE.gguf.tmp-*, and an existing file untouched unless --force and the
// new one is complete. A full disk mid-write is injected with MOE_STUDIO_FAIL_WRITE_AFTER=N (the writer fails the
// write that crosses byte N with ENOSPC, like a small tmpfs would).
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportGguf, ExportCancelled } from "../../electron/gguf/export.js";
import { checkPlanConsistency, planExport } from "../../electron/gguf/arch.js";
import { SafetensorsFolder } from "../../electron/gguf/safetensors.js";
import { MODELS, ROOT } from "./fixtures.js";
import { rawSafetensors, readHeader, writeHeader } from "./safetensors-surgery.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
let tmp: string;

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, "export-gguf", ...args], { encoding: "utf8", timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function expectCleanError(r: { code: number | null; err: string }, pattern: RegExp) {
  expect(r.code).toBe(1);
  const lines = r.err.trim().split("\n").filter((l) => !l.startsWith("export-gguf:"));
  expect(lines.length, r.err).toBe(1); // one error line (progress lines aside), no stack trace
  expect(lines[0]).toMatch(pattern);
  expect(r.err).not.toMatch(/\n\s+at /);
}

const leftovers = () => readdirSync(tmp).filter((f) => f.includes(".tmp-"));

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "moe-gguf-bad-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("export-gguf bad input", () => {
  it("an unsupported --type names the supported ones", () => {
    const r = cli(["--model", join(MODELS, "qwen3"), "--type", "q3_k", "--out", join(tmp, "x.gguf")]);
    expectCleanError(r, /--type: unsupported type "q3_k" \(supported: f16, q8_0, q4_0, q4_k\)/);
    expect(existsSync(join(tmp, "x.gguf"))).toBe(false);
  });

  it("missing --out / --model are usage errors", () => {
    expectCleanError(cli(["--model", join(MODELS, "qwen3"), "--type", "f16"]), /--out is required/);
    expectCleanError(cli(["--type", "f16", "--out", join(tmp, "x.gguf")]), /--model is required/);
  });

  it("Hunyuan-Large is refused: llama.cpp has no architecture for it", () => {
    const r = cli(["--model", join(MODELS, "hunyuan_large"), "--type", "f16", "--out", join(tmp, "hl.gguf")]);
    expectCleanError(r, /config\.json: model_type "hunyuan" \(Hunyuan-Large.*\) has no llama\.cpp architecture/);
    expect(existsSync(join(tmp, "hl.gguf"))).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it("models llama.cpp could not load are refused with the reason, before anything is written", () => {
    // qwen2_moe fixture: dense layers (decoder_sparse_step 2, mlp_only_layers [3]); llama.cpp's qwen2moe has none
    expectCleanError(cli(["--model", join(MODELS, "qwen2_moe"), "--type", "f16", "--out", join(tmp, "q.gguf")]), /layers 0, 2, 3 are dense.*qwen2moe has experts in every layer/);
    // hunyuan_v1_moe fixture: a different top-k per layer
    expectCleanError(cli(["--model", join(MODELS, "hunyuan_v1_moe"), "--type", "f16", "--out", join(tmp, "h.gguf")]), /"moe_topk" differs between layers/);
    // olmoe fixture: grouped-query attention, which llama.cpp's olmoe k_norm cannot express
    expectCleanError(cli(["--model", join(MODELS, "olmoe"), "--type", "f16", "--out", join(tmp, "o.gguf")]), /num_key_value_heads 2 != num_attention_heads 4/);
    expect(readdirSync(tmp).filter((f) => f.endsWith(".gguf") || f.includes(".tmp-"))).toEqual([]);
  });

  it("a model folder without config.json or with a bad safetensors header names the file", () => {
    const bad = join(tmp, "badmodel");
    cpSync(join(MODELS, "qwen3"), bad, { recursive: true });
    const st = join(bad, "model.safetensors");
    const b = readFileSync(st);
    b.writeBigUInt64LE(BigInt(b.length * 2), 0); // header length beyond the file
    writeFileSync(st, b);
    expectCleanError(cli(["--model", bad, "--type", "f16", "--out", join(tmp, "b.gguf")]), /model\.safetensors: corrupt safetensors header: header length does not fit in the file of \d+ bytes/);
    expectCleanError(cli(["--model", join(tmp, "nope"), "--type", "f16", "--out", join(tmp, "b.gguf")]), /nope: model folder not found/);
    rmSync(bad, { recursive: true });
  });

  it("an existing destination is refused without --force (and left as it was); --force replaces it", () => {
    const out = join(tmp, "exists.gguf");
    writeFileSync(out, "previous contents");
    const r = cli(["--model", join(MODELS, "qwen3"), "--type", "f16", "--out", out]);
    expectCleanError(r, /exists\.gguf: already exists \(pass --force to replace it\)/);
    expect(readFileSync(out, "utf8")).toBe("previous contents");
    const f = cli(["--model", join(MODELS, "qwen3"), "--type", "f16", "--out", out, "--force"]);
    expect(f.code, f.err).toBe(0);
    expect(readFileSync(out).subarray(0, 4).toString("ascii")).toBe("GGUF");
    expect(f.out).toMatch(/GGUF v3, qwen3, 47 tensors/);
    expect(f.err).toMatch(/export-gguf: 100%/);
    rmSync(out);
  });

  it("a disk full mid-write: clear error, no partial file, and an existing file survives a failed --force", () => {
    const out = join(tmp, "full.gguf");
    const r = cli(["--model", join(MODELS, "qwen3"), "--type", "f16", "--out", out], { MOE_STUDIO_FAIL_WRITE_AFTER: "200000" });
    expectCleanError(r, /full\.gguf: disk full while writing \(ENOSPC.*\); nothing was written/);
    expect(existsSync(out)).toBe(false);
    expect(leftovers()).toEqual([]);
    writeFileSync(out, "old model");
    const f = cli(["--model", join(MODELS, "qwen3"), "--type", "f16", "--out", out, "--force"], { MOE_STUDIO_FAIL_WRITE_AFTER: "200000" });
    expectCleanError(f, /disk full while writing/);
    expect(readFileSync(out, "utf8")).toBe("old model");
    expect(leftovers()).toEqual([]);
  });

  it("cancel mid-export (AbortSignal): ExportCancelled, no file left", async () => {
    const out = join(tmp, "cancel.gguf");
    const ac = new AbortController();
    let seen = 0;
    const p = exportGguf(join(MODELS, "qwen3"), out, {
      type: "f16",
      signal: ac.signal,
      onProgress: (pr) => {
        if (++seen === 5) ac.abort();
        expect(pr.done).toBeLessThanOrEqual(pr.total);
      },
    });
    await expect(p).rejects.toBeInstanceOf(ExportCancelled);
    expect(existsSync(out)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  // Hostile folders: each refused before anything is written (no FILE.gguf, no FILE.gguf.tmp-*).
  const hostile = (name: string) => {
    const dir = join(tmp, `hostile-${name}`);
    rmSync(dir, { recursive: true, force: true });
    cpSync(join(MODELS, "qwen3"), dir, { recursive: true });
    return dir;
  };
  const refused = (dir: string, pattern: RegExp) => {
    const out = join(tmp, "hostile.gguf");
    const r = cli(["--model", dir, "--type", "q8_0", "--out", out]);
    expectCleanError(r, pattern);
    expect(existsSync(out)).toBe(false);
    expect(leftovers()).toEqual([]);
    return r;
  };

  it("a shape whose element count overflows, overlapping tensors and offsets past the end are refused", () => {
    const dir = hostile("shape");
    const st = join(dir, "model.safetensors");
    const { header, data } = readHeader(st);
    const text = JSON.stringify(header).replace('"model.norm.weight":' + JSON.stringify(header["model.norm.weight"]),
      '"model.norm.weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}');
    writeFileSync(st, rawSafetensors(text, data));
    refused(dir, /model\.safetensors: tensor model\.norm\.weight: shape \[4294967296,4294967296\] has more elements than 2\^64/);
    const { header: h2 } = readHeader(join(MODELS, "qwen3", "model.safetensors"));
    h2["model.layers.0.self_attn.k_proj.weight"].data_offsets = [...h2["model.layers.0.self_attn.v_proj.weight"].data_offsets];
    writeHeader(st, h2, data);
    refused(dir, /model\.safetensors: corrupt safetensors header: tensors .* overlap/);
    const { header: h3 } = readHeader(join(MODELS, "qwen3", "model.safetensors"));
    h3["model.norm.weight"].data_offsets = [data.length + 64, data.length + 64 + h3["model.norm.weight"].shape[0] * 4];
    writeHeader(st, h3, data);
    refused(dir, /model\.safetensors: tensor model\.norm\.weight needs bytes \[\d+,\d+\) but the file has \d+ bytes \(truncated\?\)/);
  });

  it("an index naming ../../etc/passwd is refused without reading it", () => {
    const dir = hostile("escape");
    const { header } = readHeader(join(dir, "model.safetensors"));
    const wm = Object.fromEntries(Object.keys(header).filter((k) => k !== "__metadata__").map((k) => [k, "model.safetensors"]));
    wm["model.norm.weight"] = "../../../../../../etc/passwd";
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: wm }));
    const r = refused(dir, /model\.safetensors\.index\.json: weight_map names shard .*not a plain file name inside the model folder/);
    expect(r.err).not.toMatch(/root:/);
  });

  it("a folder the engine would not load (config contradicting the weights, no tokenizer, broken tokenizer) writes nothing", () => {
    let dir = hostile("vocab");
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, vocab_size: cfg.vocab_size + 64 }));
    refused(dir, /model\.embed_tokens\.weight has shape \[\d+,\d+\], expected/);
    dir = hostile("hidden");
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, hidden_size: 1e300 }));
    refused(dir, /hidden_size/);
    dir = hostile("notok");
    rmSync(join(dir, "tokenizer.json"));
    refused(dir, /tokenizer\.json: file not found/);
    dir = hostile("badtok");
    writeFileSync(join(dir, "tokenizer.json"), '{"model": {"type": "BPE", "vocab": {');
    refused(dir, /tokenizer\.json: invalid JSON/);
    // a parseable tokenizer whose ids or merges could not make a GGUF token list
    const tj = JSON.parse(readFileSync(join(MODELS, "qwen3", "tokenizer.json"), "utf8"));
    const first = Object.keys(tj.model.vocab)[0];
    for (const [edit, pattern] of [
      [(t: typeof tj) => (t.model.vocab[first] = 1.5), /model\.vocab token .* has id 1\.5, not a token id/],
      [(t: typeof tj) => (t.model.vocab[first] = 4294967296), /token id 4294967296 is outside config\.json vocab_size 576/],
      [(t: typeof tj) => (t.model.merges = [42]), /model\.merges\[0\] is not "a b" or \["a", "b"\]/],
    ] as const) {
      dir = hostile("tokids");
      const copy = JSON.parse(JSON.stringify(tj));
      edit(copy);
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(copy));
      refused(dir, pattern);
    }
  });

  it("metadata that contradicts the tensors is never written (checked on the plan itself)", () => {
    const dir = join(MODELS, "qwen3");
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    const st = new SafetensorsFolder(dir);
    try {
      const good = () => planExport(dir, config, st, "f16");
      checkPlanConsistency(good(), "config.json"); // the real plan agrees with itself
      const tamper = (key: string, value: number) => {
        const p = good();
        const k = p.kvs.find((x) => x.key === key)!;
        expect(k, key).toBeDefined();
        (k as { value: number }).value = value;
        return () => checkPlanConsistency(p, "config.json");
      };
      expect(tamper("qwen3.block_count", config.num_hidden_layers + 1)).toThrow(/qwen3\.block_count is \d+ but the tensors have blocks 0, 1/);
      expect(tamper("qwen3.embedding_length", config.hidden_size * 2)).toThrow(/token_embd\.weight has ne \[\d+,\d+\] but qwen3\.embedding_length/);
      expect(tamper("qwen3.attention.head_count", config.num_attention_heads * 2)).toThrow(/attn_q\.weight has ne/);
      expect(tamper("qwen3.attention.head_count_kv", 1)).toThrow(/attn_k\.weight has ne/);
      // the token list must have one entry per embedding row
      const p = good();
      const toks = p.kvs.find((x) => x.key === "tokenizer.ggml.tokens")! as { value: string[] };
      toks.value = toks.value.slice(0, -1);
      expect(() => checkPlanConsistency(p, "config.json")).toThrow(/tokenizer\.ggml\.token_type has \d+ entries but tokenizer\.ggml\.tokens has/);
      // and the engine's reading of the same folder must agree
      const view = { numLayers: config.num_hidden_layers, hiddenSize: config.hidden_size, vocabSize: config.vocab_size, numHeads: config.num_attention_heads,
        numKvHeads: config.num_key_value_heads, headDim: config.head_dim, numExperts: 0 };
      checkPlanConsistency(good(), "config.json", view);
      expect(() => checkPlanConsistency(good(), "config.json", { ...view, vocabSize: view.vocabSize + 1 })).toThrow(/tokenizer\.ggml\.tokens \(count\) is \d+ but the engine reads/);
    } finally {
      st.close();
    }
  });
});
