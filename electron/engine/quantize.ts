// Quantize a Hugging Face model folder into a new folder the engine loads (issue 5). The tensors are the native
// engine's job (native/quant/writer.h: tensor by tensor from the memory map, on a native thread, cancellable);
// this file owns the folder: checks (the source is validated as generate loads it: electron/engine/validate-model.ts),
// a temporary folder beside the destination, config.json with its
// quantization_config, copies of the tokenizer / template / generation files, and the rename once complete.
// Any failure or cancel removes the temporary folder: nothing partial is ever left under the destination name.
//
// On disk (documented for other tools):
//   *.safetensors  same names as the source; quantized tensors are U8 [..., rows, row_bytes] holding GGUF
//                  blocks row by row, marked "quant.<tensor name>": "q8_0"|"q4_0"|"q4_k" in __metadata__.
//   config.json    the source's, plus
//     "quantization_config": {
//       "quant_method": "moe-studio", "version": 1,
//       "format": "q4_k", "bits": 4,             // what the linear layers got
//       "embeddings": "q8_0",                    // embed_tokens / lm_head ("keep" = stored dtype)
//       "block_layout": "gguf",                  // byte-identical to GGUF's Q8_0 / Q4_0 / Q4_K blocks
//       "modules_not_quantized": [...],          // float by rule: routers, norms, biases, kept embeddings
//       "fallbacks": { "<tensor>": "q4_0" | "f32" | ... }   // rows not a multiple of the block
//     }
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { loadAddon, type NativeQuantizeReport, type QuantType } from "./addon.js";
import { readJsonFile } from "./model-folder.js";
import { validateModelFolder } from "./validate-model.js";

/** .NAME.partial-<pid>: the temporary folder a quantize fills beside NAME (renamed to NAME when complete). */
export function quantizeTempName(out: string, pid: number = process.pid): string {
  return `.${basename(out)}.partial-${pid}`;
}
/** Matches a base name made by quantizeTempName: [1] the destination's name, [2] the writer's pid. */
export const QUANTIZE_TEMP_RE = /^\.(.+)\.partial-(\d+)$/;

export const QUANT_TYPES: readonly QuantType[] = ["q8_0", "q4_0", "q4_k"];
/** The int4 format used when only --bits 4 is given: chosen by measured KL (native/README.md, "Quantization"). */
export const DEFAULT_INT4: QuantType = "q4_k";

export interface QuantizationConfig {
  quant_method: "moe-studio";
  version: 1;
  format: QuantType;
  bits: 8 | 4;
  embeddings: "keep" | QuantType;
  block_layout: "gguf";
  modules_not_quantized: string[];
  fallbacks: Record<string, string>;
}

export interface QuantizeFolderOptions {
  model: string;
  out: string;
  format: QuantType;
  embeddings?: "keep" | QuantType;   // default q8_0
  threads?: number;
  onProgress?: (doneBytes: number, totalBytes: number, tensor: string) => void;
  signal?: AbortSignal;
}

export interface QuantizeFolderResult {
  outDir: string;
  config: QuantizationConfig;
  bytesIn: number;
  bytesOut: number;               // safetensors bytes written
  params: number;
  tensors: Array<{ name: string; type: string }>;
  ms: number;
}

export class QuantizeCancelled extends Error {
  constructor() {
    super("quantization cancelled: nothing was written");
  }
}

export function bitsOf(format: QuantType): 8 | 4 {
  return format === "q8_0" ? 8 : 4;
}

/**
 * The source's config.json text with "quantization_config" appended as its last key. Text, not JSON.parse +
 * stringify: a round trip turns 0.0 into 0, and transformers 5's strict config classes then refuse the folder
 * (Mixtral's router_jitter_noise must be a float).
 */
export function withQuantizationConfig(text: string, file: string, qc: QuantizationConfig): string {
  const end = text.lastIndexOf("}");
  if (end < 0) throw new Error(`${file}: not a JSON object`);
  const body = text.slice(0, end).trimEnd();
  const sep = body.endsWith("{") ? "" : ",";
  const value = JSON.stringify(qc, null, 2).replace(/\n/g, "\n  ");
  return `${body}${sep}\n  "quantization_config": ${value}\n}\n`;
}

/** Files copied unchanged: everything but the weights and config.json (tokenizer, template, generation config...). */
function isCopied(name: string): boolean {
  return !name.endsWith(".safetensors") && name !== "model.safetensors.index.json" && name !== "config.json";
}

export async function quantizeModelFolder(o: QuantizeFolderOptions): Promise<QuantizeFolderResult> {
  const t0 = performance.now();
  const src = resolve(o.model), out = resolve(o.out);
  if (!QUANT_TYPES.includes(o.format)) throw new Error(`unsupported quantization format "${o.format}" (expected ${QUANT_TYPES.join(", ")})`);
  const embeddings = o.embeddings ?? "q8_0";
  if (embeddings !== "keep" && !QUANT_TYPES.includes(embeddings))
    throw new Error(`unsupported embeddings option "${embeddings}" (expected keep, ${QUANT_TYPES.join(", ")})`);
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new Error(`${src}: not a model folder (no such directory)`);
  const cfgPath = join(src, "config.json");
  const config = readJsonFile(cfgPath);
  const qc = config.quantization_config as Record<string, unknown> | undefined;
  if (qc !== undefined && qc !== null)
    throw new Error(`${cfgPath}: the model is already quantized (quantization_config.quant_method "${String(qc.quant_method ?? "?")}", ` +
      `format "${String(qc.format ?? qc.bits ?? "?")}"): quantize the original float model instead`);
  if (existsSync(out)) throw new Error(`${out} already exists: choose another --out or remove it first`);
  const parent = dirname(out);
  if (!existsSync(parent)) throw new Error(`${parent}: the destination's parent folder does not exist`);
  // Validated as generate would load it (engine binding + tokenizer) before the temporary folder exists: a refused
  // model leaves nothing on disk. The native writer binds it again before its first byte (native/quant/writer.h).
  await validateModelFolder(src);
  const tmp = join(parent, quantizeTempName(out));
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    if (o.signal?.aborted) throw new QuantizeCancelled();
    const job = loadAddon().quantizeModel(src, tmp, { format: o.format, embeddings, threads: o.threads ?? 0 }, o.onProgress);
    const onAbort = () => job.cancel();
    o.signal?.addEventListener("abort", onAbort);
    let rep: NativeQuantizeReport;
    try {
      rep = await job.promise;
    } catch (e) {
      if (o.signal?.aborted && /cancelled/.test((e as Error).message)) throw new QuantizeCancelled();
      throw e;
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
    }
    if (o.signal?.aborted) throw new QuantizeCancelled();
    for (const e of readdirSync(src, { withFileTypes: true }))
      if (e.isFile() && isCopied(e.name)) copyFileSync(join(src, e.name), join(tmp, e.name));
    const quantization_config: QuantizationConfig = {
      quant_method: "moe-studio",
      version: 1,
      format: o.format,
      bits: bitsOf(o.format),
      embeddings,
      block_layout: "gguf",
      modules_not_quantized: rep.notQuantized,
      fallbacks: Object.fromEntries(rep.fallbacks.map((f) => [f.name, f.type])),
    };
    writeFileSync(join(tmp, "config.json"), withQuantizationConfig(readFileSync(cfgPath, "utf8"), cfgPath, quantization_config));
    renameSync(tmp, out);
    return { outDir: out, config: quantization_config, bytesIn: rep.bytesIn, bytesOut: rep.bytesOut, params: rep.params,
      tensors: rep.tensors, ms: performance.now() - t0 };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
