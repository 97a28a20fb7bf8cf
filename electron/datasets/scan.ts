// Reading a samples file: the async scan (streamed in 1 MiB chunks, progress, cancellable through an AbortSignal)
// that produces the import report without writing anything, and the synchronous pass the commit runs inside its
// one transaction. Both go through RecordSplitter + parseRecord, so they agree on every record and line number;
// the commit refuses a file whose size or modification time changed since the scan.
import { closeSync, fstatSync, openSync, readSync, type Stats } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import type { DatasetFormat, FormatCounts, RejectedLine, SampleMessage } from "../contract.js";
import { parseRecord, REASON_LABEL } from "./formats.js";
import { formatLimit, RecordSplitter, type Container, type RawRecord, type RecordError } from "./records.js";

export const CHUNK_BYTES = 1024 * 1024;
/** Bad lines kept in a report (the count is always exact). */
export const MAX_REPORTED_REJECTS = 10_000;
/** Longest error text kept per bad line: 10,000 of them must fit one report (and one WebSocket frame). */
export const MAX_REJECT_ERROR_CHARS = 300;
/** Largest file one import reads by default (the browser upload's limit too). */
export const MAX_IMPORT_BYTES = 64 * 1024 ** 3;

/** What one import may read: both passes (scan and commit) must use the same limits to agree on every record. */
export interface ImportLimits {
  /** Longest line (jsonl) or array element in bytes; a longer one is that line's error. Default MAX_RECORD_BYTES. */
  maxRecordBytes?: number;
  /** Largest file in bytes; a larger one fails the scan before it is read. Default MAX_IMPORT_BYTES. */
  maxFileBytes?: number;
}

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

/** What a stat says a path is, for "x is not a regular file (a character device)". */
function kindOf(st: { isCharacterDevice(): boolean; isBlockDevice(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isFIFO()) return "a pipe";
  if (st.isSocket()) return "a socket";
  return "not a file";
}

/**
 * The checks before a file is read: a regular file (a device such as /dev/zero or a pipe never ends, and the
 * commit reads the file a second time), not empty, within the size limit. The scan then reads exactly the size
 * seen here, so a file that grows while it is read cannot make the scan endless either.
 */
function checkReadable(path: string, st: Stats, limits: ImportLimits): void {
  if (st.isDirectory()) throw new Error(`${path}: is a folder, not a file`);
  if (!st.isFile()) throw new Error(`${path} is not a regular file (${kindOf(st)}): only files can be imported`);
  if (st.size === 0) throw new Error(`${path} is empty: no samples`);
  const max = limits.maxFileBytes ?? MAX_IMPORT_BYTES;
  if (st.size > max) throw new Error(`${path} is ${st.size} bytes, more than the limit of ${formatLimit(max)} for one import`);
}

/** Why a file that was read whole holds no sample at all. */
function noSamples(path: string, container: Container): Error {
  return new Error(container === "json-array" ? `${path} is an empty JSON array: no samples` : `${path} is empty (only blank lines): no samples`);
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
    if (this.rejected.length >= MAX_REPORTED_REJECTS) return;
    // an error quotes bits of the line (a key, a value, the parser's excerpt): never more than a short sentence
    const error = r.error.length > MAX_REJECT_ERROR_CHARS ? `${r.error.slice(0, MAX_REJECT_ERROR_CHARS - 1)}…` : r.error;
    this.rejected.push({ ...r, error });
  }
}

/**
 * Streams `path` and reports what an import would do. Throws ScanCancelled when `signal` aborts (checked between
 * chunks), or a readable Error when the file cannot be read. Writes nothing.
 */
export async function scanFile(
  path: string,
  opts: { signal?: AbortSignal; onProgress?: (p: ScanProgress) => void; progressIntervalMs?: number; limits?: ImportLimits } = {},
): Promise<ScanResult> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw fileError(path, e);
  }
  const limits = opts.limits ?? {};
  checkReadable(path, st, limits);
  const tally = new Tally();
  const splitter = new RecordSplitter((r) => tally.add(r), limits);
  const interval = opts.progressIntervalMs ?? 100;
  let bytesRead = 0;
  let lastProgress = 0;
  const progress = (): ScanProgress => ({ bytesRead, totalBytes: st.size, records: tally.records, valid: tally.valid, rejectedCount: tally.rejectedCount });
  let fh: FileHandle | null = null;
  try {
    fh = await open(path, "r");
    // one buffer for the whole file (the splitter copies what it keeps), and the bytes the stat saw, never more
    const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, st.size));
    while (bytesRead < st.size) {
      if (opts.signal?.aborted) throw new ScanCancelled();
      const { bytesRead: n } = await fh.read(buf, 0, Math.min(buf.length, st.size - bytesRead), bytesRead);
      if (n === 0) break;
      splitter.push(n === buf.length ? buf : buf.subarray(0, n));
      bytesRead += n;
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
    await fh?.close();
  }
  if (opts.signal?.aborted) throw new ScanCancelled();
  splitter.end();
  if (bytesRead < st.size) throw new Error(`${path}: the file shrank while it was read (${st.size} bytes at the start, ${bytesRead} read); import it once it is complete`);
  const now = await stat(path).catch((e) => {
    throw fileError(path, e);
  });
  if (now.size !== st.size || now.mtimeMs !== st.mtimeMs) {
    throw new Error(`${path}: the file changed while it was read (${st.size} bytes at the start, ${now.size} now); import it once it is complete`);
  }
  if (tally.records === 0) throw noSamples(path, splitter.container ?? "jsonl");
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
export function readValidSamplesSync(
  path: string,
  expect: { size: number; mtimeMs: number; valid: number },
  onValid: (s: ValidSample) => void,
  limits: ImportLimits = {},
): number {
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
    const splitter = new RecordSplitter((r) => tally.add(r, onValid), limits);
    // the scan's bytes and no more (a file that grew in between was refused above; this bounds the loop anyway),
    // through one buffer (the splitter copies what it keeps across reads)
    const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(1, expect.size)));
    for (let left = expect.size; left > 0; ) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, left), null);
      if (n === 0) break;
      left -= n;
      splitter.push(n === buf.length ? buf : buf.subarray(0, n));
    }
    splitter.end();
    if (tally.valid !== expect.valid) throw new Error(`${path}: the file changed since it was scanned; scan it again`);
    return tally.valid;
  } finally {
    closeSync(fd);
  }
}
