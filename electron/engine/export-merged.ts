// Export merged weights (issue 12): a model folder + a peft LoRA adapter -> a Hugging Face model folder with the
// adapter folded in (W + s·B·A, in the base's original precision widened to f32, rounded once to the output dtype),
// optionally quantized (electron/engine/quantize.ts) or exported to GGUF (electron/gguf/export.ts) from there.
// The tensors are the native engine's job (native/io/merge.h: tensor by tensor from the memory map, on a native
// thread, cancellable; routed experts always in the hub's per-expert layout); this file owns the folder:
//   - checks before anything exists on disk: the source as generate loads it, and the adapter as `--adapter` loads
//     it (every tensor shape-checked against the model), an existing destination refused unless force;
//   - a temporary folder beside the destination (.NAME.partial-<pid>, the quantizer's pattern, so the leftovers
//     sweep knows it), config.json with its dtype (torch_dtype or dtype, in the file's own dialect), copies of the
//     tokenizer / chat template / generation config and every other non-weight file of the source;
//   - the rename once complete; with force an existing destination is replaced only after the new one is whole.
// Any failure or cancel removes every temporary folder: nothing partial is ever left under the destination name.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { loadAddon, type MergeDType, type NativeMergeReport, type QuantType } from "./addon.js";
import { readJsonFile } from "./model-folder.js";
import { QUANT_TYPES, QuantizeCancelled, quantizeModelFolder, quantizeTempName, type QuantizeFolderResult } from "./quantize.js";
import { validateModelFolder } from "./validate-model.js";
import { exportGguf, ExportCancelled, type ExportResult } from "../gguf/export.js";
import { EXPORT_TYPES, type ExportType } from "../gguf/quant.js";

export const MERGE_DTYPES: readonly MergeDType[] = ["f32", "f16", "bf16"];
const TORCH_DTYPE: Record<MergeDType, string> = { f32: "float32", f16: "float16", bf16: "bfloat16" };

/** "fp32" / "float32" / "f32" ... -> the dtype, or undefined. */
export function parseMergeDType(s: string): MergeDType | undefined {
  const m: Record<string, MergeDType> = {
    f32: "f32", fp32: "f32", float32: "f32", f16: "f16", fp16: "f16", float16: "f16", half: "f16", bf16: "bf16", bfloat16: "bf16",
  };
  return m[s.toLowerCase()];
}

/** save_pretrained's max_shard_size: an integer of bytes or "5GB", "500MB", "2GiB" ... (GB = 10^9, GiB = 2^30). */
export function parseShardSize(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(|b|kb|mb|gb|tb|kib|mib|gib|tib)$/i.exec(s.trim());
  if (!m) return undefined;
  const mult: Record<string, number> = { "": 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };
  const v = Math.floor(Number(m[1]) * mult[m[2].toLowerCase()]);
  return Number.isSafeInteger(v) && v >= 1 ? v : undefined;
}

export interface ExportMergedOptions {
  model: string;
  adapter: string;
  /** The folder to write; with gguf, the .gguf file. */
  out: string;
  dtype: MergeDType;
  /** Then quantize the merged folder into `out` (the quantizer's folder format). */
  quantize?: QuantType;
  /** Then export the merged folder to the GGUF file `out`. */
  gguf?: ExportType;
  /** Replace an existing destination (only once the new one is complete). */
  force?: boolean;
  /** Largest shard in bytes (default 5 GB, as save_pretrained). */
  maxShardBytes?: number;
  threads?: number;
  onProgress?: (stage: "merge" | "quantize" | "gguf", done: number, total: number, tensor: string) => void;
  signal?: AbortSignal;
}

export interface ExportMergedResult {
  outDir: string;            // the folder (or .gguf file) written
  merge: NativeMergeReport;
  quantize?: QuantizeFolderResult;
  gguf?: ExportResult;
  ms: number;
}

export class ExportMergedCancelled extends Error {
  constructor() {
    super("export cancelled: nothing was written");
  }
}

/**
 * Files copied unchanged: everything but config.json and weights — the safetensors we replace, and any other format's
 * copy of the unmerged weights (pytorch_model*.bin, *.pth, *.gguf ... and their *.index.json), which a loader that
 * prefers them (or a converter globbing the folder) would read instead of the merged ones.
 */
