// Fuzzing the jsonl/JSON-array importer: the fixture files of test/fixtures/datasets, mutated by a seeded PRNG
// (byte flips, truncated and joined lines, deep nesting, huge numbers, invalid UTF-8, BOMs, CRLF, NUL bytes and
// escapes, very long strings and lines over the line limit, random bytes), a fixed number of cases. Each case must
// end in a report — every record either valid or rejected with its 1-based line and a reason, the same records an
// independent line split finds — or, for a file with nothing in it, a clear error; never an exception from inside.
// Valid samples then commit (the count matches the scan) or "import nothing" leaves the database byte-for-byte
// as it was. Everything runs in-process on an in-memory database: a few seconds for all cases.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RejectReason } from "../../electron/contract.js";
import { parseRecord } from "../../electron/datasets/formats.js";
import { readValidSamplesSync, scanFile, type ScanResult } from "../../electron/datasets/scan.js";
import { DatasetService } from "../../electron/services/datasets.js";
import { seededRandom } from "../../electron/store/datasets.js";
import { openDatabase, type Db } from "../../electron/store/db.js";

const FIX = join(import.meta.dirname, "../fixtures/datasets");
const SEED = 20261204;
const CASES = 320;
/** Small, so that "a line over the limit" is cheap to make. */
const LINE_LIMIT = 64 * 1024;

