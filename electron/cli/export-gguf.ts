// `moe-studio export-gguf --model DIR --type f16|q8_0|q4_0|q4_k --out FILE.gguf [--force] [--json]`
// Progress goes to stderr (one line per 10%; with --json "progress DONE TOTAL" per tensor), the summary to stdout; Ctrl-C cancels and leaves nothing behind.
import { dirname, resolve } from "node:path";
import { exportGguf, ExportCancelled } from "../gguf/export.js";
import { sweepLeftovers } from "../services/leftovers.js";
import { EXPORT_TYPES, type ExportType } from "../gguf/quant.js";

type Flags = Record<string, string | true>;

export async function exportGgufCommand(flags: Flags): Promise<number> {
  const model = flags.model;
  const out = flags.out;
  const type = flags.type;
  if (typeof model !== "string") throw new Error("--model is required");
  if (typeof out !== "string") throw new Error("--out is required (the .gguf file to write)");
  // an earlier export into the same folder that was killed left its FILE.tmp-<pid>-<ms> there
  // (only those: --out may name a folder of the user's, where other programs' temporary files are not ours to judge)
  sweepLeftovers([dirname(resolve(out))], { match: (l) => l.kind === "gguf-temp" });
  if (typeof type !== "string") throw new Error(`--type is required (${EXPORT_TYPES.join(", ")})`);
  if (!EXPORT_TYPES.includes(type as ExportType)) throw new Error(`--type: unsupported type "${type}" (supported: ${EXPORT_TYPES.join(", ")})`);

  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.on("SIGINT", onSigint);
  let lastDecile = -1;
  try {
    const r = await exportGguf(model, out, {
      type: type as ExportType,
      force: flags.force === true,
      signal: abort.signal,
      onProgress: (p) => {
        // --json (machines, e.g. the app's quantize service): a line per tensor; else one line per 10%
        if (flags.json === true) {
          process.stderr.write(`progress ${p.done} ${p.total}\n`);
          return;
        }
        const decile = Math.floor((10 * p.done) / p.total);
        if (decile !== lastDecile) {
          lastDecile = decile;
          process.stderr.write(`export-gguf: ${String(decile * 10).padStart(3)}%  ${p.index}/${p.count} tensors${p.tensor ? `  ${p.tensor}` : ""}\n`);
        }
      },
    });
    for (const n of r.notes) process.stderr.write(`export-gguf: note: ${n}\n`);
    if (flags.json === true) {
      process.stdout.write(JSON.stringify(r) + "\n");
    } else {
      const types = Object.entries(r.typeCounts).map(([k, v]) => `${v} ${k}`).join(", ");
      process.stdout.write(
        `${r.path}: GGUF v3, ${r.arch}, ${r.tensors.length} tensors (${types}), ${(r.bytes / 2 ** 20).toFixed(2)} MiB in ${r.seconds.toFixed(1)} s\n`,
      );
    }
    return 0;
  } catch (e) {
    if (e instanceof ExportCancelled) {
      process.stderr.write("moe-studio: export cancelled; nothing was written\n");
      return 130;
    }
    throw e;
  } finally {
    process.off("SIGINT", onSigint);
  }
}
