// A file of samples as a stream of records without holding the file in memory: bytes go in as they are read
// (push(chunk) ... end()), records come out with the 1-based line on which each starts. Two containers:
//   jsonl       one record per line; LF or CRLF; the last line may lack its newline; blank lines are skipped;
//   json-array  the file is one JSON array `[ {...}, {...} ]`: each top-level element is a record, found by a
//               byte-level scanner that tracks strings/escapes and bracket depth (the elements are then parsed
//               one by one, so a 1 GB array needs memory for one element, not the file).
// Both skip a UTF-8 BOM at the start. Records are bytes: decoding (fatal on invalid UTF-8) is the caller's.
// The same splitter serves the async scan (fs streams) and the synchronous commit (readSync), so both see exactly
// the same records with the same line numbers.

/** A record that could not be cut out whole (a line or element too long, a broken array). */
export interface RecordError {
  line: number;
  error: string;
}

export interface RawRecord {
  line: number;
  bytes: Buffer;
}

export type Container = "jsonl" | "json-array";

/** Longest record accepted (a line of several MB is normal; 256 MiB is surely not one sample). */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024;

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
  private line = 1;       // the line the pending bytes belong to

  constructor(private readonly out: (r: RawRecord | RecordError) => void) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(LF, pos);
      const end = nl < 0 ? chunk.length : nl;
      if (!this.tooLong) {
        if (this.partBytes + (end - pos) > MAX_RECORD_BYTES) {
          this.tooLong = true;
          this.parts = [];
          this.partBytes = 0;
        } else if (end > pos) {
          this.parts.push(chunk.subarray(pos, end));
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
      this.out({ line: this.line, error: `the line is longer than ${MAX_RECORD_BYTES / (1024 * 1024)} MiB` });
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
  private line = 1;
  private state: "start" | "between" | "element" | "done" = "start";
  private expectComma = false;   // between: an element was just closed, so ',' or ']' must come next
  private depth = 0;             // inside an element: open brackets/braces
  private inString = false;
  private escape = false;
  private scalar = false;        // the element is a bare number/true/false/null (ends at ',' ']' or space)
  private elementLine = 0;
  private tooLong = false;
  private failed = false;

  constructor(private readonly out: (r: RawRecord | RecordError) => void) {}

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
    if (this.partBytes + piece.length > MAX_RECORD_BYTES) {
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
    if (this.tooLong) this.out({ line: this.elementLine, error: `the element is longer than ${MAX_RECORD_BYTES / (1024 * 1024)} MiB` });
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
 * '[' means a JSON array file, anything else jsonl. Records (or RecordErrors) go to `out` in file order.
 */
export class RecordSplitter {
  private inner: LineSplitter | ArraySplitter | null = null;
  private head: Buffer[] = [];    // bytes before the container is known (BOM, leading blanks)
  private bomChecked = false;
  container: Container | null = null;

  constructor(private readonly out: (r: RawRecord | RecordError) => void) {}

  push(chunk: Buffer): void {
    if (this.inner) return this.inner.push(chunk);
    if (!this.bomChecked) {
      const pending = this.head.length ? Buffer.concat([...this.head, chunk]) : chunk;
      if (pending.length < 3 && (pending.length === 0 || pending[0] === 0xef)) {
        this.head = [pending];
        return;
      }
      this.bomChecked = true;
      this.head = [];
      chunk = pending.length >= 3 && pending[0] === 0xef && pending[1] === 0xbb && pending[2] === 0xbf ? pending.subarray(3) : pending;
    }
    this.head.push(chunk);
    for (const piece of this.head) {
      for (let i = 0; i < piece.length; i++) {
        if (isSpace(piece[i])) continue;
        this.container = piece[i] === 0x5b ? "json-array" : "jsonl";
        this.inner = this.container === "json-array" ? new ArraySplitter(this.out) : new LineSplitter(this.out);
        const head = this.head;
        this.head = [];
        for (const p of head) this.inner.push(p);
        return;
      }
    }
  }

  end(): void {
    if (!this.inner) {
      // only blanks (or nothing): an empty jsonl file
      this.container = "jsonl";
      this.inner = new LineSplitter(this.out);
      for (const p of this.head) this.inner.push(p);
    }
    this.inner.end();
  }
}
