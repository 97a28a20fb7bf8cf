// Bounded work and readable errors for datasets (issue 11): the search over a huge sample (a 500-character query
// used to take GBs: one FTS5 phrase token per trigram, each loading the sample's whole position list), FTS syntax
// as literal text, the query cap; scans of a device, a growing file, an over-long line (memory measured in a child
// process), a file over the size limit, empty files; a full disk through SQLite (max_page_count gives the real
// SQLITE_FULL) and fs (/dev/full gives a real ENOSPC); NUL characters in names, queries and sample text.
// Every hostile input is made here, in a temp folder.
import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RpcError, type CallInput, type CallName, type CallOutput, type ImportStatus } from "../../electron/contract.js";
import { cmdDataset } from "../../electron/cli/dataset.js";
import { scanFile } from "../../electron/datasets/scan.js";
import { asRpcError, createDispatcher } from "../../electron/rpc.js";
import { createAppServices, type AppServices } from "../../electron/services/app.js";
import { DatasetService } from "../../electron/services/datasets.js";
import { DatasetRepo, MAX_SEARCH_CHARS, sampleSnippet } from "../../electron/store/datasets.js";
import { openDatabase, type Db } from "../../electron/store/db.js";
import { describeError } from "../../renderer/src/errors.js";

const OUT = join(import.meta.dirname, "../../out/electron");
const dirs: string[] = [];
const running: AppServices[] = [];
const dbs: Db[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "moe-ds-limits-"));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const s of running.splice(0)) await s.dispose();
  for (const db of dbs.splice(0)) db.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const MiB = 1024 * 1024;
const pair = (q: string, a: string) => ({ messages: [{ role: "user", content: q }, { role: "assistant", content: a }] });
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

async function app(dataDir = tempDir()) {
  const s = await createAppServices({ dataDir, emit: () => undefined, transport: "ws" });
  running.push(s);
  const dispatch = createDispatcher(s.handlers, { validateOutput: true });
  const call = <N extends CallName>(name: N, input: CallInput<N>) => dispatch(name, input) as Promise<CallOutput<N>>;
  return { s, call, dataDir };
}
type App = Awaited<ReturnType<typeof app>>;

