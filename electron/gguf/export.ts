// exportGguf: a Hugging Face model folder -> one GGUF v3 file llama.cpp loads. Streams tensor by tensor (a few
// MiB of rows at a time) from the safetensors files, converts/permutes/quantizes, and appends to FILE.gguf.tmp-*,
// renamed to FILE.gguf only when complete: a failure or a cancel leaves no partial file and an existing FILE
// untouched. The source is validated first (engine binding, tokenizer, metadata against tensors): a refused
// export never creates a file.
import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { readModelFolder } from "../engine/model-folder.js";
import { validateModelFolder } from "../engine/validate-model.js";
import { checkPlanConsistency, planExport, permuteRows, type PlannedTensor } from "./arch.js";
import { GGMLType, GGML_BLOCK, GGML_TYPE_NAME, GGUFStreamWriter } from "./format.js";
import { QuantPool } from "./quant-pool.js";
import { encodeRows, engineQuantType, quantAddon, type ExportType, EXPORT_TYPES } from "./quant.js";
import { SafetensorsFolder } from "./safetensors.js";

export interface ExportProgress {
  done: number;          // bytes written
  total: number;         // bytes of the finished file
  tensor: string;        // GGUF name being written
  index: number;         // tensors finished
  count: number;
}

export interface ExportOptions {
  type: ExportType;
  /** Replace an existing destination (default: refuse). The old file stays until the new one is complete. */
  force?: boolean;
  onProgress?: (p: ExportProgress) => void;
  signal?: AbortSignal;
  /** Quantizer threads (default: every core). */
  threads?: number;
}

export interface ExportResult {
  path: string;
  arch: string;
  bytes: number;
  tensors: Array<{ name: string; type: string; ne: number[] }>;
  typeCounts: Record<string, number>;
  notes: string[];
  seconds: number;
}

export class ExportCancelled extends Error {
  constructor() {
    super("export cancelled");
  }
}

/** Elements per read: ~4M floats (16 MiB) keeps memory flat for any model size. */
const CHUNK_ELEMS = 1 << 22;

export async function exportGguf(modelDir: string, outPath: string, opts: ExportOptions): Promise<ExportResult> {
  const t0 = performance.now();
  if (!EXPORT_TYPES.includes(opts.type)) throw new Error(`unsupported type "${opts.type}" (supported: ${EXPORT_TYPES.join(", ")})`);
  const out = resolve(outPath);
  if (existsSync(out)) {
    if (statSync(out).isDirectory()) throw new Error(`${out}: is a folder; give the path of the .gguf file to write`);
    if (!opts.force) throw new Error(`${out}: already exists (pass --force to replace it)`);
  }
  if (!existsSync(dirname(out))) throw new Error(`${dirname(out)}: destination folder does not exist`);
  const folder = readModelFolder(modelDir);
  // A folder `moe-studio quantize` wrote: its blocks are copied as they are (the same bytes the engine runs), so
  // the export type must be the folder's format; quantizing blocks a second time would only lose accuracy.
  const qc = folder.config.quantization_config as { quant_method?: string; format?: string } | undefined;
  if (qc && qc.quant_method === "moe-studio" && qc.format !== opts.type) {
    throw new Error(`${resolve(modelDir, "config.json")}: this folder is already quantized as ${qc.format}; export it with --type ${qc.format} (its blocks are copied, not quantized twice)`);
  }
  if (qc && qc.quant_method !== "moe-studio") throw new Error(`${resolve(modelDir, "config.json")}: quantization_config.quant_method ${JSON.stringify(qc.quant_method)} cannot be exported (only float checkpoints and moe-studio quantize folders)`);
  const st = new SafetensorsFolder(modelDir);
  let writer: GGUFStreamWriter | null = null;
  let pool: QuantPool | null = null;
  try {
    const plan = planExport(modelDir, folder.config, st, opts.type);
    // Before a byte is written: the folder must be one generate could load (the engine binds every weight against
    // config.json and the tokenizer parses), and the metadata llama.cpp sizes its graph with must agree with the
    // tensors and with what the engine read.
    const engine = await validateModelFolder(modelDir);
    checkPlanConsistency(plan, resolve(modelDir, "config.json"), engine);
    const notes = [...plan.notes];
    // Fallbacks (the engine's rule, native/quant/plan.h, the one `moe-studio quantize` uses): say which tensors did
    // not get the requested block type.
    const wanted: Record<ExportType, GGMLType> = { f16: GGMLType.F16, q8_0: GGMLType.Q8_0, q4_0: GGMLType.Q4_0, q4_k: GGMLType.Q4_K };
    const fell = plan.tensors.filter((t) => t.role === "weight" && t.type !== wanted[opts.type]);
    if (fell.length > 0) {
      const byType = new Map<string, number>();
      for (const t of fell) byType.set(GGML_TYPE_NAME[t.type], (byType.get(GGML_TYPE_NAME[t.type]) ?? 0) + 1);
      notes.push(
        `${fell.length} weight tensor(s) have a row length that is not a multiple of ${GGML_BLOCK[wanted[opts.type]][0]} and fall back as in a quantized model folder (native/quant/plan.h): ` +
          [...byType].map(([k, v]) => `${v} to ${k}`).join(", ") + ` (e.g. ${fell[0].name}, row length ${fell[0].ne[0]})`,
      );
    }
    if (plan.tensors.some((t) => engineQuantType(t.type))) {
      quantAddon();
      pool = new QuantPool(opts.threads);
    }

    writer = new GGUFStreamWriter(out, plan.kvs, plan.tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.type })));
    const total = writer.totalBytes;
    for (let i = 0; i < plan.tensors.length; i++) {
      const t = plan.tensors[i];
      if (opts.signal?.aborted) throw new ExportCancelled();
      opts.onProgress?.({ done: writer.bytesWritten, total, tensor: t.name, index: i, count: plan.tensors.length });
      await writeTensor(writer, st, t, pool);
      // let cancel requests and progress listeners run between tensors
      await new Promise((r) => setImmediate(r));
    }
    writer.finish();
    opts.onProgress?.({ done: total, total, tensor: "", index: plan.tensors.length, count: plan.tensors.length });
    const typeCounts: Record<string, number> = {};
    for (const t of plan.tensors) typeCounts[GGML_TYPE_NAME[t.type]] = (typeCounts[GGML_TYPE_NAME[t.type]] ?? 0) + 1;
    return {
      path: out,
      arch: plan.arch,
      bytes: total,
      tensors: plan.tensors.map((t) => ({ name: t.name, type: GGML_TYPE_NAME[t.type], ne: t.ne })),
      typeCounts,
      notes,
      seconds: (performance.now() - t0) / 1000,
    };
  } catch (e) {
    writer?.abort();
    if (e instanceof ExportCancelled) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOSPC") throw new Error(`${out}: disk full while writing (${err.message}); nothing was written`);
    if (err.code && writer) throw new Error(`${out}: write failed (${err.message}); nothing was written`);
    throw e;
  } finally {
    st.close();
    await pool?.close();
  }
}