export function isCopiedFile(name: string): boolean {
  if (name === "config.json") return false;
  if (/\.(safetensors|bin|pt|pth|ckpt|h5|msgpack|gguf|onnx|npz)$/i.test(name)) return false;
  if (/\.index\.json$/i.test(name)) return false;
  return true;
}

/**
 * config.json's text with its dtype set in the file's own dialect (transformers 5: "dtype"; classic: "torch_dtype";
 * both when both are there; neither: by the dialect, rope_parameters meaning transformers 5). Only that value's
 * characters change: a re-serialised JSON.stringify would turn 0.0 into 0, which transformers' strict config
 * classes refuse (router_jitter_noise "expected float, got int").
 */
export function withDType(text: string, dtype: MergeDType): string {
  const config = JSON.parse(text) as Record<string, unknown>;
  const v = JSON.stringify(TORCH_DTYPE[dtype]);
  const keys = ["dtype", "torch_dtype"].filter((k) => k in config);
  if (keys.length === 0) {
    const k = "rope_parameters" in config ? "dtype" : "torch_dtype";
    const end = text.lastIndexOf("}");
    const body = text.slice(0, end).trimEnd();
    const empty = body.endsWith("{");
    return `${body}${empty ? "" : ","}\n  ${JSON.stringify(k)}: ${v}\n${text.slice(end)}`;
  }
  // the top-level members' value spans, by a scan that skips strings and tracks nesting
  let out = text;
  for (const key of keys) {
    let depth = 0, i = 0, found = -1, vend = -1;
    while (i < out.length && found < 0) {
      const c = out[i];
      if (c === '"') {
        let j = i + 1;
        while (out[j] !== '"') j += out[j] === "\\" ? 2 : 1;
        const str = JSON.parse(out.slice(i, j + 1)) as string;
        let k = j + 1;
        while (/\s/.test(out[k])) k++;
        if (depth === 1 && out[k] === ":" && str === key) {
          k++;
          while (/\s/.test(out[k])) k++;
          found = k;
          // the value: a string, null, or another scalar
          if (out[k] === '"') { let m = k + 1; while (out[m] !== '"') m += out[m] === "\\" ? 2 : 1; vend = m + 1; }
          else { let m = k; while (m < out.length && !/[,}\s]/.test(out[m])) m++; vend = m; }
          break;
        }
        i = j + 1;
        continue;
      }
      if (c === "{" || c === "[") depth++;
      else if (c === "}" || c === "]") depth--;
      i++;
    }
    if (found < 0) throw new Error(`config.json: cannot locate "${key}"`);
    out = out.slice(0, found) + v + out.slice(vend);
  }
  JSON.parse(out);
  return out;
}

/** Moves the complete folder `tmp` to `out`; an existing `out` (force) is moved aside first and removed after. */
function install(tmp: string, out: string, force: boolean) {
  if (!existsSync(out)) {
    renameSync(tmp, out);
    return;
  }
  if (!force) throw new Error(`${out} already exists (pass --force to replace it)`);
  const old = join(dirname(out), quantizeTempName(`${basename(out)}.replaced`));
  rmSync(old, { recursive: true, force: true });
  renameSync(out, old);
  try {
    renameSync(tmp, out);
  } catch (e) {
    renameSync(old, out);
    throw e;
  }
  rmSync(old, { recursive: true, force: true });
}

