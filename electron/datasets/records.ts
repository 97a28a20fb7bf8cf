// A file of samples as a stream of records without holding the file in memory: bytes go in as they are read
// (push(chunk) ... end()), records come out with the 1-based line on which each starts. Two containers:
//   jsonl       one record per line; LF or CRLF; the last line may lack its newline; blank lines are skipped;
//   json-array  the file is one JSON array `[ {...}, {...} ]`: each top-level element is a record, found by a
//               byte-level scanner that tracks strings/escapes and bracket depth (the elements are then parsed
//               one by one, so a 1 GB array needs memory for one element, not the file).
// Both skip a UTF-8 BOM at the start. Records are bytes: decoding (fatal on invalid UTF-8) is the caller's.
// A record's bytes are valid only during the `out` call: they may be a view into the chunk just pushed, which the
// reader then reuses for the next read (so reading a file allocates one chunk buffer, not one per chunk); what
// the splitter keeps across pushes (a line that spans chunks) it copies, and never more than the record limit.
// The same splitter serves the async scan (fs streams) and the synchronous commit (readSync), so both see exactly
// the same records with the same line numbers.

/** A record that could not be cut out whole (a line or element too long, a broken array). */
export interface RecordError {
  line: number;
  error: string;
}

export interface RawRecord {
  line: number;
  /** Valid only during the call that receives it (see above). */
  bytes: Buffer;
}

export type Container = "jsonl" | "json-array";

/**
 * Longest record accepted by default. A sample of several MB is normal (a message may hold 4 M characters); a
 * record is held whole while it is parsed and stored (bytes, string, parsed value, JSON and content columns, its
 * full-text index entries: measured 4x its size in the scan and about 15x in the commit, e.g. 240 MB for a 15 MB
 * line), so the limit bounds an import's memory. A longer
 * record is skipped as it streams past (never buffered) and reported as its line's error.
 */
export const MAX_RECORD_BYTES = 16 * 1024 * 1024;

export interface SplitterLimits {
  /** Longest record in bytes (default MAX_RECORD_BYTES). */
  maxRecordBytes?: number;
}

/** "16 MiB", "1.5 MiB", or "1000 bytes": a limit as a user reads it. */
export function formatLimit(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  if (mib >= 1 && Number.isInteger(mib * 10)) return `${mib} MiB`;
  const kib = bytes / 1024;
  if (kib >= 1 && Number.isInteger(kib)) return `${kib} KiB`;
  return `${bytes} bytes`;
}

const LF = 0x0a;
const CR = 0x0d;

/** Concatenate buffered pieces (the common case is a single piece: no copy). */
function join(parts: Buffer[], total: number): Buffer {
  return parts.length === 1 ? parts[0] : Buffer.concat(parts, total);
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === LF || b === CR;
}

/** Lines of a jsonl file. */
class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private tooLong = false;

  constructor(
    private readonly out: (r: RawRecord | RecordError) => void,
    private readonly maxBytes: number,
    private line = 1,     // the line the pending bytes belong to
  ) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(LF, pos);
      const end = nl < 0 ? chunk.length : nl;
      if (!this.tooLong) {
        if (this.partBytes + (end - pos) > this.maxBytes) {
          this.tooLong = true;
          this.parts = [];
          this.partBytes = 0;
        } else if (end > pos) {
          // the rest of a line that goes on in the next chunk outlives this call: a copy
          this.parts.push(nl < 0 ? Buffer.from(chunk.subarray(pos, end)) : chunk.subarray(pos, end));
          this.partBytes += end - pos;
        }
      }
      if (nl < 0) break;
      this.flushLine();
      pos = nl + 1;
    }
  }

  end(): void {
    if (this.partBytes > 0 || this.tooLong) this.flushLine();
  }

  private flushLine(): void {
    if (this.tooLong) {
      this.out({ line: this.line, error: `line ${this.line} is longer than the limit of ${formatLimit(this.maxBytes)} for one sample (skipped)` });
    } else {
      let bytes = join(this.parts, this.partBytes);
      if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, bytes.length - 1);
      // blank (or whitespace-only) lines separate nothing and are not samples
      let blank = true;
      for (let i = 0; i < bytes.length; i++) if (!isSpace(bytes[i])) { blank = false; break; }
      if (!blank) this.out({ line: this.line, bytes });
    }
    this.parts = [];
    this.partBytes = 0;
    this.tooLong = false;
    this.line++;
  }
}

/**
 * Elements of a top-level JSON array. States: before '[' → between elements (expect element, ',' or ']') →
 * inside an element (depth, in-string, escape) → after ']' (only whitespace may follow).
 */
class ArraySplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private state: "start" | "between" | "element" | "done" = "start";
  private expectComma = false;   // between: an element was just closed, so ',' or ']' must come next
  private depth = 0;             // inside an element: open brackets/braces
  private inString = false;
  private escape = false;
  private scalar = false;        // the element is a bare number/true/false/null (ends at ',' ']' or space)
  private elementLine = 0;
  private tooLong = false;
  private failed = false;

  constructor(
    private readonly out: (r: RawRecord | RecordError) => void,
    private readonly maxBytes: number,
    private line = 1,
  ) {}

  push(chunk: Buffer): void {
    if (this.failed) return;
    let start = this.state === "element" ? 0 : -1;   // where the element's bytes begin in this chunk
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (this.state === "element") {
        if (this.inString) {
          if (this.escape) this.escape = false;
          else if (b === 0x5c) this.escape = true;        // backslash
          else if (b === 0x22) {
            this.inString = false;                       // closing quote
            if (this.depth === 0) {                      // a bare string element ends here
              this.finishElement(chunk, start, i + 1);
              start = -1;
            }
          } else if (b === LF) this.line++;              // (invalid in JSON, but keep lines right)
          continue;
        }
        if (this.scalar) {
          if (b === 0x2c || b === 0x5d || isSpace(b)) {
            this.finishElement(chunk, start, i);
            start = -1;
            i--;                                           // re-read the delimiter between elements
          }
          continue;
        }
        if (b === 0x22) this.inString = true;
        else if (b === 0x7b || b === 0x5b) this.depth++;
        else if (b === 0x7d || b === 0x5d) {
          this.depth--;
          if (this.depth === 0) {
            this.finishElement(chunk, start, i + 1);
            start = -1;
          }
        } else if (b === LF) this.line++;
        continue;
      }
      if (b === LF) {
        this.line++;
        continue;
      }
      if (isSpace(b)) continue;
      if (this.state === "start") {
        if (b !== 0x5b) return this.fail(`expected "[" at the start of a JSON array file`);
        this.state = "between";
        this.expectComma = false;
        continue;
      }
      if (this.state === "done") return this.fail(`unexpected text after the closing "]"`);
      // between elements
      if (b === 0x5d) {
        this.state = "done";
        continue;
      }
      if (b === 0x2c) {
        if (!this.expectComma) return this.fail(`unexpected ","`);
        this.expectComma = false;
        continue;
      }
      if (this.expectComma) return this.fail(`expected "," or "]" between array elements`);
      this.state = "element";
      this.elementLine = this.line;
      this.depth = 0;
      this.inString = false;
      this.escape = false;
      this.scalar = false;
      this.tooLong = false;
      start = i;
      if (b === 0x22) this.inString = true;
      else if (b === 0x7b || b === 0x5b) this.depth = 1;
      else this.scalar = true;
      // a one-character string like `"` continues; a bare scalar continues to its delimiter
    }
    if (this.state === "element" && start >= 0) this.keep(chunk.subarray(start));
  }

  end(): void {
    if (this.failed) return;
    if (this.state === "element" && this.scalar && !this.inString) {
      this.finishElement(Buffer.alloc(0), -1, 0);
    }
    if (this.state === "start") return this.fail("the file is empty: expected a JSON array");
    if (this.state === "element") return this.fail("the file ends inside this element (the JSON array is not closed)", this.elementLine);
    if (this.state === "between") return this.fail(`the file ends before the closing "]"`);
  }

  private keep(piece: Buffer): void {
    if (this.tooLong) return;
    if (this.partBytes + piece.length > this.maxBytes) {
      this.tooLong = true;
      this.parts = [];
      this.partBytes = 0;
      return;
    }
    // the chunk buffer may be reused by the reader: copy what outlives this call
    this.parts.push(Buffer.from(piece));
    this.partBytes += piece.length;
  }

  private finishElement(chunk: Buffer, start: number, end: number): void {
    if (start >= 0) this.keep(chunk.subarray(start, end));
    if (this.tooLong) this.out({ line: this.elementLine, error: `the element on line ${this.elementLine} is longer than the limit of ${formatLimit(this.maxBytes)} for one sample (skipped)` });
    else this.out({ line: this.elementLine, bytes: join(this.parts, this.partBytes) });
    this.parts = [];
    this.partBytes = 0;
    this.state = "between";
    this.expectComma = true;
    this.scalar = false;
    this.inString = false;
  }

  private fail(error: string, line = this.line): void {
    this.failed = true;
    this.out({ line, error });
  }
}

/**
 * Splits a byte stream into records. The container is decided by the first non-blank byte after an optional BOM:
 * '[' means a JSON array file, anything else jsonl. Records (or RecordErrors) go to `out` in file order. Blank bytes
 * before that first one are counted (for line numbers), not kept: a file of nothing but blanks costs no memory.
 */
export class RecordSplitter {
  private inner: LineSplitter | ArraySplitter | null = null;
  private bomHead: Buffer | null = null;   // the first 1-2 bytes while they may still start a BOM
  private bomChecked = false;
  private blankLines = 0;                  // LFs seen before the container is known
  private readonly maxBytes: number;
  container: Container | null = null;

  constructor(
    private readonly out: (r: RawRecord | RecordError) => void,
    limits: SplitterLimits = {},
  ) {
    this.maxBytes = limits.maxRecordBytes ?? MAX_RECORD_BYTES;
  }

  push(chunk: Buffer): void {
    if (this.inner) return this.inner.push(chunk);
    if (!this.bomChecked) {
      const pending = this.bomHead ? Buffer.concat([this.bomHead, chunk]) : chunk;
      if (pending.length < 3 && (pending.length === 0 || pending[0] === 0xef)) {
        this.bomHead = Buffer.from(pending); // outlives this call
        return;
      }
      this.bomChecked = true;
      this.bomHead = null;
      chunk = pending.length >= 3 && pending[0] === 0xef && pending[1] === 0xbb && pending[2] === 0xbf ? pending.subarray(3) : pending;
    }
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === LF) this.blankLines++;
      if (isSpace(b)) continue;
      this.container = b === 0x5b ? "json-array" : "jsonl";
      const line = this.blankLines + 1;
      this.inner = this.container === "json-array" ? new ArraySplitter(this.out, this.maxBytes, line) : new LineSplitter(this.out, this.maxBytes, line);
      this.inner.push(chunk.subarray(i));
      return;
    }
  }

  end(): void {
    if (!this.inner) {
      // only blanks (or nothing, or 1-2 bytes that looked like the start of a BOM): an empty jsonl file
      this.container = "jsonl";
      this.inner = new LineSplitter(this.out, this.maxBytes, this.blankLines + 1);
      if (this.bomHead) this.inner.push(this.bomHead);
    }
    this.inner.end();
  }
}
