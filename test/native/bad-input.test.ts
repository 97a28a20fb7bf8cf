// Bad input, each a clear error naming the file/field, and the process goes on: after every failure a good
// model still loads and generates. Broken models are copies of a fixture in a temp dir.
import { cpSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync, truncateSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../../electron/engine/engine.js";
import { fixtureNames, golden, modelDir } from "./fixtures.js";
import { rawSafetensors, readHeader, writeHeader } from "./safetensors-surgery.js";
import { loadAddon } from "../../electron/engine/addon.js";

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

describe("hostile model folders (hub input): bounds-checked everywhere, never echo other files", () => {
  it("a shape whose element count overflows 64 bits is refused, not read as 0 elements", async () => {
    const dir = copy(single);
    const file = join(dir, "model.safetensors");
    const { header, data } = readHeader(file);
    const victim = pickWeight(header);
    // [2^32, 2^32] elements wrap to 0 in unchecked u64 arithmetic and would match offsets [0, 0]
    const text = JSON.stringify(header).replace(JSON.stringify(victim) + ":" + JSON.stringify(header[victim]),
      JSON.stringify(victim) + ':{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}');
    writeFileSync(file, rawSafetensors(text, data));
    await expectLoadError(dir, /model\.safetensors/, new RegExp(victim.replace(/[.]/g, "\\.")), /more elements than 2\^64/);
  });

  it("offsets past the end, begin > end and overlapping tensors are refused", async () => {
    for (const [edit, pattern] of [
      [(h: Record<string, { data_offsets: [number, number] }>, v: string) => (h[v].data_offsets = [h[v].data_offsets[0] + 1e9, h[v].data_offsets[1] + 1e9]), /truncated/],
      [(h: Record<string, { data_offsets: [number, number] }>, v: string) => (h[v].data_offsets = [h[v].data_offsets[1], h[v].data_offsets[0]]), /end before they begin/],
    ] as const) {
      const dir = copy(single);
      const file = join(dir, "model.safetensors");
      const { header, data } = readHeader(file);
      const victim = pickWeight(header);
      edit(header, victim);
      writeHeader(file, header, data);
      await expectLoadError(dir, /model\.safetensors/, pattern);
    }
    const dir = copy(single);
    const file = join(dir, "model.safetensors");
    const { header, data } = readHeader(file);
    const names = Object.keys(header).filter((k) => k !== "__metadata__" && header[k].shape.length === 2);
    const kind = (n: string) => `${header[n].dtype} ${header[n].shape.join()}`;
    const a = names.find((n) => names.some((m) => m !== n && kind(m) === kind(n)))!;
    const b = names.find((m) => m !== a && kind(m) === kind(a))!;
    expect(b, "two same-shaped weights").toBeDefined();
    header[b].data_offsets = [...header[a].data_offsets]; // b aliases a's bytes
    writeHeader(file, header, data);
    await expectLoadError(dir, /model\.safetensors: corrupt safetensors header: tensors .* overlap/);
  });

  it("an index naming ../../etc/passwd is refused without opening it (no file content in the error)", async () => {
    const name = sharded ?? single;
    const dir = copy(name);
    const outside = join(dir, "..", `secret-${process.pid}.safetensors`);
    writeFileSync(outside, "TOPSECRET".repeat(20));
    temps.push(outside);
    const idx = join(dir, "model.safetensors.index.json");
    const { header } = readHeader(join(dir, readdirSync(dir).find((f) => f.endsWith(".safetensors"))!));
    const shardOf = Object.keys(header).filter((k) => k !== "__metadata__");
    for (const evil of ["../../etc/passwd", `../secret-${process.pid}.safetensors`, "/etc/passwd"]) {
      const wm: Record<string, string> = existsSync(idx) ? JSON.parse(readFileSync(idx, "utf8")).weight_map : Object.fromEntries(shardOf.map((k) => [k, "model.safetensors"]));
      wm[Object.keys(wm)[0]] = evil;
      writeFileSync(idx, JSON.stringify({ metadata: {}, weight_map: wm }));
      let err: Error | null = null;
      try {
        (await loadModel(dir, { threads: 1 })).close();
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message).toMatch(/model\.safetensors\.index\.json: weight_map names shard .*not a plain file name inside the model folder/);
      expect(err?.message).not.toMatch(/TOPSECRET|root:/);
    }
    await expectStillWorks();
  });

  it("an index naming a missing shard, or a tensor the shard lacks, is a clear error", async () => {
    const name = sharded ?? single;
    const dir = copy(name);
    const idx = join(dir, "model.safetensors.index.json");
    const shards = readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort();
    const wm: Record<string, string> = existsSync(idx) ? JSON.parse(readFileSync(idx, "utf8")).weight_map
      : Object.fromEntries(Object.keys(readHeader(join(dir, shards[0])).header).filter((k) => k !== "__metadata__").map((k) => [k, shards[0]]));
    writeFileSync(idx, JSON.stringify({ weight_map: { ...wm, "model.extra.weight": "model-00009-of-00009.safetensors" } }));
    await expectLoadError(dir, /model-00009-of-00009\.safetensors: missing/);
    writeFileSync(idx, JSON.stringify({ weight_map: { ...wm, "model.extra.weight": shards[0] } }));
    await expectLoadError(dir, new RegExp(`tensor model\\.extra\\.weight is listed in weight_map for ${shards[0].replace(/[.]/g, "\\.")} but is not in that file`));
  });

  it("config counts name the field, the value and the range", async () => {
    for (const [field, value, pattern] of [
      ["num_hidden_layers", 2147483647, /config\.json: num_hidden_layers = 2147483647 is not an integer in \[1, 4096\]/],
      ["hidden_size", 1e300, /config\.json: hidden_size = 1e\+300 is not an integer in \[1, 1048576\]/],
      ["vocab_size", -3, /config\.json: vocab_size = -3 is not an integer in \[1, 16777216\]/],
      ["max_position_embeddings", 1e12, /max_position_embeddings = 1000000000000 is not an integer/],
      ["rope_theta", -5, /rope_theta = -5 is not a finite number/],
    ] as const) {
      const dir = copy(single);
      editConfig(dir, (c) => {
        c[field] = value;
        if (field === "rope_theta" && c.rope_parameters) (c.rope_parameters as Record<string, unknown>).rope_theta = value;
      });
      await expectLoadError(dir, pattern);
    }
  });

  it("a context whose KV cache would not fit in memory is refused before allocating, naming context and bytes", async () => {
    const dir = copy(single);
    editConfig(dir, (c) => (c.max_position_embeddings = 16777216));
    const m = await loadModel(dir, { threads: 1 });
    // a 1 GiB cap (the 16M-token cache needs ~17 GB): the refusal must not depend on this machine's RAM, and a
    // machine with that much free must not actually allocate it here
    process.env.MOE_SESSION_MEMORY_LIMIT = String(2 ** 30);
    try {
      expect(() => m.native.createSession({ contextLength: 16777216 })).toThrow(/a context of 16777216 tokens needs \d+ bytes \(.* GiB\) of f32 KV cache and scratch.*more than the 1073741824 bytes \(1\.0 GiB\) of memory available/);
      expect(() => m.native.createSession({ contextLength: 1.5 })).toThrow(/contextLength = 1.5 must be an integer in \[1, 16777216\]/);
      expect(m.native.createSession({ contextLength: 64 }).contextLength).toBe(64);
    } finally {
      delete process.env.MOE_SESSION_MEMORY_LIMIT;
      m.close();
    }
  });

  it("threads 99999999 is a range error, not EAGAIN", async () => {
    await expect(loadAddon().loadModel(modelDir(single), { threads: 99999999 })).rejects.toThrow(/threads must be an integer in \[0, 1024\] \(0 = one per core\), got 99999999/);
    await expect(loadAddon().loadModel(modelDir(single), { threads: 2.5 })).rejects.toThrow(/threads must be an integer/);
    await expectStillWorks();
  });
});

describe("bad prompts", () => {
  it("token ids outside [0, vocab) are refused before conversion: 2^32+5 does not become 5", async () => {
    const m = await loadModel(modelDir(single), { threads: 2 });
    try {
      const s = m.native.createSession({ contextLength: 32 });
      const V = m.info.vocabSize;
      await expect(s.logits([1, 2 ** 32 + 5])).rejects.toThrow(`ids[1] = 4294967301 is not a token id: it must be an integer in [0, ${V})`);
      await expect(s.logits([V])).rejects.toThrow(`ids[0] = ${V} is not a token id`);
      await expect(s.logits([-1])).rejects.toThrow("ids[0] = -1 is not a token id");
      await expect(s.logits([1.5])).rejects.toThrow("ids[0] = 1.5 is not a token id");
      const params = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0, maxTokens: 1, eosIds: [] as number[] };
      await expect(s.generate([2 ** 32 + 5], params, () => {})).rejects.toThrow("ids[0] = 4294967301 is not a token id");
      await expect(s.generate([1], { ...params, eosIds: [2 ** 32 + 5] }, () => {})).rejects.toThrow("params.eosIds[0] = 4294967301 is not a token id");
      await expect(s.generate([1], { ...params, maxTokens: 1e300 }, () => {})).rejects.toThrow("params.maxTokens = 1.0000000000000001e+300 must be an integer in [1, 2147483647]");
      await expect(s.generate([1], { ...params, seed: -1 }, () => {})).rejects.toThrow("params.seed = -1 must be an integer in [0, 4294967295]");
      const ok = await s.logits([1, 2]);
      expect(ok.length).toBe(2 * V);
      s.dispose();
    } finally {
      m.close();
    }
  });

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
