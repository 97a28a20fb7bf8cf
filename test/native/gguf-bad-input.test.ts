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
import { MODELS, ROOT } from "./fixtures.js";

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
    expectCleanError(cli(["--model", bad, "--type", "f16", "--out", join(tmp, "b.gguf")]), /model\.safetensors: header length \d+ exceeds the file size/);
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
});