async function scanned(a: App, importId: string): Promise<ImportStatus> {
  for (;;) {
    const st = await a.call("datasets.import.status", { importId });
    if (st.state !== "scanning") return st;
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function importRows(a: App, rows: unknown[]) {
  const file = join(tempDir(), "d.jsonl");
  writeFileSync(file, jsonl(rows));
  const { importId } = await a.call("datasets.import.scan", { source: { kind: "path", path: file } });
  expect((await scanned(a, importId)).state).toBe("ready");
  return a.call("datasets.import.commit", { importId });
}

/** Every row of every table: "the database's content". */
function dump(db: Db): string {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>;
  return JSON.stringify(tables.map((t) => [t.name, db.prepare(`SELECT * FROM "${t.name}"`).all()]));
}

/**
 * Runs `body` (an async ES module body with OUT's modules importable as `${OUT}/...`) in a fresh node process and
 * returns what it printed as JSON on its last line, plus the peak RSS of that process. A memory bound measured in
 * the test runner itself would drown in vitest's own allocations.
 */
function child(body: string, timeoutMs = 60_000): Record<string, unknown> {
  const file = join(tempDir(), "child.mjs");
  writeFileSync(file, `const OUT = ${JSON.stringify(OUT)};\n${body}\n`);
  const out = execFileSync(process.execPath, [file], { encoding: "utf8", timeout: timeoutMs });
  return JSON.parse(out.trim().split("\n").pop()!) as Record<string, unknown>;
}

describe("search", () => {
  it("a 500-character query over a 2 MB repetitive sample stays small and fast (was GBs: one phrase token per trigram)", () => {
    const dir = tempDir();
    const dbFile = join(dir, "s.db");
    const db = openDatabase(dbFile);
    const repo = new DatasetRepo(db);
    const id = repo.createDataset({ name: "big", sourceFile: null });
    const big = "a".repeat(2_000_000);
    db.transaction(() => {
      const insert = repo.inserter(id);
      insert({ format: "messages", messages: pair("q", big).messages as never, sourceLine: 1 });
      insert({ format: "messages", messages: pair("small", "b".repeat(600)).messages as never, sourceLine: 2 });
    })();
    db.close();
    const r = child(`
      const { openDatabase } = await import(OUT + "/store/db.js");
      const { DatasetRepo } = await import(OUT + "/store/datasets.js");
      const db = openDatabase(${JSON.stringify(dbFile)});
      const repo = new DatasetRepo(db);
      const id = repo.list()[0].id;
      repo.listSamples({ datasetId: id, offset: 0, limit: 10, search: "warm up" });
      const before = process.memoryUsage().rss;
      const t = performance.now();
      const hits = repo.listSamples({ datasetId: id, offset: 0, limit: 10, search: "a".repeat(500) });
      const misses = repo.listSamples({ datasetId: id, offset: 0, limit: 10, search: "a".repeat(499) + "b" });
      console.log(JSON.stringify({ ms: performance.now() - t, growMiB: (process.resourceUsage().maxRSS * 1024 - before) / 1048576,
        hits: hits.items.map((i) => i.index), snippet: hits.items[0].snippet.length, misses: misses.total }));
    `);
    expect(r.hits).toEqual([0]);
    expect(r.misses).toBe(0);
    expect(r.snippet).toBeLessThanOrEqual(122);
    // before the fix: > 1 GB and minutes; now a few MB for one copy of the sample's text
    expect(r.growMiB).toBeLessThan(48);
    expect(r.ms).toBeLessThan(10_000);
  });

  it("FTS5 syntax in a query is plain text: quotes, operators, NEAR, *, ^, column filters, parentheses", async () => {
    const a = await app();
    const texts = ['she said "hi" to me', "cats AND dogs", "a OR b", "NOT this", "NEAR(x y)", "prefix* match", "^start of it", "content: colon", "(paren) group", "minus -sign", "plain words"];
    const d = await importRows(a, texts.map((t) => pair(t, "ok")));
    for (const [i, t] of texts.entries()) {
      const r = await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 50, search: t });
      expect(r.items.map((x) => x.index), t).toEqual([i]);
      expect(r.items[0].snippet).toContain(t);
    }
    // fragments with syntax characters in the middle of the text match as substrings, case-insensitively
    expect((await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 50, search: '"HI" TO' })).items.map((x) => x.index)).toEqual([0]);
    expect((await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 50, search: '"' })).total).toBe(1);
    expect((await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 50, search: "* m" })).items.map((x) => x.index)).toEqual([5]);
    // a long query: its trigrams pick candidates, the whole query must still be in the text
    expect((await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 50, search: "cats OR b" })).total).toBe(0);
    const rep = await importRows(a, [pair("aaaa and more", "ok"), pair(`x ${"a".repeat(12)} y`, "ok")]);
    expect((await a.call("samples.list", { datasetId: rep.id, offset: 0, limit: 50, search: "a".repeat(10) })).items.map((x) => x.index)).toEqual([1]);
    expect((await a.call("samples.list", { datasetId: rep.id, offset: 0, limit: 50, search: "AAAA AND MORE" })).items.map((x) => x.index)).toEqual([0]);
  });

  it("a query over the limit is refused with the limit named; a NUL in it names the field", async () => {
    const a = await app();
    const d = await importRows(a, [pair("x", "y")]);
    await expect(a.call("samples.list", { datasetId: d.id, offset: 0, limit: 1, search: "q".repeat(MAX_SEARCH_CHARS + 1) })).rejects.toMatchObject({
      code: "invalid_input",
      message: expect.stringMatching(/search: .*500/),
    });
    await expect(a.call("samples.list", { datasetId: d.id, offset: 0, limit: 1, search: "ab\0c" })).rejects.toMatchObject({
      code: "invalid_input",
      message: "samples.list: search: must not contain a NUL character (\\u0000)",
    });
    // the store refuses it too, for callers that do not come through the contract (counted in characters)
    expect(() => new DatasetRepo(a.s.db).listSamples({ datasetId: d.id, offset: 0, limit: 1, search: "鱼".repeat(MAX_SEARCH_CHARS + 1) })).toThrow(
      `search: the query is ${MAX_SEARCH_CHARS + 1} characters long; at most ${MAX_SEARCH_CHARS} are allowed`,
    );
  });

  it("a snippet is cut around the match without copying the whole text (and never splits an emoji)", () => {
    const text = `${"前".repeat(100_000)} needle 😀 ${"后".repeat(100_000)}`;
    const s = sampleSnippet(text, "NEEDLE", 40);
    expect(s).toContain("needle 😀");
    expect(s.startsWith("…") && s.endsWith("…")).toBe(true);
    expect(s.length).toBeLessThanOrEqual(42);
    expect(sampleSnippet("😀".repeat(3000) + "x", "x", 20)).not.toMatch(/^…?[\udc00-\udfff]/);
  });
});

