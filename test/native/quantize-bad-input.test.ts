// `moe-studio quantize` with hostile model folders (hub input): the source is validated as generate loads it
// before anything is written, so each case is one clear error line, exit code 1, no destination folder and no
// .partial-* temporary folder left behind. Broken folders are copies of a fixture in a temp dir.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { modelDir, ROOT } from "./fixtures.js";
import { rawSafetensors, readHeader, writeHeader } from "./safetensors-surgery.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const tmp = mkdtempSync(join(tmpdir(), "moe-quantize-bad-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function copy(name: string): string {
  const dir = join(tmp, name);
  cpSync(modelDir("llama"), dir, { recursive: true });
  return dir;
}

function refused(src: string, pattern: RegExp, extra: string[] = []) {
  const out = join(tmp, "out");
  const r = spawnSync(process.execPath, [BIN, "quantize", "--model", src, "--bits", "8", "--out", out, ...extra], { encoding: "utf8", timeout: 120_000 });
  expect(r.status, r.stderr).toBe(1);
  const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("quantize:"));
  expect(lines.length, r.stderr).toBe(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(existsSync(out)).toBe(false);
  expect(readdirSync(tmp).filter((f) => f.includes(".partial-"))).toEqual([]);
}

describe("quantize refuses hostile model folders before writing anything", () => {
  it("a weight whose shape contradicts config.json (the engine's own binding rules)", () => {
    const dir = copy("shape");
    const st = join(dir, "model.safetensors");
    const { header, data } = readHeader(st);
    const [a, b] = header["model.layers.0.mlp.gate_proj.weight"].shape;
    header["model.layers.0.mlp.gate_proj.weight"].shape = [b, a];
    writeHeader(st, header, data);
    refused(dir, new RegExp(`model\\.layers\\.0\\.mlp\\.gate_proj\\.weight has shape \\[${b},${a}\\], expected \\[${a},${b}\\]`));
  });

  it("an element count that overflows, and overlapping tensor ranges", () => {
    let dir = copy("overflow");
    let st = join(dir, "model.safetensors");
    const { header, data } = readHeader(st);
    const text = JSON.stringify(header).replace('"model.norm.weight":' + JSON.stringify(header["model.norm.weight"]),
      '"model.norm.weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}');
    writeFileSync(st, rawSafetensors(text, data));
    refused(dir, /model\.safetensors: tensor model\.norm\.weight: shape \[4294967296,4294967296\] has more elements than 2\^64/);
    dir = copy("overlap");
    st = join(dir, "model.safetensors");
    const h2 = readHeader(st).header;
    h2["model.layers.0.self_attn.k_proj.weight"].data_offsets = [...h2["model.layers.0.self_attn.v_proj.weight"].data_offsets];
    writeHeader(st, h2, data);
    refused(dir, /model\.safetensors: corrupt safetensors header: tensors .* overlap/);
  });

  it("config values out of range, no tokenizer, an unparseable tokenizer", () => {
    let dir = copy("layers");
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, num_hidden_layers: 2147483647 }));
    refused(dir, /config\.json: num_hidden_layers = 2147483647 is not an integer in \[1, 4096\]/);
    dir = copy("notok");
    rmSync(join(dir, "tokenizer.json"));
    refused(dir, /tokenizer\.json: file not found/);
    dir = copy("badtok");
    writeFileSync(join(dir, "tokenizer.json"), "{\"model\": ");
    refused(dir, /tokenizer\.json: invalid JSON/);
  });

  it("--threads 99999999 names the flag and the range", () => {
    refused(modelDir("llama"), /--threads must be an integer in \[1, 1024\], got "99999999"/, ["--threads", "99999999"]);
  });
});

describe("--threads 99999999 elsewhere is a range error, not EAGAIN", () => {
  it("generate", () => {
    const r = spawnSync(process.execPath, [BIN, "generate", "--model", modelDir("llama"), "--ids", "1,2", "--max-tokens", "1", "--threads", "99999999"], { encoding: "utf8", timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/threads must be an integer in \[0, 1024\] \(0 = one per core\), got 99999999/);
    expect(r.stderr).not.toMatch(/Resource temporarily unavailable/);
  });
});
