// Bad input, each a clear error naming the file/field, and the process goes on: after every failure a good
// model still loads and generates. Broken models are copies of a fixture in a temp dir.
import { cpSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync, truncateSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../../electron/engine/engine.js";
import { fixtureNames, golden, modelDir } from "./fixtures.js";

const names = fixtureNames();
// a single-file fixture (for header surgery) and a sharded one (for the truncated shard), whichever exist
const single = names.includes("llama") ? "llama" : names.find((n) => existsSync(join(modelDir(n), "model.safetensors"))) ?? names[0];
const sharded = names.find((n) => existsSync(join(modelDir(n), "model.safetensors.index.json")));
const temps: string[] = [];
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

function copy(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `moe-bad-${name}-`));
  temps.push(dir);
  cpSync(modelDir(name), dir, { recursive: true });
  return dir;
}

function editConfig(dir: string, f: (c: Record<string, unknown>) => void) {
  const p = join(dir, "config.json");
  const c = JSON.parse(readFileSync(p, "utf8"));
  f(c);
  writeFileSync(p, JSON.stringify(c, null, 2));
}

/** safetensors: u64 little-endian header length, JSON header {name: {dtype, shape, data_offsets}}, then data. */
function readHeader(file: string): { header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>; data: Buffer } {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString("utf8")), data: buf.subarray(8 + n) };
}
function writeHeader(file: string, header: object, data: Buffer) {
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, data]));
}

/** A 2-D weight that the engine must have: the first layer's q_proj (or any attention projection). */
function pickWeight(header: Record<string, { shape: number[] }>): string {
  const keys = Object.keys(header).filter((k) => k !== "__metadata__");
  return keys.find((k) => /layers\.0\..*q_proj\.weight$/.test(k)) ?? keys.find((k) => /layers\.0\..*(proj|query)\S*\.weight$/.test(k)) ?? keys.find((k) => header[k].shape.length === 2)!;
}

async function expectStillWorks() {
  const g = golden(single);
  const m = await loadModel(modelDir(single), { threads: 2 });
  try {
    const r = await m.chat().generate({ ids: g.prompt_ids }, { temperature: 0, repetitionPenalty: 1, maxTokens: 3, eosIds: [] }).result;
    const k = Math.min(3, g.greedy_ids.length);
    expect(r.ids.slice(0, k)).toEqual(g.greedy_ids.slice(0, k));
  } finally {
    m.close();
  }
}

async function expectLoadError(dir: string, ...patterns: RegExp[]) {
  let err: Error | null = null;
  try {
    const m = await loadModel(dir, { threads: 2 });
    m.close();
  } catch (e) {
    err = e as Error;
  }
  expect(err, "loading should have failed").not.toBeNull();
  console.log(`  error: ${err!.message}`);
  for (const p of patterns) expect(err!.message).toMatch(p);
  await expectStillWorks();
}

describe("bad model folders give clear errors and the process survives", () => {
  it("unknown model_type names it and lists the supported ones", async () => {
    const dir = copy(single);
    editConfig(dir, (c) => (c.model_type = "gpt_unknown_moe"));
    await expectLoadError(dir, /gpt_unknown_moe/, /llama/, /qwen2_moe/);
  });

  it("missing config field names config.json and the field", async () => {
    const dir = copy(single);
    editConfig(dir, (c) => delete c.hidden_size);
    await expectLoadError(dir, /config\.json/, /hidden_size/);
  });

  it("corrupt safetensors header names the file", async () => {
    const dir = copy(single);
    const file = join(dir, "model.safetensors");
    const fd = openSync(file, "r+");
    const junk = Buffer.from("{\"this is not\": json at all!!!", "utf8");
    const { writeSync } = await import("node:fs");
    writeSync(fd, junk, 0, junk.length, 8);
    closeSync(fd);
    await expectLoadError(dir, /model\.safetensors/, /header/i);
  });

  it("absurd header length names the file", async () => {
    const dir = copy(single);
    const file = join(dir, "model.safetensors");
    const buf = readFileSync(file);
    buf.writeBigUInt64LE(BigInt(statSync(file).size) * 4n, 0);
    writeFileSync(file, buf);
    await expectLoadError(dir, /model\.safetensors/);
  });

  it("truncated shard names the shard", async () => {
    const name = sharded ?? single;
    const dir = copy(name);
    const shard = readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort()[0];
    const size = statSync(join(dir, shard)).size;
    truncateSync(join(dir, shard), Math.floor(size * 0.6));
    await expectLoadError(dir, new RegExp(shard.replace(/[.]/g, "\\.")), /truncat|size|bytes|short|end/i);
  });

  it("missing tensor names the tensor", async () => {
    const dir = copy(single);
    const file = join(dir, "model.safetensors");
    const { header, data } = readHeader(file);
    const victim = pickWeight(header);
    delete header[victim];
    writeHeader(file, header, data);
    await expectLoadError(dir, new RegExp(victim.replace(/[.]/g, "\\.")));
  });

  it("wrong-shaped tensor names the tensor and both shapes", async () => {
    const dir = copy(single);
    const file = join(dir, "model.safetensors");
    const { header, data } = readHeader(file);
    const victim = pickWeight(header);
    const [a, b] = header[victim].shape;
    // same element count (the file stays self-consistent), wrong shape
    header[victim].shape = a % 2 === 0 ? [a / 2, b * 2] : [a * b];
    writeHeader(file, header, data);
    await expectLoadError(dir, new RegExp(victim.replace(/[.]/g, "\\.")), /shape|expected/i);
  });

  it("missing folder and missing config.json", async () => {
    await expectLoadError(join(tmpdir(), "moe-no-such-model-dir"), /not found|no such|does not exist/i);
    const dir = mkdtempSync(join(tmpdir(), "moe-empty-"));
    temps.push(dir);
    await expectLoadError(dir, /config\.json/);
  });
});

describe("bad prompts", () => {
  it("empty prompt and a prompt longer than the context, then a good prompt works", async () => {
    const m = await loadModel(modelDir(single), { threads: 2 });
    try {
      const chat = m.chat({ contextLength: 32 });
      await expect(chat.generate({ ids: [] }).result).rejects.toThrow("prompt is empty");
      await expect(m.logits([])).rejects.toThrow("prompt is empty");
      const long = new Array(40).fill(golden(single).prompt_ids[1]);
      await expect(chat.generate({ ids: long }).result).rejects.toThrow(/40 tokens.*context of 32 tokens/);
      const over = new Array(m.info.contextLength + 1).fill(golden(single).prompt_ids[1]);
      await expect(m.logits(over)).rejects.toThrow(new RegExp(`${over.length} tokens.*context of ${m.info.contextLength}`));
      const r = await chat.generate({ ids: golden(single).prompt_ids.slice(0, 8) }, { temperature: 0, maxTokens: 2, eosIds: [] }).result;
      expect(r.ids.length).toBe(2);
    } finally {
      m.close();
    }
  });
});
