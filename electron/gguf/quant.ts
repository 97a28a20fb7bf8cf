// Which ggml type each exported tensor gets, and the encoders from f32 rows to those types' bytes.
//
// Q8_0 / Q4_0 / Q4_K bytes come from the engine (addon.quantizeTensor: the same block formats our engine runs, with
// its error-minimising scale search). Q5_0 is only a fallback for Q4_K rows that are not a multiple of 256 (what
// llama.cpp's quantizer does); the engine does not run it, so its plain reference encoder lives here.
import { loadAddon, type NativeAddon, type QuantType } from "../engine/addon.js";
import { GGMLType, GGML_BLOCK } from "./format.js";
import { f32ToF16, f32ToF16Bits } from "./half.js";

export type ExportType = "f16" | "q8_0" | "q4_0" | "q4_k";
export const EXPORT_TYPES: ExportType[] = ["f16", "q8_0", "q4_0", "q4_k"];

/** What a tensor is, for the type choice. */
export type TensorRole =
  | "norm"        // 1-D gains (attn_norm, ffn_norm, q/k norms, output_norm)
  | "bias"
  | "router"      // ffn_gate_inp, ffn_gate_inp_shexp: routing is precision-sensitive, llama.cpp keeps them f32
  | "rope_freqs"  // computed per-frequency factors (llama3 rope)
  | "token_embd"
  | "output"
  | "weight";     // every other matrix: attention projections, dense MLP, experts, shared experts

/**
 * The type of one tensor for an export type, following llama.cpp (convert_hf_to_gguf --outtype and llama-quantize):
 * - 1-D tensors, norms, biases, routers and rope_freqs stay F32.
 * - f16: every other tensor F16.
 * - q8_0: Q8_0; a row length that is not a multiple of 32 falls back to F16 (convert_hf_to_gguf's fallback).
 * - q4_0 / q4_k: token_embd and output are kept at Q8_0 (the default: embeddings and lm_head at 8 bits or
 *   better; llama.cpp's own default is Q6_K for output, a type our engine does not have, and Q8_0 is the next
 *   better one). Other matrices Q4_0 / Q4_K. A Q4_K row that is not a multiple of 256 falls back to Q5_0 and,
 *   when not even a multiple of 32, to F16 — exactly llama-quantize's fallback chain. Q4_0 rows not a multiple of
 *   32 fall back to F16.
 */
export function chooseType(target: ExportType, role: TensorRole, ne: number[]): GGMLType {
  if (role === "norm" || role === "bias" || role === "router" || role === "rope_freqs" || ne.length < 2) return GGMLType.F32;
  const fits = (t: GGMLType) => ne[0] % GGML_BLOCK[t][0] === 0;
  const orF16 = (t: GGMLType) => (fits(t) ? t : GGMLType.F16);
  switch (target) {
    case "f16":
      return GGMLType.F16;
    case "q8_0":
      return orF16(GGMLType.Q8_0);
    case "q4_0":
      return role === "token_embd" || role === "output" ? orF16(GGMLType.Q8_0) : orF16(GGMLType.Q4_0);
    case "q4_k":
      if (role === "token_embd" || role === "output") return orF16(GGMLType.Q8_0);
      return fits(GGMLType.Q4_K) ? GGMLType.Q4_K : orF16(GGMLType.Q5_0);
  }
}

/** general.file_type (llama_ftype) of a file exported as `target`. */
export function fileType(target: ExportType): number {
  // MOSTLY_F16 = 1, MOSTLY_Q8_0 = 7, MOSTLY_Q4_0 = 2, MOSTLY_Q4_K_S = 14 (every matrix Q4_K, no Q6_K bumps)
  return { f16: 1, q8_0: 7, q4_0: 2, q4_k: 14 }[target];
}

/** The engine's block quantizer; a clear error when the built addon predates it. */
export function quantAddon(): NativeAddon {
  const a = loadAddon();
  if (typeof a.quantizeTensor !== "function" || typeof a.dequantizeTensor !== "function") {
    throw new Error("this build of the engine has no quantizeTensor/dequantizeTensor: rebuild it (npm run build:native)");
  }
  return a;
}

const ENGINE_NAME: Partial<Record<GGMLType, QuantType>> = {
  [GGMLType.Q8_0]: "q8_0",
  [GGMLType.Q4_0]: "q4_0",
  [GGMLType.Q4_K]: "q4_k",
};

/** The engine's name for a ggml type it quantizes (Q8_0/Q4_0/Q4_K), else null. */
export function engineQuantType(t: GGMLType): QuantType | null {
  return ENGINE_NAME[t] ?? null;
}

/** Encode whole rows of f32 values (x.length a multiple of the block size) as `type`'s bytes. */
export function encodeRows(x: Float32Array, type: GGMLType): Uint8Array {
  switch (type) {
    case GGMLType.F32:
      return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case GGMLType.F16: {
      const h = f32ToF16(x);
      return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    }
    case GGMLType.Q5_0:
      return quantizeQ5_0(x);
    default: {
      const name = ENGINE_NAME[type];
      if (!name) throw new Error(`gguf: no encoder for ggml type ${type}`);
      return quantAddon().quantizeTensor(x, name);
    }
  }
}

/**
 * Q5_0 (ggml's reference algorithm): per block of 32, d = m / -16 where m is the value of largest magnitude
 * (sign kept, so m maps to q = 0), q_i = min(31, trunc(x_i/d + 16.5)) in [0, 31]; x ≈ (q - 16)·d. Layout per block:
 * f16 d, u32 qh (bit j = bit 4 of q_j), 16 bytes qs (low nibble q_j, high nibble q_{j+16}). Arithmetic is rounded to
 * f32 at every step (Math.fround) like the C reference.
 */
export function quantizeQ5_0(x: Float32Array): Uint8Array {
  const QK = 32;
  if (x.length % QK !== 0) throw new Error(`Q5_0: ${x.length} values is not a multiple of ${QK}`);
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 22);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const base = b * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[base + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -16);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const o = b * 22;
    dv.setUint16(o, f32ToF16Bits(d), true);
    let qh = 0;
    for (let j = 0; j < QK / 2; j++) {
      const x0 = Math.fround(x[base + j] * id);
      const x1 = Math.fround(x[base + QK / 2 + j] * id);
      const xi0 = Math.min(31, Math.trunc(Math.fround(x0 + 16.5)));
      const xi1 = Math.min(31, Math.trunc(Math.fround(x1 + 16.5)));
      out[o + 6 + j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
      qh |= ((xi0 & 0x10) >> 4) << j;
      qh |= ((xi1 & 0x10) >> 4) << (j + QK / 2);
    }
    dv.setUint32(o + 2, qh >>> 0, true);
  }
  return out;
}
