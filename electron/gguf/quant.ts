// Which ggml type each exported tensor gets, and the encoders from f32 rows to those types' bytes.
//
// The type is not decided here: chooseType asks the engine's one storage rule (native/quant/plan.h, through
// addon.storageType), the rule `moe-studio quantize` writes model folders with, so a folder's blocks and the GGUF
// exported from the same checkpoint agree tensor by tensor (and exporting the folder, which copies its blocks, gives
// the same file). Q8_0 / Q4_0 / Q4_K bytes come from the engine too (addon.quantizeTensor: the block formats the
// engine runs, with its error-minimising scale search); F32/F16 are converted here.
import { loadAddon, type NativeAddon, type QuantType, type StorageRole } from "../engine/addon.js";
import { GGMLType } from "./format.js";
import { f32ToF16 } from "./half.js";

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

/** The engine's role (native/quant/plan.h) for each GGUF role: rope_freqs is a 1-D vector of factors, like a norm. */
const ENGINE_ROLE: Record<TensorRole, StorageRole> = {
  norm: "norm",
  bias: "bias",
  router: "router",
  rope_freqs: "norm",
  token_embd: "embedding",
  output: "output",
  weight: "weight",
};

const GGML_OF: Record<string, GGMLType> = { f32: GGMLType.F32, f16: GGMLType.F16, q8_0: GGMLType.Q8_0, q4_0: GGMLType.Q4_0, q4_k: GGMLType.Q4_K };

/**
 * The type of one tensor (ne in GGUF order: ne[0] is the row length) for an export type, by the engine's rule
 * (native/quant/plan.h has the table and the reasons):
 * - 1-D tensors, norms, biases, routers and rope_freqs stay F32 (llama.cpp's convention).
 * - f16: every other tensor F16.
 * - q8_0 / q4_0 / q4_k: token_embd and output Q8_0 (8 bits or better; llama.cpp would use Q6_K, which the engine
 *   does not run), every other matrix the requested type.
 * - Rows that do not fit the block: Q4_K -> Q4_0 (not llama-quantize's Q5_0: Q4_0 is what an int4 model folder
 *   holds, so both routes to a GGUF write the same blocks) -> F16 when not even a multiple of 32.
 */
export function chooseType(target: ExportType, role: TensorRole, ne: number[]): GGMLType {
  const name = quantAddon().storageType({ container: "gguf", format: target, role: ENGINE_ROLE[role], rank: ne.length, rowLength: ne.length > 0 ? ne[0] : 1 });
  const t = GGML_OF[name];
  if (t === undefined) throw new Error(`gguf: the engine chose type "${name}" for a ${role} tensor, which a GGUF file cannot hold`);
  return t;
}

/** general.file_type (llama_ftype) of a file exported as `target`. */
export function fileType(target: ExportType): number {
  // MOSTLY_F16 = 1, MOSTLY_Q8_0 = 7, MOSTLY_Q4_0 = 2, MOSTLY_Q4_K_S = 14 (every matrix Q4_K, no Q6_K bumps)
  return { f16: 1, q8_0: 7, q4_0: 2, q4_k: 14 }[target];
}

/** The engine's block quantizer; a clear error when the built addon predates it. */
export function quantAddon(): NativeAddon {
  const a = loadAddon();
  if (typeof a.quantizeTensor !== "function" || typeof a.dequantizeTensor !== "function" || typeof a.storageType !== "function") {
    throw new Error("this build of the engine has no quantizeTensor/dequantizeTensor/storageType: rebuild it (npm run build:native)");
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
    default: {
      const name = ENGINE_NAME[type];
      if (!name) throw new Error(`gguf: no encoder for ggml type ${type}`);
      return quantAddon().quantizeTensor(x, name);
    }
  }
}
