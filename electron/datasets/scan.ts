// Reading a samples file: the async scan (streamed in 1 MiB chunks, progress, cancellable through an AbortSignal)
// that produces the import report without writing anything, and the synchronous pass the commit runs inside its
// one transaction. Both go through RecordSplitter + parseRecord, so they agree on every record and line number;
// the commit refuses a file whose size or modification time changed since the scan.
import { closeSync, createReadStream, fstatSync, openSync, readSync } from "node:fs";
import { stat } from "node:fs/promises";
import type { DatasetFormat, FormatCounts, RejectedLine, SampleMessage } from "../contract.js";
import { parseRecord, REASON_LABEL } from "./formats.js";
import { RecordSplitter, type Container, type RawRecord, type RecordError } from "./records.js";

export const CHUNK_BYTES = 1024 * 1024;
/** Bad lines kept in a report (the count is always exact). */
export const MAX_REPORTED_REJECTS = 10_000;

export interface ScanProgress {
  bytesRead: number;
  totalBytes: number;
  records: number;
  valid: number;
  rejectedCount: number;
}

export interface ScanResult extends ScanProgress {
  container: Container;
  formats: FormatCounts;
  rejected: RejectedLine[];
  /** The file as scanned: the commit checks it is still the same. */
  size: number;
  mtimeMs: number;
}

export interface ValidSample {
  line: number;
  format: DatasetFormat;
  messages: SampleMessage[];
}

export class ScanCancelled extends Error {
  constructor() {
    super("the import was cancelled");
    this.name = "ScanCancelled";
  }
}

/** Readable errors for a file that cannot be read ("x.jsonl: file not found"). */
export function fileError(path: string, e: unknown): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new Error(`${path}: file not found`);
  if (code === "EISDIR") return new Error(`${path}: is a folder, not a file`);
  if (code === "EACCES" || code === "EPERM") return new Error(`${path}: permission denied`);
  return new Error(`${path}: ${(e as Error).message}`);
}

class Tally {
  records = 0;
  valid = 0;
  rejectedCount = 0;
  rejected: RejectedLine[] = [];
  formats: FormatCounts = { messages: 0, conversations: 0, instruction: 0 };

  add(r: RawRecord | RecordError, onValid?: (s: ValidSample) => void): void {
    this.records++;
    if (!("bytes" in r)) return this.reject({ line: r.line, reason: "not_json", error: `${REASON_LABEL.not_json}: ${r.error}` });
    const p = parseRecord(r.bytes);
    if (!p.ok) return this.reject({ line: r.line, reason: p.reason, error: p.error });
    this.valid++;
    this.formats[p.format]++;
    onValid?.({ line: r.line, format: p.format, messages: p.messages });
  }

  private reject(r: RejectedLine): void {
    this.rejectedCount++;
    if (this.rejected.length < MAX_REPORTED_REJECTS) this.rejected.push(r);
  }
}

/**
 * Streams `path` and reports what an import would do. Throws ScanCancelled when `signal` aborts (checked between
 * chunks), or a readable Error when the file cannot be read. Writes nothing.
 */
export async function scanFile(
  path: string,
  opts: { signal?: AbortSignal; onProgress?: (p: ScanProgress) => void; progressIntervalMs?: number } = {},
): Promise<ScanResult> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw fileError(path, e);
  }
  if (st.isDirectory()) throw new Error(`${path}: is a folder, not a file`);
  const tally = new Tally();
  const splitter = new RecordSplitter((r) => tally.add(r));
  const interval = opts.progressIntervalMs ?? 100;
  let bytesRead = 0;
  let lastProgress = 0;
  const progress = (): ScanProgress => ({ bytesRead, totalBytes: st.size, records: tally.records, valid: tally.valid, rejectedCount: tally.rejectedCount });
  const stream = createReadStream(path, { highWaterMark: CHUNK_BYTES });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (opts.signal?.aborted) throw new ScanCancelled();
      splitter.push(chunk);
      bytesRead += chunk.length;
      const now = Date.now();
      if (opts.onProgress && now - lastProgress >= interval) {
        lastProgress = now;
        opts.onProgress(progress());
      }
    }
  } catch (e) {
    if (e instanceof ScanCancelled) throw e;
    throw fileError(path, e);
  } finally {
    stream.destroy();
  }
  if (opts.signal?.aborted) throw new ScanCancelled();
  splitter.end();
  opts.onProgress?.(progress());
  return {
    ...progress(),
    container: splitter.container ?? "jsonl",
    formats: tally.formats,
    rejected: tally.rejected,
    size: st.size,
    mtimeMs: st.mtimeMs,
  };
}

/**
 * The commit's pass: reads `path` synchronously and calls `onValid` for every valid sample in file order.
 * `expect` is the scan's size and mtime: a file changed since then is refused before anything is read, and a
 * valid count that differs from the scan's means the same (the caller's transaction then rolls back).
 */
export function readValidSamplesSync(path: string, expect: { size: number; mtimeMs: number; valid: number }, onValid: (s: ValidSample) => void): number {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw fileError(path, e);
  }
  try {
    const st = fstatSync(fd);
    if (st.size !== expect.size || st.mtimeMs !== expect.mtimeMs) {
      throw new Error(`${path}: the file changed since it was scanned; scan it again`);
    }
    const tally = new Tally();
    const splitter = new RecordSplitter((r) => tally.add(r, onValid));
    for (;;) {
      // a fresh buffer per read: the splitter keeps views of earlier chunks for a line that spans them
      const buf = Buffer.allocUnsafe(CHUNK_BYTES);
      const n = readSync(fd, buf, 0, CHUNK_BYTES, null);
      if (n === 0) break;
      splitter.push(n === CHUNK_BYTES ? buf : buf.subarray(0, n));
    }
    splitter.end();
    if (tally.valid !== expect.valid) throw new Error(`${path}: the file changed since it was scanned; scan it again`);
    return tally.valid;
  } finally {
    closeSync(fd);
  }
}