export async function exportMergedModel(o: ExportMergedOptions): Promise<ExportMergedResult> {
  const t0 = performance.now();
  const src = resolve(o.model), adapter = resolve(o.adapter), out = resolve(o.out);
  if (!MERGE_DTYPES.includes(o.dtype)) throw new Error(`unsupported dtype "${o.dtype}" (expected bf16, fp16 or fp32)`);
  if (o.quantize !== undefined && o.gguf !== undefined) throw new Error("--quantize and --gguf are exclusive: the merged weights go to one of them");
  if (o.quantize !== undefined && !QUANT_TYPES.includes(o.quantize))
    throw new Error(`--quantize: unsupported format "${o.quantize}" (expected ${QUANT_TYPES.join(", ")})`);
  if (o.gguf !== undefined && !EXPORT_TYPES.includes(o.gguf))
    throw new Error(`--gguf: unsupported type "${o.gguf}" (supported: ${EXPORT_TYPES.join(", ")})`);
  if (o.maxShardBytes !== undefined && !(Number.isSafeInteger(o.maxShardBytes) && o.maxShardBytes >= 1))
    throw new Error(`the shard size must be a positive integer of bytes, got ${o.maxShardBytes}`);
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new Error(`${src}: not a model folder (no such directory)`);
  if (!existsSync(adapter) || !statSync(adapter).isDirectory())
    throw new Error(`${adapter}: not an adapter folder (no such directory; a peft adapter is a folder with adapter_config.json and adapter_model.safetensors)`);
  const cfgPath = join(src, "config.json");
  const config = readJsonFile(cfgPath);
  const configText = readFileSync(cfgPath, "utf8");
  const qc = config.quantization_config as Record<string, unknown> | undefined;
  if (qc !== undefined && qc !== null)
    throw new Error(`${cfgPath}: the model is quantized (quantization_config.quant_method "${String(qc.quant_method ?? "?")}"): ` +
      "merge the adapter into the original float model instead");
  if (existsSync(out)) {
    if (o.gguf !== undefined && statSync(out).isDirectory()) throw new Error(`${out}: is a folder; with --gguf give the path of the .gguf file to write`);
    if (!o.force) throw new Error(`${out} already exists: choose another --out or pass --force to replace it`);
  }
  const parent = dirname(out);
  if (!existsSync(parent)) throw new Error(`${parent}: the destination's parent folder does not exist`);
  if (resolve(src) === out || resolve(adapter) === out) throw new Error(`${out}: the destination is the source folder`);
  // Before the temporary folder exists: the source as generate loads it, then the adapter as --adapter loads it.
  await validateModelFolder(src);
  const check = await loadAddon().loadModel(src, { threads: 1, adapter });
  check.close();

  const direct = o.quantize === undefined && o.gguf === undefined;
  const tmp = join(parent, quantizeTempName(direct ? basename(out) : `${basename(out)}.merged`));
  const stage = join(parent, quantizeTempName(`${basename(out)}.quantized`));
  const cleanup = () => {
    rmSync(tmp, { recursive: true, force: true });
    rmSync(stage, { recursive: true, force: true });
  };
  cleanup();
  mkdirSync(tmp);
  try {
    if (o.signal?.aborted) throw new ExportMergedCancelled();
    const job = loadAddon().mergeAdapter(src, adapter, tmp, { dtype: o.dtype, maxShardBytes: o.maxShardBytes, threads: o.threads ?? 0 },
      (d, t, n) => o.onProgress?.("merge", d, t, n));
    const onAbort = () => job.cancel();
    o.signal?.addEventListener("abort", onAbort);
    let merge: NativeMergeReport;
    try {
      merge = await job.promise;
    } catch (e) {
      if (o.signal?.aborted && /cancelled/.test((e as Error).message)) throw new ExportMergedCancelled();
      throw e;
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
    }
    if (o.signal?.aborted) throw new ExportMergedCancelled();
    for (const e of readdirSync(src, { withFileTypes: true }))
      if (e.isFile() && isCopiedFile(e.name)) copyFileSync(join(src, e.name), join(tmp, e.name));
    writeFileSync(join(tmp, "config.json"), withDType(configText, o.dtype));
    const res: ExportMergedResult = { outDir: out, merge, ms: 0 };
    if (direct) {
      install(tmp, out, o.force === true);
    } else if (o.quantize !== undefined) {
      try {
        res.quantize = await quantizeModelFolder({
          model: tmp, out: stage, format: o.quantize, threads: o.threads, signal: o.signal,
          onProgress: (d, t, n) => o.onProgress?.("quantize", d, t, n),
        });
      } catch (e) {
        if (e instanceof QuantizeCancelled) throw new ExportMergedCancelled();
        throw e;
      }
      if (o.signal?.aborted) throw new ExportMergedCancelled();
      install(stage, out, o.force === true);
      res.quantize.outDir = out;
      rmSync(tmp, { recursive: true, force: true });
    } else {
      try {
        res.gguf = await exportGguf(tmp, out, {
          type: o.gguf!, force: o.force === true, signal: o.signal, threads: o.threads,
          onProgress: (p) => o.onProgress?.("gguf", p.done, p.total, p.tensor),
        });
      } catch (e) {
        if (e instanceof ExportCancelled) throw new ExportMergedCancelled();
        throw e;
      }
      rmSync(tmp, { recursive: true, force: true });
    }
    res.ms = performance.now() - t0;
    return res;
  } catch (e) {
    cleanup();
    throw e;
  }
}