describe("scan limits", () => {
  it("a device (/dev/zero never ends) is refused before anything is read", async () => {
    if (!existsSync("/dev/zero")) return;
    await expect(scanFile("/dev/zero")).rejects.toThrow("/dev/zero is not a regular file (a character device): only files can be imported");
    const a = await app();
    const { importId } = await a.call("datasets.import.scan", { source: { kind: "path", path: "/dev/zero" } });
    expect(await scanned(a, importId)).toMatchObject({ state: "failed", bytesRead: 0, error: expect.stringContaining("not a regular file") });
  });

  it("a file that grows while it is scanned: the scan reads only the size it saw, then says the file changed", async () => {
    const file = join(tempDir(), "growing.jsonl");
    const line = `${JSON.stringify(pair("q", "a".repeat(1000)))}\n`;
    writeFileSync(file, line.repeat(3000)); // ~3 MB: three chunks
    const size = 3000 * Buffer.byteLength(line);
    let maxRead = 0;
    await expect(
      scanFile(file, {
        progressIntervalMs: 0,
        onProgress: (p) => {
          maxRead = Math.max(maxRead, p.bytesRead);
          appendFileSync(file, line.repeat(2000)); // grows faster than it is read
        },
      }),
    ).rejects.toThrow(`${file}: the file changed while it was read (${size} bytes at the start,`);
    expect(maxRead).toBe(size);
  });

  it("a file over the size limit fails before it is read, naming the limit", async () => {
    const file = join(tempDir(), "big.jsonl");
    writeFileSync(file, jsonl(Array.from({ length: 3000 }, (_, i) => pair(`q${i}`, "a".repeat(1000)))));
    await expect(scanFile(file, { limits: { maxFileBytes: MiB } })).rejects.toThrow(/big\.jsonl is \d+ bytes, more than the limit of 1 MiB for one import$/);
  });

  it("an over-long line is that line's error (number and limit), the rest still imports, memory stays near the limit", () => {
    const dir = tempDir();
    const file = join(dir, "long.jsonl");
    const long = JSON.stringify(pair("q", "x".repeat(64 * MiB)));
    writeFileSync(file, `${JSON.stringify(pair("a", "b"))}\n${long}\n${JSON.stringify(pair("c", "d"))}\n`);
    const r = child(`
      const { openDatabase } = await import(OUT + "/store/db.js");
      const { DatasetService } = await import(OUT + "/services/datasets.js");
      const db = openDatabase(${JSON.stringify(join(dir, "d.db"))});
      const service = new DatasetService(db, ${JSON.stringify(dir)}, () => undefined, { importLimits: { maxRecordBytes: ${MiB} } });
      const before = process.memoryUsage().rss;
      const { importId } = service.scan({ kind: "path", path: ${JSON.stringify(file)} });
      const st = await service.scanned(importId);
      const scanGrow = (process.resourceUsage().maxRSS * 1024 - before) / 1048576;
      const d = await service.commit(importId);
      console.log(JSON.stringify({ scanGrow, importGrow: (process.resourceUsage().maxRSS * 1024 - before) / 1048576,
        rejected: st.report.rejected, valid: st.report.valid, imported: d.sampleCount }));
      await service.dispose();
      db.close();
    `);
    expect(r.rejected).toEqual([{ line: 2, reason: "not_json", error: "not JSON: line 2 is longer than the limit of 1 MiB for one sample (skipped)" }]);
    expect(r.valid).toBe(2);
    expect(r.imported).toBe(2);
    // the 64 MiB line is never held: the scan grows by a few chunks (1 MiB each), the whole import (with its
    // worker thread and SQLite connection) stays far below one copy of the line (it used to be ~20 copies)
    expect(r.scanGrow).toBeLessThan(8);
    expect(r.importGrow).toBeLessThan(40);
  });

  it("a bad line's error stays a short sentence whatever the line quotes (a 1 MB key, a 1 MB bad value)", async () => {
    const file = join(tempDir(), "keys.jsonl");
    const key = "k".repeat(MiB);
    writeFileSync(file, `${JSON.stringify({ [key]: 1 })}\n${JSON.stringify({ messages: key })}\n{"messages": [{"role": "${key}"}]}\n${key}\n`);
    const r = await scanFile(file);
    expect(r.rejected.map((x) => x.line)).toEqual([1, 2, 3, 4]);
    for (const x of r.rejected) expect(x.error.length).toBeLessThanOrEqual(300);
    expect(r.rejected[0].error).toBe(`unknown shape: expected "messages", "conversations" or "instruction"/"output"; the object has "${"k".repeat(39)}…`);
  });

  it("a JSON array element over the limit is its line's error too", async () => {
    const file = join(tempDir(), "a.json");
    writeFileSync(file, `[\n${JSON.stringify(pair("a", "b"))},\n${JSON.stringify(pair("q", "y".repeat(3 * MiB)))},\n${JSON.stringify(pair("c", "d"))}\n]`);
    const r = await scanFile(file, { limits: { maxRecordBytes: MiB } });
    expect(r.valid).toBe(2);
    expect(r.rejected).toEqual([{ line: 3, reason: "not_json", error: "not JSON: the element on line 3 is longer than the limit of 1 MiB for one sample (skipped)" }]);
  });

  it("leading blank lines are counted, not kept: line numbers stay right after 1.5 million of them", async () => {
    const file = join(tempDir(), "blanks.jsonl");
    writeFileSync(file, `${"\n".repeat(1_500_000)}{"not": "a sample"}\n`);
    const r = await scanFile(file);
    expect(r.rejected.map((x) => x.line)).toEqual([1_500_001]);
  });

  it("an empty file fails with a reason: nothing, only blank lines, an empty array", async () => {
    const dir = tempDir();
    const cases: Array<[string, string, string]> = [
      ["empty.jsonl", "", "is empty: no samples"],
      ["blank.jsonl", "\n \r\n\t\n", "is empty (only blank lines): no samples"],
      ["bom.jsonl", "\ufeff\n", "is empty (only blank lines): no samples"],
      ["array.json", " [ \n ] \n", "is an empty JSON array: no samples"],
    ];
    for (const [name, text, why] of cases) {
      writeFileSync(join(dir, name), text);
      await expect(scanFile(join(dir, name)), name).rejects.toThrow(`${join(dir, name)} ${why}`);
    }
    const a = await app();
    const { importId } = await a.call("datasets.import.scan", { source: { kind: "path", path: join(dir, "empty.jsonl") } });
    expect(await scanned(a, importId)).toMatchObject({ state: "failed", error: `${join(dir, "empty.jsonl")} is empty: no samples` });
    // an upload's error names the file the user chose, not the server's temp file
    const { uploadId } = await a.call("datasets.upload.begin", { fileName: "mine.jsonl", size: 0 });
    const up = await a.call("datasets.import.scan", { source: { kind: "upload", uploadId } });
    expect(await scanned(a, up.importId)).toMatchObject({ state: "failed", error: "mine.jsonl is empty: no samples" });
  });
});