const dir = mkdtempSync(join(tmpdir(), "moe-ds-fuzz-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)];

/** Line starts (byte offsets) of `b`, for mutations that work on lines. */
function lineStarts(b: Buffer): number[] {
  const starts = [0];
  for (let i = b.indexOf(0x0a); i >= 0 && i + 1 < b.length; i = b.indexOf(0x0a, i + 1)) starts.push(i + 1);
  return starts;
}

/** A position inside a string value when there is one (after a `": "` or `":"`), else anywhere. */
function insidePoint(r: Rand, b: Buffer): number {
  const text = b.toString("latin1");
  const spots: number[] = [];
  for (let i = text.indexOf('":"'); i >= 0; i = text.indexOf('":"', i + 1)) spots.push(i + 3);
  for (let i = text.indexOf('": "'); i >= 0; i = text.indexOf('": "', i + 1)) spots.push(i + 4);
  return spots.length ? pick(r, spots) : int(r, b.length + 1);
}

const splice = (b: Buffer, at: number, del: number, ins: Buffer | string) => Buffer.concat([b.subarray(0, at), Buffer.from(ins as string), b.subarray(at + del)]);

const MUTATIONS: Record<string, (r: Rand, b: Buffer) => Buffer> = {
  flipByte: (r, b) => {
    if (b.length === 0) return b;
    const c = Buffer.from(b);
    c[int(r, c.length)] ^= 1 << int(r, 8);
    return c;
  },
  randomBytes: (r, b) => splice(b, int(r, b.length + 1), 0, Buffer.from(Array.from({ length: 1 + int(r, 12) }, () => int(r, 256)))),
  truncateLine: (r, b) => {
    const starts = lineStarts(b);
    const k = int(r, starts.length);
    const end = k + 1 < starts.length ? starts[k + 1] - 1 : b.length;
    const cut = starts[k] + int(r, Math.max(1, end - starts[k]));
    return splice(b, cut, end - cut, "");
  },
  truncateFile: (r, b) => b.subarray(0, int(r, b.length + 1)),
  joinLines: (r, b) => {
    const nl = [...b.entries()].filter(([, x]) => x === 0x0a).map(([i]) => i);
    return nl.length ? splice(b, pick(r, nl), 1, "") : b;
  },
  duplicateLine: (r, b) => {
    const starts = lineStarts(b);
    const k = int(r, starts.length);
    const end = k + 1 < starts.length ? starts[k + 1] : b.length;
    return splice(b, end, 0, Buffer.concat([b.subarray(starts[k], end), Buffer.from(end === b.length ? "\n" : "")]));
  },
  blankLines: (r, b) => splice(b, pick(r, lineStarts(b)), 0, pick(r, ["\n", "\n\n\n", "   \n", "\t\r\n"])),
  deepNesting: (r, b) => {
    const depth = pick(r, [100, 5000, 200_000]);
    const deep = r() < 0.5 ? `${"[".repeat(depth)}${"]".repeat(depth)}` : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
    // as a whole line, or as the value of a field
    return r() < 0.5 ? splice(b, pick(r, lineStarts(b)), 0, `${deep}\n`) : Buffer.from(b.toString("utf8").replace(/"content": ?"[^"]*"|"value": ?"[^"]*"|"messages": ?/, (m) => (m.startsWith('"messages"') ? `"messages": ${deep}, "x": ` : `${m.split(":")[0]}: ${deep}`)));
  },
  hugeNumber: (r, b) => {
    const n = pick(r, ["1e999999", "-1e-999999", "9".repeat(5000), "123456789012345678901234567890", "0.".padEnd(3000, "7"), "NaN", "Infinity"]);
    return Buffer.from(b.toString("utf8").replace(/"(content|value|output|role|from)": ?"[^"]*"/, `"$1": ${n}`));
  },
  invalidUtf8: (r, b) => splice(b, insidePoint(r, b), 0, Buffer.from(pick(r, [[0xff], [0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80]]))),
  bom: (r, b) => splice(b, r() < 0.6 ? 0 : pick(r, lineStarts(b)), 0, Buffer.from([0xef, 0xbb, 0xbf])),
  crlf: (_r, b) => Buffer.from(b.toString("latin1").replace(/\r?\n/g, "\r\n"), "latin1"),
  loneCr: (r, b) => splice(b, insidePoint(r, b), 0, "\r"),
  nulByte: (r, b) => splice(b, r() < 0.5 ? insidePoint(r, b) : int(r, b.length + 1), 0, Buffer.from([0])),
  nulEscape: (r, b) => splice(b, insidePoint(r, b), 0, "\\u0000"),
  longString: (r, b) => splice(b, insidePoint(r, b), 0, "长".repeat(pick(r, [1000, 20_000, 30_000]))), // 3 bytes each: over the limit at 30k
  longLine: (r, b) => splice(b, pick(r, lineStarts(b)), 0, `{"instruction": "${"x".repeat(LINE_LIMIT + int(r, 1000))}", "output": "y"}\n`),
  badEscape: (r, b) => splice(b, insidePoint(r, b), 0, pick(r, ["\\x41", "\\u12", "\\ud800", "\\udc00\\ud800", "\\"])),
  emptyFile: () => Buffer.alloc(0),
};
const NAMES = Object.keys(MUTATIONS);

/**
 * An oracle independent of RecordSplitter for jsonl files: split on LF, drop one trailing CR, skip blank lines
 * (a BOM only at the very start), the same per-record rules. Returns [line, valid?] per record, or null when a
 * line is over the limit (the splitter's job alone).
 */
function oracleJsonl(bytes: Buffer): Array<[number, boolean]> | null {
  let b = bytes;
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) b = b.subarray(3);
  const out: Array<[number, boolean]> = [];
  let line = 1;
  let start = 0;
  for (;;) {
    const nl = b.indexOf(0x0a, start);
    let piece = b.subarray(start, nl < 0 ? b.length : nl);
    if (piece.length > LINE_LIMIT) return null;
    if (piece.length && piece[piece.length - 1] === 0x0d) piece = piece.subarray(0, piece.length - 1);
    if ([...piece].some((x) => x !== 0x20 && x !== 0x09 && x !== 0x0a && x !== 0x0d)) out.push([line, parseRecord(piece).ok]);
    if (nl < 0) return out;
    start = nl + 1;
    line++;
  }
}

function dump(db: Db): string {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>;
  return JSON.stringify(tables.map((t) => [t.name, db.prepare(`SELECT * FROM "${t.name}"`).all()]));
}

describe("importer fuzz", () => {
  it("a value nested 200k deep is its line's error, not the scan's (JSON.stringify of it overflowed the stack)", async () => {
    const file = join(dir, "deep.jsonl");
    const deep = `${'{"a":'.repeat(200_000)}1${"}".repeat(200_000)}`;
    writeFileSync(file, `{"messages": ${deep}}\n{"instruction": ${deep}, "output": "o"}\n{"instruction": "i", "output": "o"}\n`);
    const r = await scanFile(file);
    expect(r.valid).toBe(1);
    expect(r.rejected).toEqual([
      { line: 1, reason: "unknown_shape", error: 'unknown shape: "messages" must be an array, got an object nested too deeply to show' },
      { line: 2, reason: "unknown_shape", error: 'unknown shape: "instruction" must be a string, got an object nested too deeply to show' },
    ]);
  });

  it(`${CASES} seeded mutations of the fixture files each end in a report (or a clear error), never a crash`, async () => {
    const fixtures = readdirSync(FIX)
      .filter((f) => f.endsWith(".jsonl") || f.endsWith(".json"))
      .filter((f) => f !== "token-goldens.json")
      .sort()
      .map((f) => ({ name: f, bytes: readFileSync(join(FIX, f)) }));
    expect(fixtures.length).toBeGreaterThanOrEqual(6);
    const db = openDatabase(":memory:");
    const service = new DatasetService(db, dir, () => undefined, { importLimits: { maxRecordBytes: LINE_LIMIT } });
    const rand = seededRandom(SEED);
    const seen = { reports: 0, failures: 0, committed: 0, nothing: 0, rejectedLines: 0, oracle: 0 };
    const used = new Set<string>();
    try {
      for (let c = 0; c < CASES; c++) {
        const fx = fixtures[c % fixtures.length];
        let bytes: Buffer = fx.bytes;
        const applied: string[] = [];
        // every 40th case is a wiped file; the others get 1-3 of the other mutations
        for (let k = c % 40 === 39 ? 1 : 1 + int(rand, 3); k > 0; k--) {
          const name = c % 40 === 39 ? "emptyFile" : pick(rand, NAMES.filter((n) => n !== "emptyFile"));
          applied.push(name);
          used.add(name);
          bytes = MUTATIONS[name](rand, bytes);
        }
        const what = `case ${c}: ${fx.name} + ${applied.join(", ")}`;
        const file = join(dir, `case-${c}${fx.name.endsWith(".json") ? ".json" : ".jsonl"}`);
        writeFileSync(file, bytes);

        // the scan itself, as the service runs it
        let report: ScanResult;
        try {
          report = await scanFile(file, { limits: { maxRecordBytes: LINE_LIMIT } });
        } catch (e) {
          // the only whole-file failures: nothing in it
          expect((e as Error).message, what).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} (is empty: no samples|is empty \\(only blank lines\\): no samples|is an empty JSON array: no samples)$`));
          seen.failures++;
          continue;
        }
        seen.reports++;
        expect(report.valid + report.rejectedCount, what).toBe(report.records);
        expect(report.rejected.length, what).toBe(report.rejectedCount);
        const lines = bytes.toString("latin1").split("\n").length;
        let last = 0;
        for (const r of report.rejected) {
          expect(Number.isInteger(r.line) && r.line >= 1 && r.line <= lines, `${what}: line ${r.line} of ${lines}`).toBe(true);
          expect(r.line, what).toBeGreaterThanOrEqual(last);
          last = r.line;
          expect(RejectReason.options, what).toContain(r.reason);
          expect(r.error.length, what).toBeGreaterThan(0);
        }
        seen.rejectedLines += report.rejectedCount;
        if (report.container === "jsonl") {
          const expected = oracleJsonl(bytes);
          if (expected) {
            seen.oracle++;
            expect(report.records, what).toBe(expected.length);
            expect(report.rejected.map((r) => r.line), what).toEqual(expected.filter(([, ok]) => !ok).map(([l]) => l));
          }
        }
        // the commit's synchronous pass sees the same valid samples
        let again = 0;
        expect(readValidSamplesSync(file, report, () => again++, { maxRecordBytes: LINE_LIMIT }), what).toBe(report.valid);
        expect(again, what).toBe(report.valid);

        // through the service: commit the valid ones, or import nothing and find the database as it was
        const commit = report.valid > 0 && c % 2 === 0;
        const before = commit ? "" : dump(db);
        const { importId } = service.scan({ kind: "path", path: file });
        const st = await service.scanned(importId);
        expect(st.state, what).toBe("ready");
        expect(st.report, what).toMatchObject({ records: report.records, valid: report.valid, rejectedCount: report.rejectedCount });
        if (commit) {
          const d = await service.commit(importId);
          expect(d.sampleCount, what).toBe(report.valid);
          expect(d.rejectedCount, what).toBe(report.rejectedCount);
          // keeps the database (and the dumps of the "import nothing" cases) small
          await service.delete(d.id);
          seen.committed++;
        } else {
          await service.cancel(importId);
          expect(dump(db), what).toBe(before);
          seen.nothing++;
        }
      }
    } finally {
      await service.dispose();
      db.close();
    }
    // the run exercised what it claims to
    expect([...used].sort()).toEqual([...NAMES].sort());
    expect(seen.reports + seen.failures).toBe(CASES);
    expect(seen.committed).toBeGreaterThan(50);
    expect(seen.nothing).toBeGreaterThan(50);
    expect(seen.rejectedLines).toBeGreaterThan(CASES);
    expect(seen.oracle).toBeGreaterThan(100);
  }, 120_000);
});
