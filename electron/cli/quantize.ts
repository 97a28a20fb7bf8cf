// `moe-studio quantize --model DIR --bits 8|4 [--format q8_0|q4_0|q4_k] [--embeddings keep|q8_0|q4_0|q4_k] --out DIR2
//  [--threads N]`: writes a quantized model folder (electron/engine/quantize.ts), printing progress on stderr,
// then sizes, time and peak RSS. Ctrl-C (SIGINT) or SIGTERM cancels: the temporary folder is removed, nothing is
// left under DIR2, exit code 130.
import { dirname, resolve } from "node:path";
import { loadAddon, type QuantType } from "../engine/addon.js";
import { sweepLeftovers } from "../services/leftovers.js";
import { DEFAULT_INT4, QUANT_TYPES, bitsOf, QuantizeCancelled, quantizeModelFolder } from "../engine/quantize.js";
import { runCancellable } from "./cancel.js";

type Flags = Record<string, string | true>;

function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === "string" ? v : undefined;
}

const MiB = 1024 * 1024;

export async function cmdQuantize(flags: Flags): Promise<number> {
  const model = str(flags, "model"), out = str(flags, "out");
  if (!model) throw new Error("--model is required");
  if (!out) throw new Error("--out is required");
  // an earlier quantize into the same folder that was killed left its .NAME.partial-<pid>/ there
  // (only those: --out may name a folder of the user's, where other programs' temporary files are not ours to judge)
  sweepLeftovers([dirname(resolve(out))], { match: (l) => l.kind === "quantize-temp" });
  const bitsFlag = str(flags, "bits");
  const formatFlag = str(flags, "format");
  if (formatFlag !== undefined && !QUANT_TYPES.includes(formatFlag as QuantType))
    throw new Error(`--format: unsupported format "${formatFlag}" (expected ${QUANT_TYPES.join(", ")})`);
  if (bitsFlag === undefined && formatFlag === undefined) throw new Error("--bits 8|4 (or --format) is required");
  if (bitsFlag !== undefined && bitsFlag !== "8" && bitsFlag !== "4") throw new Error(`--bits must be 8 or 4, got "${bitsFlag}"`);
  const format: QuantType = (formatFlag as QuantType | undefined) ?? (bitsFlag === "8" ? "q8_0" : DEFAULT_INT4);
  if (bitsFlag !== undefined && bitsOf(format) !== Number(bitsFlag))
    throw new Error(`--format ${format} is ${bitsOf(format)}-bit but --bits is ${bitsFlag}`);
  const emb = str(flags, "embeddings") ?? "q8_0";
  if (emb !== "keep" && !QUANT_TYPES.includes(emb as QuantType))
    throw new Error(`--embeddings must be keep, ${QUANT_TYPES.join(", ")}, got "${emb}"`);
  const threadsFlag = str(flags, "threads");
  const threads = threadsFlag === undefined ? 0 : Number(threadsFlag);
  // the engine's limit (native/format/limits.h): checked here so the message names the flag
  if (!Number.isInteger(threads) || threads < 0 || threads > 1024) throw new Error(`--threads must be an integer in [1, 1024], got "${threadsFlag}"`);

  let lastPct = -1;
  return runCancellable(async (signal) => {
    const r = await quantizeModelFolder({
      model, out, format, embeddings: emb as "keep" | QuantType, threads, signal,
      onProgress: (done, total, tensor) => {
        const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
        if (pct !== lastPct) {
          lastPct = pct;
          process.stderr.write(`quantize: ${String(pct).padStart(3)}%  ${tensor}\n`);
        }
      },
    });
    const peak = Math.max(loadAddon().systemInfo().peakRssBytes, process.resourceUsage().maxRSS * 1024);
    const fb = Object.keys(r.config.fallbacks).length;
    process.stdout.write(
      `quantized ${model} -> ${r.outDir}\n` +
        `format: ${r.config.format} (${r.config.bits}-bit), embeddings: ${r.config.embeddings}, ` +
        `${r.tensors.length} tensors (${r.config.modules_not_quantized.length} kept in float by rule, ${fb} fallbacks)\n` +
        `size: ${(r.bytesIn / MiB).toFixed(1)} MiB -> ${(r.bytesOut / MiB).toFixed(1)} MiB (${((100 * r.bytesOut) / Math.max(1, r.bytesIn)).toFixed(1)}%)\n` +
        `time: ${(r.ms / 1000).toFixed(1)} s, peak RSS: ${(peak / MiB).toFixed(1)} MiB\n`,
    );
    if (fb) process.stdout.write(`fallbacks (row length not a multiple of the block): ${Object.entries(r.config.fallbacks).map(([n, t]) => `${n}=${t}`).join(", ")}\n`);
    return 0;
  }, (e): e is Error => e instanceof QuantizeCancelled);
}
