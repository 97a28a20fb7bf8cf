// `moe-studio dataset import|list|export`: the app's datasets from a terminal, on the same database and the same
// DatasetService as the app (scan, then one transaction).
//
//   dataset import FILE [--db PATH] [--name NAME] [--valid-only]
//     stdout: {"dataset": id|null, "imported": n, "rejected": [{"line": k, "error": "..."}]}
//     Without --valid-only a file with any rejected line imports nothing: "dataset" is null, exit code 1.
//     With --valid-only the valid lines are imported (exit 0), unless none is valid (null, exit 1).
//     "rejected" lists the first 10,000 bad lines. stderr: one line with the time taken and the peak memory.
//   dataset list [--db PATH]            stdout: a JSON array of the datasets (DatasetSummary)
//   dataset export ID FILE [--db PATH]  messages-format jsonl; stdout: {"path", "samples", "bytes"}
import { dirname, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { DatasetService } from "../services/datasets.js";
import { databaseFile, defaultDataDir } from "../services/paths.js";
import { asDiskFull } from "../services/errors.js";
import { openDatabase } from "../store/db.js";

export const DATASET_HELP = `  dataset import FILE [--db PATH] [--name NAME] [--valid-only]
      Import a .jsonl (or JSON array .json) file of messages / conversations / instruction samples into the
      app's database (--db: another database file). Prints {"dataset": id, "imported": n, "rejected":
      [{"line": k, "error": "..."}]}. If any line is rejected, nothing is imported ("dataset": null, exit
      code 1) unless --valid-only, which imports the valid lines.
  dataset list [--db PATH]
      The datasets as a JSON array (id, name, sampleCount, sourceFile, ...).
  dataset export ID FILE [--db PATH]
      Write a dataset as messages-format jsonl (import of that file gives the same samples).
`;

export class DatasetUsageError extends Error {}

interface Parsed {
  sub: string | null;
  args: string[];
  db?: string;
  name?: string;
  validOnly: boolean;
}

export function parseDatasetArgs(argv: string[]): Parsed {
  const p: Parsed = { sub: null, args: [], validOnly: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const inline = eq >= 0 ? a.slice(eq + 1) : undefined;
      if (name === "valid-only") {
        if (inline !== undefined) throw new DatasetUsageError("--valid-only takes no value");
        p.validOnly = true;
        continue;
      }
      if (name !== "db" && name !== "name") throw new DatasetUsageError(`unknown option --${name} (see moe-studio --help)`);
      const value = inline ?? argv[++i];
      if (value === undefined) throw new DatasetUsageError(`--${name} needs a value`);
      p[name] = value;
    } else if (p.sub === null) {
      p.sub = a;
    } else {
      p.args.push(a);
    }
  }
  return p;
}

function arity(p: Parsed, names: string[]): void {
  if (p.args.length !== names.length) {
    throw new DatasetUsageError(`usage: moe-studio dataset ${p.sub} ${names.join(" ")}${p.args.length > names.length ? ` (unexpected "${p.args[names.length]}")` : ""}`);
  }
}

/** Runs a `dataset` subcommand; returns the exit code. Errors throw (cli.ts prints them on one line). */
export async function cmdDataset(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s), err: (s: string) => void = (s) => process.stderr.write(s)): Promise<number> {
  const p = parseDatasetArgs(argv);
  if (p.sub !== "import" && p.sub !== "list" && p.sub !== "export") {
    throw new DatasetUsageError(p.sub === null ? "dataset: which command? import, list or export (see moe-studio --help)" : `dataset: unknown command "${p.sub}" (import, list, export)`);
  }
  if (p.sub !== "import" && (p.name !== undefined || p.validOnly)) throw new DatasetUsageError(`--name and --valid-only are options of "dataset import"`);
  const dbFile = resolve(p.db ?? databaseFile(defaultDataDir()));
  const db = openDatabase(dbFile);
  // events have no listener here: the CLI reads the results of the calls
  const service = new DatasetService(db, dirname(dbFile), () => undefined);
  try {
    if (p.sub === "list") {
      arity(p, []);
      out(`${JSON.stringify(service.list(), null, 2)}\n`);
      return 0;
    }
    if (p.sub === "export") {
      arity(p, ["ID", "FILE"]);
      const r = await service.export(p.args[0], p.args[1]);
      out(`${JSON.stringify(r)}\n`);
      return 0;
    }
    arity(p, ["FILE"]);
    const t0 = performance.now();
    const { importId } = service.scan({ kind: "path", path: p.args[0] });
    const st = await service.scanned(importId);
    if (st.state !== "ready" || !st.report) throw new Error(st.error ?? `the scan ended ${st.state}`);
    const rejected = st.report.rejected.map((r) => ({ line: r.line, error: r.error }));
    let dataset: string | null = null;
    let imported = 0;
    if ((st.report.rejectedCount === 0 || p.validOnly) && st.report.valid > 0) {
      const d = await service.commit(importId, p.name);
      dataset = d.id;
      imported = d.sampleCount;
    } else {
      await service.cancel(importId);
    }
    out(`${JSON.stringify({ dataset, imported, rejected })}\n`);
    const ms = performance.now() - t0;
    const peak = process.resourceUsage().maxRSS / 1024;
    err(
      `moe-studio dataset import: ${st.report.records} records (${st.report.valid} valid, ${st.report.rejectedCount} rejected), ` +
        `${dataset ? `imported ${imported}` : "imported nothing"} in ${(ms / 1000).toFixed(2)} s, peak RSS ${peak.toFixed(0)} MiB\n`,
    );
    return dataset ? 0 : 1;
  } catch (e) {
    // "disk full: ... (free N MB in DIR)" rather than SQLite's bare "database or disk is full"
    throw asDiskFull(e, dirname(dbFile)) ?? e;
  } finally {
    await service.dispose();
    db.close();
  }
}
