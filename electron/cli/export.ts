// `moe-studio export --model DIR --adapter DIR --out DIR2 --dtype bf16|fp16|fp32 [--quantize q8_0|q4_0|q4_k]
//  [--gguf f16|q8_0|q4_0|q4_k] [--shard-size 5GB] [--force] [--json]`: the adapter folded into the base weights
// (electron/engine/export-merged.ts), written as a Hugging Face folder (or, with --quantize, the quantizer's folder
// of the merged weights; with --gguf, --out is the FILE.gguf of the merged weights). Progress on stderr, the summary
// on stdout (--json: one JSON object). Ctrl-C (SIGINT) or SIGTERM cancels: nothing is left under --out, exit 130.
import { dirname, resolve } from "node:path";
import { type QuantType } from "../engine/addon.js";
import { QUANT_TYPES } from "../engine/quantize.js";
import { EXPORT_TYPES, type ExportType } from "../gguf/quant.js";
import { sweepLeftovers } from "../services/leftovers.js";
import { ExportMergedCancelled, exportMergedModel, parseMergeDType, parseShardSize } from "../engine/export-merged.js";
import { runCancellable } from "./cancel.js";
import { str, type Flags } from "./flags.js";


const MiB = 1024 * 1024;

export async function cmdExport(flags: Flags): Promise<number> {
  const model = str(flags, "model"), adapter = str(flags, "adapter"), out = str(flags, "out");
  if (!model) throw new Error("--model is required (the base model folder)");
  if (!adapter) throw new Error("--adapter is required (the peft LoRA adapter folder)");
  if (!out) throw new Error("--out is required (the folder to write; with --gguf the .gguf file)");
  const dtFlag = str(flags, "dtype");
  if (!dtFlag) throw new Error("--dtype bf16|fp16|fp32 is required");
  const dtype = parseMergeDType(dtFlag);
  if (!dtype) throw new Error(`--dtype must be bf16, fp16 or fp32, got "${dtFlag}"`);
  const q = str(flags, "quantize"), g = str(flags, "gguf");
  if (q !== undefined && !QUANT_TYPES.includes(q as QuantType)) throw new Error(`--quantize: unsupported format "${q}" (expected ${QUANT_TYPES.join(", ")})`);
  if (g !== undefined && !EXPORT_TYPES.includes(g as ExportType)) throw new Error(`--gguf: unsupported type "${g}" (supported: ${EXPORT_TYPES.join(", ")})`);
  if (q !== undefined && g !== undefined) throw new Error("--quantize and --gguf are exclusive");
  const ss = str(flags, "shard-size");
  const maxShardBytes = ss === undefined ? undefined : parseShardSize(ss);
  if (ss !== undefined && maxShardBytes === undefined) throw new Error(`--shard-size must be bytes or a size like 5GB / 500MB, got "${ss}"`);
  const threadsFlag = str(flags, "threads");
  const threads = threadsFlag === undefined ? 0 : Number(threadsFlag);
  if (!Number.isInteger(threads) || threads < 0 || threads > 1024) throw new Error(`--threads must be an integer in [1, 1024], got "${threadsFlag}"`);
  // an earlier export into the same folder that was killed left its .NAME.partial-<pid>/ (or FILE.tmp-*) there
  sweepLeftovers([dirname(resolve(out))], { match: (l) => l.kind === "quantize-temp" || l.kind === "gguf-temp" });

  let last = "";
  return runCancellable(async (signal) => {
    const r = await exportMergedModel({
      model, adapter, out, dtype, quantize: q as QuantType | undefined, gguf: g as ExportType | undefined,
      force: flags.force === true, maxShardBytes, threads, signal,
      onProgress: (stage, done, total, tensor) => {
        const pct = total > 0 ? Math.floor((10 * done) / total) * 10 : 100;
        const key = `${stage}${pct}`;
        if (flags.json === true) process.stderr.write(`progress ${stage} ${done} ${total}\n`);
        else if (key !== last) process.stderr.write(`export: ${stage} ${String(pct).padStart(3)}%  ${tensor}\n`);
        last = key;
      },
    });
    const merged = r.merge.tensors.filter((t) => t.merged).length;
    if (flags.json === true) {
      process.stdout.write(JSON.stringify({
        out: r.outDir, dtype, files: r.merge.files, tensors: r.merge.tensors.length, mergedTensors: merged,
        mergedPairs: r.merge.mergedPairs, bytesOut: r.merge.bytesOut, quantize: r.quantize?.config, gguf: r.gguf ? { path: r.gguf.path, bytes: r.gguf.bytes } : undefined,
        seconds: r.ms / 1000,
      }) + "\n");
    } else {
      process.stdout.write(
        `merged ${adapter} into ${model} -> ${r.outDir}\n` +
          `dtype: ${dtype}, ${r.merge.tensors.length} tensors (${merged} with the adapter folded in, ${r.merge.mergedPairs} pairs), ` +
          `${r.merge.files.length} file(s), ${(r.merge.bytesOut / MiB).toFixed(1)} MiB of weights\n` +
          (r.quantize ? `quantized: ${r.quantize.config.format}, ${(r.quantize.bytesOut / MiB).toFixed(1)} MiB\n` : "") +
          (r.gguf ? `gguf: ${r.gguf.arch}, ${r.gguf.tensors.length} tensors, ${(r.gguf.bytes / MiB).toFixed(2)} MiB\n` : "") +
          `time: ${(r.ms / 1000).toFixed(1)} s\n`,
      );
    }
    return 0;
  }, (e): e is Error => e instanceof ExportMergedCancelled);
}
