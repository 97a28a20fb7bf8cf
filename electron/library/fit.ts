// Will a model fit this machine? A pure function of the model's config.json, a context length and the machine's
// memory, so the Discover list can answer before anything is downloaded.
//
//   weights(p)  = paramsTotal · bytes per weight(p)
//                 bf16: 2      int8: 34/32 (32 int8 values + one f16 scale per block of 32, q8_0)
//                 int4: 144/256 (q4_k: a 256-weight super-block is 128 bytes of nibbles + 12 bytes of 6-bit
//                 scales/mins + two f16 super-scales = 144 bytes)
//   kv(ctx)     = kvBytesPerToken · ctx            (params.ts: GQA kv heads, CLA slots, the engine's f32 cache)
//   need(p)     = weights(p) + kv(ctx)
// Every weight is counted at the chosen precision (embeddings and norms included): a slight over-estimate for
// int8/int4, where a quantizer may keep the small tensors wider, which is the safe side for "does it fit".
//
// Verdict per precision, GPU first (the engine uses one GPU when present, else the CPU and RAM):
//   fits    need ≤ 90 % of VRAM (room for the driver and activations), or need ≤ 80 % of RAM and ≤ free RAM
//   tight   need ≤ VRAM, or need ≤ 95 % of RAM: it loads, but other programs must make room (or it swaps)
//   no      otherwise
import { configShape, type ConfigShape } from "./params.js";

export type Precision = "bf16" | "int8" | "int4";
export const PRECISIONS: readonly Precision[] = ["bf16", "int8", "int4"];

/** Bytes per weight: numerator / denominator, exact (see the block layouts above). */
export const BYTES_PER_WEIGHT: Record<Precision, [number, number]> = { bf16: [2, 1], int8: [34, 32], int4: [144, 256] };

export interface MachineMemory {
  totalRamBytes: number;
  freeRamBytes: number;
  /** Device 0's memory; 0 when there is no usable CUDA device. */
  vramBytes: number;
}

export type Verdict = "fits" | "tight" | "no";

export interface PrecisionFit {
  precision: Precision;
  weightBytes: number;
  kvBytes: number;
  totalBytes: number;
  verdict: Verdict;
  /** Where it would run: "gpu" when it fits (or is tight) in VRAM, else "cpu". */
  device: "gpu" | "cpu";
}

export interface FitEstimate {
  paramsTotal: number;
  paramsActive: number;
  contextLength: number;
  kvBytesPerToken: number;
  fits: PrecisionFit[];
}

export function weightBytes(params: number, p: Precision): number {
  const [num, den] = BYTES_PER_WEIGHT[p];
  return Math.ceil((params * num) / den);
}

export function verdict(need: number, m: MachineMemory): { verdict: Verdict; device: "gpu" | "cpu" } {
  if (m.vramBytes > 0 && need <= 0.9 * m.vramBytes) return { verdict: "fits", device: "gpu" };
  if (need <= 0.8 * m.totalRamBytes && need <= m.freeRamBytes) return { verdict: "fits", device: "cpu" };
  if (m.vramBytes > 0 && need <= m.vramBytes) return { verdict: "tight", device: "gpu" };
  if (need <= 0.95 * m.totalRamBytes) return { verdict: "tight", device: "cpu" };
  return { verdict: "no", device: "cpu" };
}

/** The estimate from an already computed shape (the catalogue keeps shapes; a live config goes through configShape). */
export function fitFromShape(shape: Pick<ConfigShape, "paramsTotal" | "paramsActive" | "kvBytesPerToken" | "contextLength">, contextLength: number, m: MachineMemory): FitEstimate {
  const ctx = Math.max(1, Math.min(contextLength, shape.contextLength));
  const kvBytes = shape.kvBytesPerToken * ctx;
  return {
    paramsTotal: shape.paramsTotal,
    paramsActive: shape.paramsActive,
    contextLength: ctx,
    kvBytesPerToken: shape.kvBytesPerToken,
    fits: PRECISIONS.map((precision) => {
      const w = weightBytes(shape.paramsTotal, precision);
      const need = w + kvBytes;
      return { precision, weightBytes: w, kvBytes, totalBytes: need, ...verdict(need, m) };
    }),
  };
}

/** fitEstimate(JSON.parse(config.json), 4096, machine): the context is capped at the model's own maximum. */
export function fitEstimate(config: Record<string, unknown>, contextLength: number, m: MachineMemory, where = "config.json"): FitEstimate {
  return fitFromShape(configShape(config, where), contextLength, m);
}
