// GGUF block formats through the addon (quantizeTensor / dequantizeTensor), checked against gguf-py, llama.cpp's
// own Python reader: test/fixtures/goldens/quant_blocks.json holds block bytes and the values gguf 0.19's
// `quants.dequantize` gives for them (make_quant_goldens.py). Dequantisation must be BIT-exact: both compute
// d * q (Q8_0, Q4_0) or d*sc*q - dmin*m (Q4_K) as single f32 operations on f16-widened scales, so any difference
// is a layout bug, not rounding. (gguf-py computes Q4_K in f32 too: d*sc and dmin*m first, then the product and
// difference, the same order as ours.)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadAddon, type QuantType } from "../../electron/engine/addon.js";
import { GOLDENS } from "./fixtures.js";

interface Entry { block: number; count: number; bytes_hex: string; values_f32_hex: string; ref_input_f32_hex?: string; ref_mse?: number }
const golden = JSON.parse(readFileSync(join(GOLDENS, "quant_blocks.json"), "utf8")) as { formats: Record<QuantType, Entry> };
const hexBytes = (h: string) => Uint8Array.from(Buffer.from(h, "hex"));
const hexF32 = (h: string) => { const b = hexBytes(h); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
const addon = loadAddon();

describe.each(["q8_0", "q4_0", "q4_k"] as QuantType[])("%s", (type) => {
  const g = golden.formats[type];

  it("dequantises gguf-py's blocks bit-exactly", () => {
    const ours = addon.dequantizeTensor(hexBytes(g.bytes_hex), type, g.count);
    const theirs = hexF32(g.values_f32_hex);
    expect(ours.length).toBe(theirs.length);
    let mismatches = 0;
    for (let i = 0; i < ours.length; i++) if (!Object.is(ours[i], theirs[i])) mismatches++;
    expect(mismatches).toBe(0);
  });

  it("re-quantizes its own dequantised blocks to values no further than one step away and is deterministic", () => {
    const x = hexF32(g.values_f32_hex);
    const a = addon.quantizeTensor(new Float32Array(x), type);
    const b = addon.quantizeTensor(new Float32Array(x), type);
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(0);
    expect(a.length).toBe(hexBytes(g.bytes_hex).length);
  });

  if (g.ref_input_f32_hex) {
    // gguf-py's quantizer is llama.cpp's plain absmax reference; the error-minimising search must beat it.
    it("has a lower round-trip MSE than gguf-py's reference quantizer", () => {
      const x = hexF32(g.ref_input_f32_hex!);
      const y = addon.dequantizeTensor(addon.quantizeTensor(new Float32Array(x), type), type, x.length);
      let s = 0;
      for (let i = 0; i < x.length; i++) s += (x[i] - y[i]) ** 2;
      const ours = s / x.length;
      expect(ours).toBeLessThan(g.ref_mse! * 0.97);
    });
  }

  it("rejects bad arguments with clear errors", () => {
    expect(() => addon.quantizeTensor(new Float32Array(g.block + 1), type)).toThrow(/not a multiple of the block of/);
    expect(() => addon.dequantizeTensor(new Uint8Array(3), type, g.block)).toThrow(/take \d+ bytes but 3 were given/);
    expect(() => addon.quantizeTensor(new Float32Array(g.block), "q5_k" as QuantType)).toThrow(/unsupported quantization format 'q5_k'/);
  });
});