describe("a full disk", () => {
  const FULL = /^disk full: .*database or disk is full.* \(free \d+ MB in .+\)$/;

  it("an import commit that fills the database (SQLITE_FULL) says disk full with the free space, and leaves nothing", async () => {
    const dir = tempDir();
    const db = openDatabase(":memory:"); // the commit runs on this connection (a file database uses a worker's own)
    dbs.push(db);
    const service = new DatasetService(db, dir, () => undefined);
    const file = join(dir, "d.jsonl");
    writeFileSync(file, jsonl(Array.from({ length: 2000 }, (_, i) => pair(`question ${i}`, `answer ${i} ${"z".repeat(200)}`))));
    const before = dump(db);
    db.pragma(`max_page_count = ${(db.pragma("page_count", { simple: true }) as number) + 20}`);
    const { importId } = service.scan({ kind: "path", path: file });
    expect((await service.scanned(importId)).state).toBe("ready");
    const e = await service.commit(importId).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RpcError);
    expect(e).toMatchObject({ code: "disk_full", message: expect.stringMatching(FULL) });
    expect((e as Error).message).toContain(`in ${dir})`);
    expect(service.status(importId)).toMatchObject({ state: "failed", error: (e as Error).message });
    expect(dump(db)).toBe(before);
    await service.dispose();
  });

  it("any call that hits SQLITE_FULL on the app's connection answers disk_full, naming the data folder's free space", async () => {
    const a = await app();
    const d = await importRows(a, [pair("x", "y")]);
    a.s.db.pragma(`max_page_count = ${a.s.db.pragma("page_count", { simple: true }) as number}`);
    const e = await a.call("samples.add", { datasetId: d.id, messages: pair("big", "w".repeat(200_000)).messages as never }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "disk_full", message: expect.stringMatching(FULL) });
    expect((e as Error).message).toContain(`in ${a.dataDir})`);
    expect(describeError("disk_full", (e as Error).message)).toEqual({ key: "error.diskFull", detail: (e as Error).message });
  });

  it("ENOSPC from fs (an upload written to /dev/full) is disk_full too, and asRpcError maps it wherever it comes from", async () => {
    if (!existsSync("/dev/full")) return;
    const a = await app();
    const { uploadId } = await a.call("datasets.upload.begin", { fileName: "x.jsonl", size: 10 });
    const part = join(a.dataDir, "uploads", `${uploadId}.upload`);
    unlinkSync(part);
    symlinkSync("/dev/full", part);
    await expect(a.call("datasets.upload.chunk", { uploadId, offset: 0, data: Buffer.from("0123456789").toString("base64") })).rejects.toMatchObject({
      code: "disk_full",
      message: expect.stringMatching(new RegExp(`^disk full: cannot store the upload of x\\.jsonl \\(ENOSPC.*\\) \\(free \\d+ MB in ${join(a.dataDir, "uploads").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\)$`)),
    });
    let raw: unknown;
    try {
      writeFileSync("/dev/full", "x");
    } catch (e) {
      raw = e;
    }
    expect(asRpcError(raw)).toMatchObject({ code: "disk_full", message: expect.stringMatching(/^disk full: ENOSPC.*/) });
    expect(asRpcError(Object.assign(new Error("quota"), { code: "EDQUOT" })).code).toBe("disk_full");
  });
});

