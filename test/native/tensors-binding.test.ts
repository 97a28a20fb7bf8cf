// binding/tensors.cpp: the engine's storage rule and safetensors reader as TypeScript sees them.
//  - one rule: an int4 model folder (`moe-studio quantize`, native/quant/writer.cpp) and the GGUF export plan of the
//    same float checkpoint (electron/gguf/arch.ts + quant.ts chooseType) give every tensor the same block type,
//    rows that are not a multiple of 256 included, and exporting the folder plans exactly the same types;
//  - one reader: a hostile header read through openSafetensors fails with the native reader's error naming the file;
//    readF32 widens bf16/f16/f32 to exactly the stored values, readBytes returns the stored bytes.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadAddon } from "../../electron/engine/addon.js";
import { quantizeModelFolder } from "../../electron/engine/quantize.js";
import { planExport } from "../../electron/gguf/arch.js";
import { GGMLType, GGML_TYPE_NAME } from "../../electron/gguf/format.js";
import { SafetensorsFolder } from "../../electron/gguf/safetensors.js";
// @ts-expect-error plain ESM helper shared with check_gguf.py
import { makeModels } from "../fixtures/gguf/make_models.mjs";
import { rawSafetensors } from "./safetensors-surgery.js";

let tmp: string;
let dirs: Record<string, string>;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "moe-tensors-"));
  dirs = makeModels(join(tmp, "models")) as Record<string, string>;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const config = (dir: string) => JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));

describe("one storage rule for int4 folders and GGUF files", () => {
  it("a q4_k folder and the q4_k GGUF plan agree on every tensor, rows of 128 falling back to Q4_0 in both", async () => {
    const src = dirs.qwen2_moe_all;
    const out = join(tmp, "qwen2_moe_all.q4_k");
    const r = await quantizeModelFolder({ model: src, out, format: "q4_k", threads: 1 });
    // the folder: what the writer stored, per tensor
    const folder = new SafetensorsFolder(out);
    const float = new SafetensorsFolder(src);
    try {
      const direct = planExport(src, config(src), float, "q4_k");
      const viaFolder = planExport(out, config(out), folder, "q4_k");
      expect(viaFolder.tensors.map((t) => [t.name, GGML_TYPE_NAME[t.type]])).toEqual(direct.tensors.map((t) => [t.name, GGML_TYPE_NAME[t.type]]));
      let fell = 0;
      for (const t of direct.tensors) {
        for (const s of t.sources) {
          const q = folder.get(s.name).quant;
          const planned = GGML_TYPE_NAME[t.type].toLowerCase();
          // a block type in the GGUF is the block the folder holds; a float in the GGUF is a float in the folder
          if (t.type === GGMLType.Q8_0 || t.type === GGMLType.Q4_0 || t.type === GGMLType.Q4_K) expect(q, s.name).toBe(planned);
          else expect(q, `${s.name} is ${planned} in the GGUF`).toBeUndefined();
        }
        if (t.role === "weight" && t.ne[0] % 256 !== 0) {
          fell++;
          expect(GGML_TYPE_NAME[t.type], t.name).toBe("Q4_0");
        }
      }
      expect(fell, "the synthetic model has rows that are not a multiple of 256").toBeGreaterThan(0);
      // the writer reported the same fallbacks
      const fallbacks = Object.entries(r.config.fallbacks);
      expect(fallbacks.length).toBeGreaterThan(0);
      for (const [name, type] of fallbacks) expect(type, name).toBe("q4_0");
    } finally {
      folder.close();
      float.close();
    }
  });

  it("storageType names bad queries", () => {
    const a = loadAddon();
    expect(a.storageType({ container: "gguf", format: "q4_k", role: "weight", rank: 2, rowLength: 1408 })).toBe("q4_0");
    expect(a.storageType({ container: "folder", format: "q4_k", role: "weight", rank: 2, rowLength: 40, stored: "bf16" })).toBe("bf16");
    expect(a.storageType({ container: "gguf", format: "q4_k", role: "weight", rank: 2, rowLength: 40 })).toBe("f16");
    expect(a.storageType({ container: "folder", format: "q8_0", role: "router", rank: 2, rowLength: 64, stored: "f16" })).toBe("f16");
    expect(() => a.storageType({ container: "gguf", format: "q4_k", role: "gate" as "weight", rank: 2, rowLength: 64 })).toThrow(/unknown tensor role 'gate'/);
    expect(() => a.storageType({ container: "folder", format: "f16", role: "weight", rank: 2, rowLength: 64 })).toThrow(/a model folder the engine runs/);
    expect(() => a.storageType({ container: "gguf", format: "q4_k", role: "weight", rank: 2, rowLength: -1 })).toThrow(/rowLength must be an integer/);
  });
});

/** A safetensors file from [name, dtype, shape, bytes] entries, packed in order. */
function writeSt(file: string, entries: Array<[string, string, number[], Buffer]>) {
  const h: Record<string, unknown> = {};
  let off = 0;
  for (const [name, dtype, shape, b] of entries) {
    h[name] = { dtype, shape, data_offsets: [off, off + b.length] };
    off += b.length;
  }
  writeFileSync(file, rawSafetensors(JSON.stringify(h), Buffer.concat(entries.map((e) => e[3]))));
}

