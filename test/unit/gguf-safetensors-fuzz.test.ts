// Fuzzing the exporter's safetensors reader (electron/gguf/safetensors.ts over the engine's native reader) with seeded mutations of the fixture
// files: byte flips in the header, truncations, a lying length prefix, huge / negative / fractional numbers, wrong
// types, deleted and duplicated keys, aliased offsets, and hostile shard names in an index. Every case either opens
// (and then every tensor lies inside its file with a byte size equal to its shape's) or throws a plain Error that
// names the file and echoes nothing big; a JS TypeError/RangeError escaping the reader is a bug.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SafetensorsFolder, STORED_BLOCKS } from "../../electron/gguf/safetensors.js";

const MODELS = join(import.meta.dirname, "../fixtures/models");
const SEED = 20261204;
const CASES = 300;
const tmp = mkdtempSync(join(tmpdir(), "moe-st-fuzz-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** mulberry32: a small seeded PRNG, so every run mutates the same way. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { below: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)] };
}

const HOSTILE = ["0", "-1", "0.5", "2147483647", "4294967296", "4294967301", "9007199254740993", "18446744073709551616", "1e300", "-1e300",
  '"64"', "[]", "{}", "null", "true", "[1,2]"];
const EVIL_SHARDS = ["../../etc/passwd", "/etc/passwd", "..", "sub/model.safetensors", "C:model.safetensors", "config.json", "", "model.safetensors\u0000"];

function split(file: string) {
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  return { header: b.subarray(8, 8 + n).toString("utf8"), data: b.subarray(8 + n) };
}
function join8(header: Buffer | string, data: Buffer, length?: bigint) {
  const h = typeof header === "string" ? Buffer.from(header, "utf8") : header;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(length ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** One structural mutation of a parsed header, serialised with hostile literals spliced in as raw text. */
function mutateTree(text: string, r: ReturnType<typeof prng>): string {
  const h = JSON.parse(text) as Record<string, Record<string, unknown>>;
  const names = Object.keys(h).filter((k) => k !== "__metadata__");
  const name = r.pick(names);
  const t = h[name];
  const marker = "\u0001HOSTILE\u0001";
  switch (r.below(6)) {
    case 0: (t.shape as unknown[])[r.below((t.shape as unknown[]).length || 1)] = marker; break;
    case 1: (t.data_offsets as unknown[])[r.below(2)] = marker; break;
    case 2: delete t[r.pick(["dtype", "shape", "data_offsets"])]; break;
    case 3: t[r.pick(["dtype", "shape", "data_offsets"])] = marker; break;
    case 4: t.data_offsets = [...(h[r.pick(names)].data_offsets as number[])]; break;  // alias another tensor's bytes
    default: t.dtype = r.pick(["F64", "U8", "I64", "F16", "BF16", "", "F32", "Q4"]); break;
  }
  let out = JSON.stringify(h).replace(`"${marker}"`, r.pick(HOSTILE));
  if (r.below(4) === 0) {
    // a duplicated key: the same tensor named twice (JSON.parse would keep only the last one)
    out = out.replace(/^\{/, `{${JSON.stringify(name)}:${JSON.stringify(t)},`);
  }
  return out;
}

describe("electron/gguf/safetensors.ts under fuzzing", () => {
  it(`${CASES} seeded mutations of the fixture headers: opens cleanly or fails with a clear Error`, () => {
    const r = prng(SEED);
    const sources = ["llama/model.safetensors", "qwen2_moe/model-00003-of-00003.safetensors", "qwen3_moe/model.safetensors"].map((f) => split(join(MODELS, f)));
    let opened = 0, refused = 0;
    for (let c = 0; c < CASES; c++) {
      const dir = join(tmp, `case-${c}`);
      rmSync(dir, { recursive: true, force: true });
      const s = r.pick(sources);
      let file: Buffer;
      const kind = r.below(6);
      if (kind === 0) {
        const h = Buffer.from(s.header, "utf8");
        for (let k = 0, n = 1 + r.below(4); k < n; k++) h[r.below(h.length)] ^= 1 + r.below(255);
        file = join8(h, s.data);
      } else if (kind === 1) {
        const whole = join8(s.header, s.data);
        file = whole.subarray(0, r.below(whole.length));
      } else if (kind === 2) {
        const n = BigInt(Buffer.byteLength(s.header));
        file = join8(s.header, s.data, r.pick([0n, 1n, n - 1n, n + 1n, 100n * 2n ** 20n + 1n, 2n ** 64n - 1n]));
      } else {
        file = join8(mutateTree(s.header, r), s.data);
      }
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "model.safetensors"), file);
      if (r.below(5) === 0) {
        // an index whose shard names try to leave the folder
        writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "model.safetensors", b: r.pick(EVIL_SHARDS) } }));
      }
      let st: SafetensorsFolder | null = null;
      try {
        st = new SafetensorsFolder(dir);
        opened++;
        const size = statSync(join(dir, "model.safetensors")).size;
        for (const t of st.tensors.values()) {
          expect(t.offset + t.byteLength, `case ${c}: ${t.name}`).toBeLessThanOrEqual(size);
          const count = t.shape.reduce((a, b) => a * b, 1);
          if (t.quant) expect(t.byteLength, `case ${c}: ${t.name}`).toBe((count / STORED_BLOCKS[t.quant][0]) * STORED_BLOCKS[t.quant][1]);
          else expect(t.byteLength, `case ${c}: ${t.name}`).toBe(count * { F32: 4, F16: 2, BF16: 2, U8: 1 }[t.dtype]);
          if (t.byteLength > 0 && !t.quant) st.readF32(t, 0, 1); // a bad range would read past the end here
        }
      } catch (e) {
        refused++;
        const err = e as Error;
        expect(err.constructor, `case ${c}: ${err.stack}`).toBe(Error);
        expect(err.message, `case ${c}`).toMatch(/model\.safetensors|case-\d+/);
        expect(err.message.length, `case ${c}`).toBeLessThan(2000);
        expect(err.message).not.toMatch(/root:/);
      } finally {
        st?.close();
      }
    }
    // the mutations must exercise both outcomes
    expect(opened).toBeGreaterThan(10);
    expect(refused).toBeGreaterThan(CASES / 2);
  });
});

