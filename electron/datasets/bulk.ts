// Writes that touch a whole dataset — committing an import, splitting, deduplicating, deleting — in one transaction each, on a
// worker thread with its own SQLite connection (bulk-worker.ts). Writing 100k samples means writing their
// trigram full-text index too (tens of seconds for 100 MB of text on a loaded 2-core machine); on the main
// connection that would freeze the main process. The main connection sees nothing until COMMIT. An import can be
// cancelled: a flag in shared memory, checked every CHECK_EVERY samples, rolls it back. Without a database file
// (":memory:") the same code runs in-process.
import type { RejectedLine } from "../contract.js";
import type { Db } from "../store/db.js";
import { DatasetRepo } from "../store/datasets.js";
import { readValidSamplesSync, type ImportLimits } from "./scan.js";

export interface CommitRequest {
  path: string;
  /** The scan's view of the file: size, mtime and valid count must still hold. */
  expect: { size: number; mtimeMs: number; valid: number };
  dataset: { name: string; sourceFile: string | null; rejectedCount: number; rejected: RejectedLine[] };
  /** The scan's limits (the commit must cut the file into the same records). */
  limits?: ImportLimits;
}

export type BulkTask =
  | { kind: "import"; request: CommitRequest }
  | { kind: "split"; datasetId: string; validationRatio: number; seed: number }
  | { kind: "delete"; datasetId: string }
  | { kind: "dedupe"; datasetId: string };

export type BulkResult =
  | { kind: "import"; datasetId: string }
  | { kind: "split"; trainId: string; validationId: string }
  | { kind: "delete"; deleted: boolean }
  | { kind: "dedupe"; removed: number };

export type BulkMessage =
  | { t: "progress"; inserted: number }
  | { t: "done"; result: BulkResult }
  | { t: "cancelled" }
  | { t: "error"; message: string; code?: string };

export class CommitCancelled extends Error {
  constructor() {
    super("the import was cancelled");
    this.name = "CommitCancelled";
  }
}

const CHECK_EVERY = 512;
/** Page cache for bulk writes (the default 2 MiB makes the FTS and index B-trees spill constantly). */
const BULK_CACHE_KIB = 32 * 1024;

/** Runs `task` on `db`; an import throws CommitCancelled when `cancelled()` turns true (rolled back). */
export function runBulk(db: Db, task: BulkTask, onProgress: (inserted: number) => void, cancelled: () => boolean): BulkResult {
  const repo = new DatasetRepo(db);
  const cache = db.pragma("cache_size", { simple: true }) as number;
  db.pragma(`cache_size = -${BULK_CACHE_KIB}`);
  try {
    if (task.kind === "split") return { kind: "split", ...repo.split(task.datasetId, task.validationRatio, task.seed) };
    if (task.kind === "delete") return { kind: "delete", deleted: repo.deleteDataset(task.datasetId) };
    if (task.kind === "dedupe") return { kind: "dedupe", removed: repo.dedupe(task.datasetId) };
    const req = task.request;
    return db.transaction((): BulkResult => {
      const id = repo.createDataset(req.dataset);
      const insert = repo.inserter(id);
      let n = 0;
      readValidSamplesSync(req.path, req.expect, (s) => {
        insert({ format: s.format, messages: s.messages, sourceLine: s.line });
        if (++n % CHECK_EVERY === 0) {
          if (cancelled()) throw new CommitCancelled();
          onProgress(n);
        }
      }, req.limits);
      if (cancelled()) throw new CommitCancelled();
      onProgress(n);
      return { kind: "import", datasetId: id };
    })();
  } finally {
    db.pragma(`cache_size = ${cache}`);
  }
}