/**
 * One tensor: each source (expert) in turn, a chunk of whole rows (whole heads when permuting) at a time; the
 * engine's block types are quantized on all cores (QuantPool), the rest converted here.
 */
async function writeTensor(w: GGUFStreamWriter, st: SafetensorsFolder, t: PlannedTensor, pool: QuantPool | null) {
  if (t.data) {
    w.append(encodeRows(t.data, t.type));
    return;
  }
  for (const s of t.sources) {
    if (s.quant) {
      // stored GGUF blocks: copy whole rows of bytes (permuted per head like the float rows would be)
      const rows = s.shape.slice(0, -1).reduce((a, b) => a * b, 1);
      const rb = s.rowBytes!;
      const rowsPerHead = t.permuteHeads ? rows / t.permuteHeads : 1;
      let step = Math.max(1, Math.floor((CHUNK_ELEMS * 4) / rb));
      step = Math.max(rowsPerHead, step - (step % rowsPerHead));
      for (let r0 = 0; r0 < rows; r0 += step) {
        const n = Math.min(step, rows - r0);
        const raw = st.readRaw(s, r0 * rb, n * rb);
        let b = new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
        if (t.permuteHeads) b = permuteRows(b, n, rb, rowsPerHead);
        w.append(b);
      }
      continue;
    }
    const rows = s.shape.length >= 2 ? s.shape[0] : 1;
    const cols = s.shape.length >= 2 ? s.shape.slice(1).reduce((a, b) => a * b, 1) : s.shape[0];
    // 1-D tensors that are permuted (llama q/k biases) are rows of one element
    const [r, c] = t.permuteHeads && s.shape.length === 1 ? [s.shape[0], 1] : [rows, cols];
    const rowsPerHead = t.permuteHeads ? r / t.permuteHeads : 1;
    let step = Math.max(1, Math.floor(CHUNK_ELEMS / c));
    step = Math.max(rowsPerHead, step - (step % rowsPerHead));
    for (let r0 = 0; r0 < r; r0 += step) {
      const n = Math.min(step, r - r0);
      let x = st.readF32(s, r0 * c, n * c);
      if (t.permuteHeads) x = permuteRows(x, n, c, rowsPerHead);
      const q = engineQuantType(t.type);
      w.append(q && pool ? await pool.quantize(x, n, c, q) : encodeRows(x, t.type));
    }
  }
}