describe("a sample the import could not read again", () => {
  it("is refused by the editor: over the line limit as a jsonl line (the limit named)", async () => {
    const dir = tempDir();
    const db = openDatabase(join(dir, "d.db"));
    dbs.push(db);
    const service = new DatasetService(db, dir, () => undefined, { importLimits: { maxRecordBytes: 1024 } });
    const id = service.repo.createDataset({ name: "d", sourceFile: null });
    expect(() => service.addSample(id, pair("q", "x".repeat(2000)).messages as never)).toThrow(
      /^messages: the sample is 20\d\d bytes as a jsonl line, more than the limit of 1 KiB for one sample$/,
    );
    expect(service.addSample(id, pair("q", "x".repeat(900)).messages as never).messageCount).toBe(2);
  });
});

describe("NUL characters", () => {
  it("a name from the CLI (no contract in between) is refused by the service, naming the field", async () => {
    const dir = tempDir();
    const file = join(dir, "d.jsonl");
    writeFileSync(file, jsonl([pair("q", "a")]));
    await expect(cmdDataset(["import", file, "--db", join(dir, "x.db"), "--name", "bad\0name"], () => undefined, () => undefined)).rejects.toThrow(
      "name: must not contain a NUL character (\\u0000)",
    );
  });

  it("are refused in names, paths and sample text with the field named; an imported line with one is that line's error", async () => {
    const a = await app();
    const d = await importRows(a, [pair("x", "y")]);
    await expect(a.call("datasets.rename", { id: d.id, name: "a\0b" })).rejects.toMatchObject({ code: "invalid_input", message: "datasets.rename: name: must not contain a NUL character (\\u0000)" });
    await expect(a.call("samples.add", { datasetId: d.id, messages: pair("q", "a\0").messages as never })).rejects.toMatchObject({
      code: "invalid_input",
      message: "samples.add: messages.1.content: must not contain a NUL character (\\u0000)",
    });
    await expect(a.call("datasets.import.scan", { source: { kind: "path", path: "/tmp/a\0b.jsonl" } })).rejects.toMatchObject({ message: expect.stringContaining("source.path: must not contain a NUL") });
    await expect(a.call("datasets.upload.begin", { fileName: "a\0.jsonl", size: 1 })).rejects.toMatchObject({ message: expect.stringContaining("fileName: must not contain a NUL") });
    const file = join(tempDir(), "nul.jsonl");
    writeFileSync(
      file,
      [
        JSON.stringify(pair("ok", "fine")),
        JSON.stringify(pair("q", "with \u0000 nul")),
        JSON.stringify({ conversations: [{ from: "human", value: "\u0000" }, { from: "gpt", value: "x" }] }),
        JSON.stringify({ instruction: "i", output: "o\u0000" }),
        JSON.stringify({ system: "s\u0000", conversations: [{ from: "human", value: "h" }, { from: "gpt", value: "x" }] }),
        `{"messages": [{"role": "user", "content": "raw \u0000 byte"}]}`,
      ].join("\n"),
    );
    const r = await scanFile(file);
    expect(r.valid).toBe(1);
    expect(r.rejected.map((x) => [x.line, x.reason, x.error])).toEqual([
      [2, "unknown_shape", "unknown shape: messages[1].content contains a NUL character (\\u0000) at character 5; sample text may not hold one"],
      [3, "unknown_shape", "unknown shape: conversations[0].value contains a NUL character (\\u0000) at character 0; sample text may not hold one"],
      [4, "unknown_shape", 'unknown shape: "output" contains a NUL character (\\u0000) at character 1; sample text may not hold one'],
      [5, "unknown_shape", 'unknown shape: "system" contains a NUL character (\\u0000) at character 1; sample text may not hold one'],
      [6, "not_json", expect.stringMatching(/^not JSON: /)],
    ]);
  });
});
