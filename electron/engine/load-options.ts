// How a model is loaded, as one typed object that travels unchanged from whoever chooses (CLI flags, the deploy
// config, the app's settings) through the app services, the engine host and the worker protocol to the addon. Adding a
// load option is a field here, where it is chosen, and where the addon applies it — not an edit in every layer between.
import type { DeviceKind, KvCacheType } from "./addon.js";

export const KV_CACHE_TYPES: readonly KvCacheType[] = ["f32", "f16", "int8"];

/**
 * The KV cache the app, `serve` and the chat-like CLI commands use unless told otherwise: f16, as llama.cpp keeps it.
 * Half the memory of f32 and 1.3-1.6x the decode speed at 4k-16k tokens of context, for a KL divergence from the f32
 * cache of 1.5e-8 .. 1.2e-7 with the same top-1 token on every fixture (test/native/quant-accuracy.test.ts). The
 * engine API's own default stays f32: the parity tests compare its logits with transformers at tolerances of 1e-4 and below.
 */
export const APP_KV_CACHE: KvCacheType = "f16";

/** How the engine runs whatever it loads: chosen once per process (flags, deploy config, settings). */
export interface EngineOptions {
  /** Compute threads (default: the engine's choice, one per core). */
  threads?: number;
  /** KV cache storage: "f32" (the engine's default), "f16" (IEEE half: 1/2 of the memory) or "int8" (absmax per head and token: ~1/4). */
  kvCache?: KvCacheType;
  /** The backend: "cpu" (default), "emu" (the CUDA kernels under the SIMT emulator: slow, for tests), "auto", "cuda". */
  device?: DeviceKind;
}

/** One load: the engine options and what belongs to this model. Plain data: it crosses the worker protocol as is. */
export interface ModelLoadOptions extends EngineOptions {
  /** A PEFT LoRA adapter folder applied unmerged by every forward of this model. */
  adapter?: string;
  /** "nf4": the frozen base quantized to NF4 at load (Q-LoRA), as bitsandbytes quantizes an nn.Linear weight. */
  baseQuant?: "none" | "nf4";
}

/** `o` without its undefined fields, so that `{ ...defaults, ...given(o) }` keeps the defaults `o` leaves open. */
export function given<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** A `--kv-cache` value checked (undefined stays undefined). */
export function parseKvCache(value: string | undefined): KvCacheType | undefined {
  if (value === undefined) return undefined;
  if (!(KV_CACHE_TYPES as readonly string[]).includes(value)) throw new Error(`--kv-cache must be ${KV_CACHE_TYPES.join(", ").replace(/, ([^,]*)$/, " or $1")}, got "${value}"`);
  return value as KvCacheType;
}