describe("openSafetensors: the engine's reader", () => {
  it("readF32 gives exactly the stored bf16, f16 and f32 values; readBytes the stored bytes", () => {
    const dir = join(tmp, "values");
    mkdirSync(dir, { recursive: true });
    // every interesting bit pattern: zeros of both signs, subnormals, the extremes, infinities, a NaN, and a sweep
    const f32 = new Uint32Array([0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x7f7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x3f800000, 0xc0490fdb]);
    const f16 = new Uint16Array(4096);
    for (let i = 0; i < f16.length; i++) f16[i] = (i * 16 + (i >> 8)) & 0xffff; // spans every exponent, both signs
    const bf16 = new Uint16Array(4096);
    for (let i = 0; i < bf16.length; i++) bf16[i] = (i * 16 + 7) & 0xffff;
    writeSt(join(dir, "model.safetensors"), [
      ["a.f32", "F32", [2, 5], Buffer.from(f32.buffer)],
      ["b.f16", "F16", [64, 64], Buffer.from(f16.buffer)],
      ["c.bf16", "BF16", [4096], Buffer.from(bf16.buffer)],
    ]);
    const st = loadAddon().openSafetensors(dir);
    try {
      expect(st.tensors().map((t) => [t.name, t.dtype, t.shape])).toEqual([["a.f32", "f32", [2, 5]], ["b.f16", "f16", [64, 64]], ["c.bf16", "bf16", [4096]]]);
      // f32: the same bits (NaN payload included)
      expect(Array.from(new Uint32Array(st.readF32("a.f32").buffer))).toEqual(Array.from(f32));
      // bf16: the top half of an f32
      const b = new Uint32Array(st.readF32("c.bf16").buffer);
      for (let i = 0; i < bf16.length; i++) if (b[i] !== bf16[i] << 16 >>> 0) throw new Error(`bf16 ${bf16[i].toString(16)}: got ${b[i].toString(16)}`);
      // f16: the exact value (every f16 is an f32), computed here from the bits
      const h = st.readF32("b.f16");
      for (let i = 0; i < f16.length; i++) {
        const v = f16[i], s = v >> 15 ? -1 : 1, e = (v >> 10) & 31, m = v & 1023;
        const want = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
        if (!Object.is(h[i], want)) throw new Error(`f16 ${v.toString(16)}: got ${h[i]}, want ${want}`);
      }
      // a range, and the raw bytes of one
      expect(Array.from(st.readF32("c.bf16", 100, 3))).toEqual(Array.from(new Float32Array(new Uint32Array([bf16[100] << 16, bf16[101] << 16, bf16[102] << 16].map((x) => x >>> 0)).buffer)));
      expect(Buffer.from(st.readBytes("b.f16", 10, 6))).toEqual(Buffer.from(f16.buffer, 10, 6));
      expect(() => st.readF32("c.bf16", 4000, 100)).toThrow(/model\.safetensors: tensor c\.bf16: elements \[4000, 4100\) are outside its 4096/);
      expect(() => st.readBytes("nope")).toThrow(/no tensor "nope"/);
    } finally {
      st.close();
    }
    expect(() => st.tensors()).toThrow(/closed/);
  });

  it("a hostile header fails with the native reader's error naming the file, before anything is read", () => {
    const cases: Array<[string, Buffer, RegExp]> = [
      ["length", (() => { const b = Buffer.alloc(64); b.writeBigUInt64LE(200n * 2n ** 20n); return b; })(), /header length is over the 100 MiB limit/],
      ["overlap", rawSafetensors(JSON.stringify({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] }, b: { dtype: "F32", shape: [4], data_offsets: [8, 24] } }), Buffer.alloc(24)), /corrupt safetensors header: tensors a and b overlap/],
      ["rank", rawSafetensors(JSON.stringify({ a: { dtype: "F32", shape: [1, 1, 1, 1, 1, 1, 1, 1, 1], data_offsets: [0, 4] } }), Buffer.alloc(4)), /tensor a: shape has 9 dimensions \(at most 8\)/],
      ["duplicate", rawSafetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', Buffer.alloc(4)), /tensor a: appears twice in the header/],
    ];
    // a name with invalid UTF-8 bytes (0xff), which no JS string can hold
    const bad = Buffer.from('{"a_":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "latin1");
    bad[2] = 0xff;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(bad.length));
    cases.push(["utf8", Buffer.concat([len, bad, Buffer.alloc(4)]), /corrupt safetensors header: a tensor name is not valid UTF-8/]);
    for (const [name, bytes, pattern] of cases) {
      const dir = join(tmp, `hostile-${name}`);
      mkdirSync(dir, { recursive: true });
      const file = join(dir, "model.safetensors");
      writeFileSync(file, bytes);
      let err: Error | null = null;
      try {
        loadAddon().openSafetensors(dir).close();
      } catch (e) {
        err = e as Error;
      }
      expect(err, name).toBeInstanceOf(Error);
      expect(err!.message, name).toContain(file);
      expect(err!.message, name).toMatch(pattern);
      // the exporters' folder class gives the same error
      expect(() => new SafetensorsFolder(dir), name).toThrow(err!.message);
    }
  });
});
