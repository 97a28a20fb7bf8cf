// The commit of an import: one transaction that creates the dataset and inserts every valid sample of the scanned
// file (read again, refused if it changed). It runs on a worker thread with its own SQLite connection
// (commit-worker.ts), so the main process keeps answering while 100k samples and their full-text index are
// written; the main connection sees nothing until COMMIT, and a cancel (a flag in shared memory, checked every
// CHECK_EVERY samples) rolls everything back. Without a database file (":memory:") it runs in-process.
import type { RejectedLine } from "../contract.js";
import type { Db } from "../store/db.js";
import { DatasetRepo } from "../store/datasets.js";
import { readValidSamplesSync } from "./scan.js";

export interface CommitRequest {
  path: string;
  /** The scan's view of the file: size, mtime and valid count must still hold. */
  expect: { size: number; mtimeMs: number; valid: number };
  dataset: { name: string; sourceFile: string | null; rejectedCount: number; rejected: RejectedLine[] };
}

export type CommitMessage =
  | { t: "progress"; inserted: number }
  | { t: "done"; datasetId: string }
  | { t: "cancelled" }
  | { t: "error"; message: string };

export class CommitCancelled extends Error {
  constructor() {
    super("the import was cancelled");
    this.name = "CommitCancelled";
  }
}

const CHECK_EVERY = 512;
/** Page cache for the bulk insert (the default 2 MiB makes the FTS and index B-trees spill constantly). */
const BULK_CACHE_KIB = 64 * 1024;

/** Runs the commit on `db`; throws CommitCancelled when `cancelled()` turns true (the transaction rolls back). */
export function commitImport(db: Db, req: CommitRequest, onProgress: (inserted: number) => void, cancelled: () => boolean): string {
  const repo = new DatasetRepo(db);
  const cache = db.pragma("cache_size", { simple: true }) as number;
  db.pragma(`cache_size = -${BULK_CACHE_KIB}`);
  try {
    return db.transaction(() => {
      const id = repo.createDataset(req.dataset);
      const insert = repo.inserter(id);
      let n = 0;
      readValidSamplesSync(req.path, req.expect, (s) => {
        insert({ format: s.format, messages: s.messages, sourceLine: s.line });
        if (++n % CHECK_EVERY === 0) {
          if (cancelled()) throw new CommitCancelled();
          onProgress(n);
        }
      });
      if (cancelled()) throw new CommitCancelled();
      onProgress(n);
      return id;
    })();
  } finally {
    db.pragma(`cache_size = ${cache}`);
  }
}
