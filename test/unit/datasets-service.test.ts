// Datasets through the contract, as the renderer uses them: createAppServices + the dispatcher with output
// validation, real SQLite files in temp folders. Import (scan → report → commit / cancel, browser uploads),
// the samples window (search, filters, sort), edits with validation and undo (also after a restart), dedupe,
// seeded split, export round trip, token counts against transformers' goldens, migration from v2, and the
// contract refusing malformed payloads.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { UPLOAD_CHUNK_BYTES, type CallInput, type CallName, type CallOutput, type EventName, type ImportStatus, type Job, type SampleMessage } from "../../electron/contract.js";
import { createDispatcher } from "../../electron/rpc.js";
import { createAppServices, type AppServices } from "../../electron/services/app.js";
import { databaseFile } from "../../electron/services/paths.js";
import { DatasetRepo } from "../../electron/store/datasets.js";
import { openDatabase, SCHEMA_VERSION, type Db } from "../../electron/store/db.js";

const FIX = join(import.meta.dirname, "../fixtures/datasets");
const MODELS = join(import.meta.dirname, "../fixtures/models");
const dirs: string[] = [];
const running: AppServices[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "moe-ds-service-"));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const s of running.splice(0)) await s.dispose();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function app(dataDir = tempDir()) {
  const events: Array<{ name: EventName; payload: unknown }> = [];
  const s = await createAppServices({ dataDir, emit: (name, payload) => events.push({ name, payload }), transport: "ws" });
  running.push(s);
  const dispatch = createDispatcher(s.handlers, { validateOutput: true });
  const call = <N extends CallName>(name: N, input: CallInput<N>) => dispatch(name, input) as Promise<CallOutput<N>>;
  return { s, call, events, dataDir };
}
type App = Awaited<ReturnType<typeof app>>;

/** The jobs.job events of one job (or of every job of a kind), oldest first. */
function jobEvents(a: App, pred: (j: Job) => boolean): Job[] {
  return a.events.filter((e) => e.name === "jobs.job" && pred(e.payload as Job)).map((e) => e.payload as Job);
}
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
}

async function scanned(a: App, importId: string): Promise<ImportStatus> {
  for (;;) {
    const st = await a.call("datasets.import.status", { importId });
    if (st.state !== "scanning") return st;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A dataset "many" of 1500 two-turn samples (Chinese and English), written straight into the app's database. */
function manySamples(a: App): string {
  const repo = new DatasetRepo(a.s.db);
  const id = repo.createDataset({ name: "many", sourceFile: null });
  const insert = repo.inserter(id);
  a.s.db.transaction(() => {
    for (let i = 0; i < 1500; i++) insert({ format: "messages", messages: turn(`问题 ${i}: ${"why is the sky blue? ".repeat(10)}`, `answer ${i} ${"because of scattering. ".repeat(10)}`), sourceLine: null });
  })();
  return id;
}

async function importFile(a: App, path: string, name?: string) {
  const { importId } = await a.call("datasets.import.scan", { source: { kind: "path", path } });
  const st = await scanned(a, importId);
  expect(st.state).toBe("ready");
  return a.call("datasets.import.commit", { importId, ...(name ? { name } : {}) });
}

/** Every row of every table, in a stable order: "the database's content". */
/** Every table's rows; `data` leaves out the job system's activity record (jobs), which tests check by jobs.list. */
function dump(db: Db, which: "all" | "data" = "all"): string {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>;
  return JSON.stringify(tables.filter((t) => which === "all" || t.name !== "jobs").map((t) => [t.name, db.prepare(`SELECT * FROM "${t.name}"`).all()]));
}

async function allSamples(a: App, datasetId: string) {
  const { items } = await a.call("samples.list", { datasetId, offset: 0, limit: 1000 });
  return Promise.all(items.map((r) => a.call("samples.get", { id: r.id })));
}

const turn = (user: string, assistant: string): SampleMessage[] => [
  { role: "user", content: user },
  { role: "assistant", content: assistant },
];

function jsonl(samples: SampleMessage[][]): string {
  return samples.map((m) => JSON.stringify({ messages: m })).join("\n") + "\n";
}

describe("import", () => {
  it("imports each format; the list shows name, count, formats, source file and the rejected count", async () => {
    const a = await app();
    for (const f of ["messages.jsonl", "conversations.jsonl", "conversations-array.json", "instruction.jsonl", "chinese-emoji.jsonl", "bom-crlf.jsonl", "mixed-invalid.jsonl"]) {
      await importFile(a, join(FIX, f));
    }
    const list = await a.call("datasets.list", {});
    const by = Object.fromEntries(list.map((d) => [d.name, d]));
    expect(by["messages"]).toMatchObject({ sampleCount: 3, formats: { messages: 3, conversations: 0, instruction: 0 }, rejectedCount: 0, sourceFile: join(FIX, "messages.jsonl") });
    expect(by["conversations-array"]).toMatchObject({ sampleCount: 3, formats: { conversations: 3 }, rejectedCount: 1 });
    expect(by["chinese-emoji"]).toMatchObject({ sampleCount: 3, formats: { messages: 1, conversations: 1, instruction: 1 } });
    expect(by["mixed-invalid"]).toMatchObject({ sampleCount: 3, rejectedCount: 10, problemCount: 0, undo: null });
    const detail = await a.call("datasets.get", { id: by["mixed-invalid"].id });
    expect(detail.rejected.map((r) => r.line)).toEqual([2, 3, 5, 6, 7, 9, 10, 11, 12, 13]);
    const zh = await allSamples(a, by["chinese-emoji"].id);
    expect(zh[0].messages).toEqual([
      { role: "system", content: "你是一个乐于助人的助手。" },
      { role: "user", content: "你好，世界！🌍" },
      { role: "assistant", content: "你好！有什么可以帮你的吗？😊" },
    ]);
    expect(zh.map((s) => [s.index, s.format, s.sourceLine])).toEqual([[0, "messages", 1], [1, "conversations", 2], [2, "instruction", 3]]);
    // each import was a scan job (progress in bytes, figures) and an import job (samples), both on the job system
    const scans = jobEvents(a, (j) => j.kind === "scan");
    expect(scans.filter((j) => j.status === "done")).toHaveLength(7);
    expect(scans.find((j) => j.status === "done" && j.title === "Check mixed-invalid.jsonl")).toMatchObject({
      label: { key: "scan", args: { name: "mixed-invalid.jsonl" } },
      figures: { records: 13, valid: 3, rejected: 10 },
      progress: { unit: "bytes", done: readFileSync(join(FIX, "mixed-invalid.jsonl")).length },
    });
    const imports = await a.call("jobs.list", { kind: "import" });
    expect(imports.map((j) => [j.status, (j.result as { name: string }).name]).sort()).toEqual(list.map((d) => ["done", d.name]).sort());
  });

  it("the report first, then valid rows or nothing; a file with no valid line cannot be committed", async () => {
    const a = await app();
    const before = dump(a.s.db);
    const beforeData = dump(a.s.db, "data");
    const { importId, fileName, totalBytes } = await a.call("datasets.import.scan", { source: { kind: "path", path: join(FIX, "mixed-invalid.jsonl") } });
    expect(fileName).toBe("mixed-invalid.jsonl");
    expect(totalBytes).toBe(readFileSync(join(FIX, "mixed-invalid.jsonl")).length);
    const st = await scanned(a, importId);
    expect(st.report).toMatchObject({ container: "jsonl", records: 13, valid: 3, rejectedCount: 10, formats: { messages: 1, conversations: 1, instruction: 1 } });
    expect(st.report!.rejected[0]).toEqual({ line: 2, reason: "not_json", error: expect.stringMatching(/^not JSON: /) });
    // "nothing": cancel the ready report; no trace of it is left, not even its job
    await a.call("datasets.import.cancel", { importId });
    // discarded: the scan job is gone with it
    await expect(a.call("datasets.import.status", { importId })).rejects.toMatchObject({ code: "not_found" });
    await expect(a.call("datasets.import.commit", { importId })).rejects.toMatchObject({ code: "not_found" });
    expect((await a.call("jobs.list", {})).map((j) => j.id)).not.toContain(importId);
    expect(dump(a.s.db)).toBe(before);

    const dir = tempDir();
    writeFileSync(join(dir, "bad.jsonl"), "not json\n{}\n");
    const bad = await a.call("datasets.import.scan", { source: { kind: "path", path: join(dir, "bad.jsonl") } });
    expect((await scanned(a, bad.importId)).report).toMatchObject({ valid: 0, rejectedCount: 2 });
    await expect(a.call("datasets.import.commit", { importId: bad.importId })).rejects.toMatchObject({ code: "invalid_input", message: expect.stringContaining("nothing to import") });
    const missing = await a.call("datasets.import.scan", { source: { kind: "path", path: join(dir, "missing.jsonl") } });
    expect(await scanned(a, missing.importId)).toMatchObject({ state: "failed", error: `${join(dir, "missing.jsonl")}: file not found` });
    await expect(a.call("datasets.import.status", { importId: "nope" })).rejects.toMatchObject({ code: "not_found" });
    // the two scans above stay in the activity list (done, failed) until discarded; no data was written
    expect(dump(a.s.db, "data")).toBe(beforeData);
  });

  it("cancelling mid-scan or mid-commit leaves the database content exactly as it was, and the upload's temp file gone", async () => {
    const a = await app();
    await importFile(a, join(FIX, "messages.jsonl")); // something already there
    const dir = tempDir();
    const file = join(dir, "big.jsonl");
    writeFileSync(file, jsonl([turn("q".repeat(400), "a".repeat(400))]).repeat(30_000)); // ~25 MB
    const before = dump(a.s.db);
    const beforeData = dump(a.s.db, "data");
    const { importId } = await a.call("datasets.import.scan", { source: { kind: "path", path: file } });
    // status reads the job as it is (jobs.job events are coalesced to a few a second)
    for (let st = await a.call("datasets.import.status", { importId }); st.bytesRead === 0; st = await a.call("datasets.import.status", { importId })) {
      expect(st.state).toBe("scanning");
      await new Promise((r) => setTimeout(r, 1));
    }
    expect((await a.call("datasets.import.status", { importId })).state).toBe("scanning");
    await a.call("datasets.import.cancel", { importId });
    const last = jobEvents(a, (j) => j.id === importId).at(-1)!;
    expect(last.status).toBe("cancelled");
    expect(last.progress!.done).toBeLessThan(last.progress!.total);
    expect(a.events.at(-1)).toEqual({ name: "jobs.removed", payload: { id: importId } });
    await expect(a.call("datasets.import.status", { importId })).rejects.toMatchObject({ code: "not_found" });
    expect(dump(a.s.db)).toBe(before);

    // cancelled while committing (on the worker thread): rolled back, the commit call fails with "busy"
    const again = await a.call("datasets.import.scan", { source: { kind: "path", path: file } });
    expect((await scanned(a, again.importId)).state).toBe("ready");
    const committing = a.call("datasets.import.commit", { importId: again.importId }).catch((e) => e);
    for (;;) {
      const st = await a.call("datasets.import.status", { importId: again.importId });
      if (st.state === "committing" && st.records > 0) break;
      expect(st.state).toMatch(/^(ready|committing)$/);
      await new Promise((r) => setTimeout(r, 1));
    }
    // the main thread answers while the worker writes
    expect((await a.call("datasets.list", {})).map((d) => d.name)).toEqual(["messages"]);
    await a.call("datasets.import.cancel", { importId: again.importId });
    expect(await committing).toMatchObject({ code: "busy", message: "the import was cancelled" });
    // the import job stays listed as cancelled (the activity panel shows it); the scan it committed is discarded
    expect((await a.call("jobs.list", { kind: "import" })).filter((j) => j.subject === again.importId)).toMatchObject([{ status: "cancelled", result: null }]);
    await expect(a.call("datasets.import.status", { importId: again.importId })).rejects.toMatchObject({ code: "not_found" });
    expect(dump(a.s.db, "data")).toBe(beforeData);

    // the same from a browser upload
    const bytes = readFileSync(file);
    const { uploadId } = await a.call("datasets.upload.begin", { fileName: "big.jsonl", size: bytes.length });
    for (let off = 0; off < bytes.length; off += UPLOAD_CHUNK_BYTES) {
      await a.call("datasets.upload.chunk", { uploadId, offset: off, data: bytes.subarray(off, off + UPLOAD_CHUNK_BYTES).toString("base64") });
    }
    expect(readdirSync(join(a.dataDir, "uploads"))).toHaveLength(1);
    const up = await a.call("datasets.import.scan", { source: { kind: "upload", uploadId } });
    await a.call("datasets.import.cancel", { importId: up.importId });
    expect(readdirSync(join(a.dataDir, "uploads"))).toHaveLength(0);
    expect(dump(a.s.db, "data")).toBe(beforeData);
  });

  it("a browser upload in chunks imports like the file; chunks must come in order and fit the size", async () => {
    const dataDir = tempDir();
    mkdirSync(join(dataDir, "uploads"));
    writeFileSync(join(dataDir, "uploads", "left-by-a-crash.upload"), "x");
    const a = await app(dataDir);
    expect(readdirSync(join(dataDir, "uploads"))).toEqual([]); // the app clears what a crashed run left
    const bytes = readFileSync(join(FIX, "chinese-emoji.jsonl"));
    const { uploadId } = await a.call("datasets.upload.begin", { fileName: "chinese-emoji.jsonl", size: bytes.length });
    // cut inside a multi-byte character on purpose: the upload is bytes, not text
    const cuts = [0, 7, 100, bytes.length];
    await expect(a.call("datasets.upload.chunk", { uploadId, offset: 7, data: "AAAA" })).rejects.toMatchObject({ code: "invalid_input", message: expect.stringContaining("expected 0") });
    const early = await a.call("datasets.import.scan", { source: { kind: "upload", uploadId } }).catch((e) => e);
    expect(early).toMatchObject({ code: "busy", message: expect.stringContaining("incomplete") });
    for (let i = 0; i + 1 < cuts.length; i++) {
      const r = await a.call("datasets.upload.chunk", { uploadId, offset: cuts[i], data: bytes.subarray(cuts[i], cuts[i + 1]).toString("base64") });
      expect(r.received).toBe(cuts[i + 1]);
    }
    await expect(a.call("datasets.upload.chunk", { uploadId, offset: bytes.length, data: "AAAA" })).rejects.toMatchObject({ code: "invalid_input", message: expect.stringContaining("past the announced size") });
    const { importId } = await a.call("datasets.import.scan", { source: { kind: "upload", uploadId } });
    await scanned(a, importId);
    const d = await a.call("datasets.import.commit", { importId, name: "从浏览器" });
    expect(d).toMatchObject({ name: "从浏览器", sampleCount: 3, sourceFile: "chinese-emoji.jsonl" });
    expect(readdirSync(join(a.dataDir, "uploads"))).toHaveLength(0);
    const fromFile = await importFile(a, join(FIX, "chinese-emoji.jsonl"));
    expect((await allSamples(a, d.id)).map((s) => s.messages)).toEqual((await allSamples(a, fromFile.id)).map((s) => s.messages));
    await expect(a.call("datasets.upload.abort", { uploadId })).rejects.toMatchObject({ code: "not_found" });
  });
});

describe("export", () => {
  it("export then import gives the same samples (file and browser pieces are the same bytes)", async () => {
    const a = await app();
    const dir = tempDir();
    const src = join(dir, "all.jsonl");
    const fixtureText = ["messages.jsonl", "conversations.jsonl", "instruction.jsonl", "chinese-emoji.jsonl", "bom-crlf.jsonl"]
      .map((f) => readFileSync(join(FIX, f), "utf8").replace(/^\ufeff/, "").replace(/\r\n/g, "\n").replace(/\n?$/, "\n"))
      .join("");
    writeFileSync(src, fixtureText);
    const d = await importFile(a, src);
    expect(d.sampleCount).toBe(16);
    const out = join(dir, "out.jsonl");
    const r = await a.call("datasets.export", { id: d.id, path: out });
    expect(r).toEqual({ path: out, samples: 16, bytes: readFileSync(out).length });
    expect(readdirSync(dir).sort()).toEqual(["all.jsonl", "out.jsonl"]); // no temp file left
    const again = await importFile(a, out);
    expect(again.formats).toEqual({ messages: 16, conversations: 0, instruction: 0 });
    expect((await allSamples(a, again.id)).map((s) => s.messages)).toEqual((await allSamples(a, d.id)).map((s) => s.messages));
    // the browser's pieces
    let text = "";
    let cursor: string | null = null;
    do {
      const c: CallOutput<"datasets.exportChunk"> = await a.call("datasets.exportChunk", { id: d.id, cursor });
      text += c.data;
      cursor = c.nextCursor;
      expect(c.fileName).toBe("all.jsonl");
    } while (cursor !== null);
    expect(text).toBe(readFileSync(out, "utf8"));
    // pieces of at most maxChars, whole lines, the same text
    const repo = new DatasetRepo(a.s.db);
    let after = -1;
    let pieces = "";
    let n = 0;
    for (;;) {
      const p = repo.exportPage(d.id, after, 300);
      expect(p.text.length <= 300 || p.text.split("\n").length === 2).toBe(true);
      expect(p.text === "" || p.text.endsWith("\n")).toBe(true);
      pieces += p.text;
      after = p.lastPosition;
      n++;
      if (p.done) break;
    }
    expect(n).toBeGreaterThan(5);
    expect(pieces).toBe(text);
    await expect(a.call("datasets.export", { id: d.id, path: join(dir, "no/such/dir/x.jsonl") })).rejects.toMatchObject({ code: "invalid_input" });
  });
});

describe("samples", () => {
  async function dataset(a: App, samples: SampleMessage[][]) {
    const dir = tempDir();
    writeFileSync(join(dir, "d.jsonl"), jsonl(samples));
    return importFile(a, join(dir, "d.jsonl"));
  }

  it("a window with total; search (index for 3+ characters, Chinese too; a scan for shorter); sort", async () => {
    const a = await app();
    const samples = Array.from({ length: 250 }, (_, i) => turn(`question ${i}${i % 50 === 7 ? " 西湖醋鱼" : ""}`, `answer ${"x".repeat(i % 13)}`));
    const d = await dataset(a, samples);
    const w = await a.call("samples.list", { datasetId: d.id, offset: 100, limit: 20 });
    expect(w.total).toBe(250);
    expect(w.offset).toBe(100);
    expect(w.items.map((r) => r.index)).toEqual(Array.from({ length: 20 }, (_, i) => 100 + i));
    expect(w.items[0]).toMatchObject({ userPreview: "question 100", assistantPreview: `answer ${"x".repeat(100 % 13)}`, messageCount: 2, hasSystem: false, tokens: null, problems: [], snippet: "" });
    const zh = await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 100, search: "湖醋鱼" });
    expect(zh.items.map((r) => r.index)).toEqual([7, 57, 107, 157, 207]);
    expect(zh.total).toBe(5);
    expect(zh.items[0].snippet).toContain("西湖醋鱼");
    const en = await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 5, search: "QUESTION 24" });
    expect(en.items.map((r) => r.index)).toEqual([24, 240, 241, 242, 243]);
    const short = await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 1000, search: "鱼" });
    expect(short.total).toBe(5);
    const quote = await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 10, search: 'say "hi" OR x' });
    expect(quote.total).toBe(0);
    const desc = await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 3, sort: { by: "index", dir: "desc" } });
    expect(desc.items.map((r) => r.index)).toEqual([249, 248, 247]);
    // the plain order is a range seek; a filtered one walks with OFFSET: both give the same windows
    const tailAsc = await a.call("samples.list", { datasetId: d.id, offset: 245, limit: 10 });
    expect(tailAsc.items.map((r) => r.index)).toEqual([245, 246, 247, 248, 249]);
    const tailDesc = await a.call("samples.list", { datasetId: d.id, offset: 245, limit: 10, sort: { by: "index", dir: "desc" } });
    expect(tailDesc.items.map((r) => r.index)).toEqual([4, 3, 2, 1, 0]);
    for (const dir of ["asc", "desc"] as const) {
      const plain = await a.call("samples.list", { datasetId: d.id, offset: 100, limit: 30, sort: { by: "index", dir } });
      const filtered = await a.call("samples.list", { datasetId: d.id, offset: 100, limit: 30, sort: { by: "index", dir }, hasProblems: false });
      expect(filtered).toEqual(plain);
    }
    await expect(a.call("samples.list", { datasetId: "nope", offset: 0, limit: 1 })).rejects.toMatchObject({ code: "not_found" });
  });

  it("edits are validated like the import; update, add, duplicate, delete and undo keep a dense order", async () => {
    const a = await app();
    const d = await dataset(a, [turn("a", "1"), turn("b", "2"), turn("c", "3")]);
    const rows = (await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 10 })).items;
    const wrong = [{ role: "assistant" as const, content: "x" }, { role: "user" as const, content: "y" }];
    await expect(a.call("samples.update", { id: rows[1].id, messages: wrong })).rejects.toMatchObject({
      code: "invalid_input",
      message: 'wrong role order: messages[0] is "assistant" but the conversation must start with "user" (after an optional system message)',
    });
    await expect(a.call("samples.update", { id: rows[1].id, messages: turn("b", " ") })).rejects.toMatchObject({ message: "empty content: messages[1] (assistant) has empty content" });
    await expect(a.call("samples.add", { datasetId: d.id, messages: [{ role: "user", content: "q" }] })).rejects.toMatchObject({ message: "no assistant turn: the sample has no assistant message" });
    expect((await a.call("datasets.list", {}))[0].undo).toBeNull();

    const edited = await a.call("samples.update", { id: rows[1].id, messages: [{ role: "system", content: "s" }, ...turn("b2", "2b")] });
    expect(edited).toMatchObject({ index: 1, revision: 2, hasSystem: true, messageCount: 3 });
    expect((await a.call("datasets.get", { id: d.id })).dataset.undo).toBe("edit");
    const undone = await a.call("samples.undo", { datasetId: d.id });
    expect(undone.undone).toBe("edit");
    expect(undone.sample!.messages).toEqual(turn("b", "2"));
    expect(undone.sample!.revision).toBe(3);
    await expect(a.call("samples.undo", { datasetId: d.id })).rejects.toMatchObject({ code: "not_found" });

    const dup = await a.call("samples.duplicate", { id: rows[0].id });
    expect(dup.index).toBe(1);
    const order = async () => (await allSamples(a, d.id)).map((s) => `${s.index}:${s.messages[0].content}`);
    expect(await order()).toEqual(["0:a", "1:a", "2:b", "3:c"]);
    expect((await a.call("samples.undo", { datasetId: d.id })).undone).toBe("duplicate");
    expect(await order()).toEqual(["0:a", "1:b", "2:c"]);

    await a.call("samples.delete", { id: rows[1].id });
    expect(await order()).toEqual(["0:a", "1:c"]);
    const back = await a.call("samples.undo", { datasetId: d.id });
    expect(back).toMatchObject({ undone: "delete", sample: { id: rows[1].id, index: 1 } });
    expect(await order()).toEqual(["0:a", "1:b", "2:c"]);

    const added = await a.call("samples.add", { datasetId: d.id, messages: turn("d", "4") });
    expect(added).toMatchObject({ index: 3, format: "messages", sourceLine: null });
    expect((await a.call("samples.undo", { datasetId: d.id })).sample).toBeNull();
    expect(await order()).toEqual(["0:a", "1:b", "2:c"]);
    await expect(a.call("samples.get", { id: added.id })).rejects.toMatchObject({ code: "not_found" });
  });

  it("undo survives a restart of the app (stored in the database)", async () => {
    const dataDir = tempDir();
    const a = await app(dataDir);
    const d = await dataset(a, [turn("keep me", "1")]);
    const [row] = (await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 1 })).items;
    await a.call("samples.update", { id: row.id, messages: turn("changed", "1") });
    await a.s.dispose();
    running.splice(running.indexOf(a.s), 1);
    const b = await app(dataDir);
    expect((await b.call("datasets.get", { id: d.id })).dataset.undo).toBe("edit");
    expect((await b.call("samples.get", { id: row.id })).messages[0].content).toBe("changed");
    await b.call("samples.undo", { datasetId: d.id });
    expect((await b.call("samples.get", { id: row.id })).messages[0].content).toBe("keep me");
  });

  it("duplicates are problems until dedupe removes them (first kept, order closed up)", async () => {
    const a = await app();
    const d = await dataset(a, [turn("a", "1"), turn("b", "2"), turn("a", "1"), turn("c", "3"), turn("b", "2"), turn("a", "1"), turn("a", "1 ")]);
    expect(d.problemCount).toBe(3);
    const probs = await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 10, hasProblems: true });
    expect(probs.items.map((r) => [r.index, r.problems])).toEqual([[2, ["duplicate"]], [4, ["duplicate"]], [5, ["duplicate"]]]);
    expect((await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 10, hasProblems: false })).total).toBe(4);
    const r = await a.call("datasets.dedupe", { id: d.id });
    expect(r.removed).toBe(3);
    expect(r.dataset).toMatchObject({ sampleCount: 4, problemCount: 0 });
    expect((await allSamples(a, d.id)).map((s) => `${s.index}:${s.messages[0].content}${s.messages[1].content}`)).toEqual(["0:a1", "1:b2", "2:c3", "3:a1 "]);
    expect((await a.call("datasets.dedupe", { id: d.id })).removed).toBe(0);
  });

  it("split: seeded and reproducible, round(n·ratio) to validation, source order kept on each side", async () => {
    const a = await app();
    const d = await dataset(a, Array.from({ length: 101 }, (_, i) => turn(`q${i}`, `a${i}`)));
    const contents = async (id: string) => (await allSamples(a, id)).map((s) => Number(s.messages[0].content.slice(1)));
    const s1 = await a.call("datasets.split", { id: d.id, validationRatio: 0.1, seed: 42 });
    expect(s1.train).toMatchObject({ name: "d (train)", sampleCount: 91, sourceFile: null });
    expect(s1.validation).toMatchObject({ name: "d (validation)", sampleCount: 10 });
    const [t1, v1] = [await contents(s1.train.id), await contents(s1.validation.id)];
    expect([...t1, ...v1].sort((x, y) => x - y)).toEqual(Array.from({ length: 101 }, (_, i) => i));
    expect(t1).toEqual([...t1].sort((x, y) => x - y));
    expect(v1).toEqual([...v1].sort((x, y) => x - y));
    const s2 = await a.call("datasets.split", { id: d.id, validationRatio: 0.1, seed: 42 });
    expect(await contents(s2.validation.id)).toEqual(v1);
    const s3 = await a.call("datasets.split", { id: d.id, validationRatio: 0.1, seed: 43 });
    expect(await contents(s3.validation.id)).not.toEqual(v1);
    expect((await a.call("datasets.get", { id: d.id })).dataset.sampleCount).toBe(101);
    await expect(a.call("datasets.split", { id: d.id, validationRatio: 0.001, seed: 1 })).rejects.toMatchObject({ code: "invalid_input", message: expect.stringContaining("leaves validation empty") });
  });

  it("rename and delete (samples, token counts and undo go with the dataset)", async () => {
    const a = await app();
    const d = await dataset(a, [turn("a", "1")]);
    expect((await a.call("datasets.rename", { id: d.id, name: "  训练集 v2 " })).name).toBe("训练集 v2");
    await a.call("samples.add", { datasetId: d.id, messages: turn("b", "2") });
    await a.call("datasets.delete", { id: d.id });
    expect(await a.call("datasets.list", {})).toEqual([]);
    for (const t of ["samples", "sample_bodies", "samples_fts", "dataset_undo", "sample_tokens"]) expect((a.s.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n).toBe(0);
    await expect(a.call("datasets.delete", { id: d.id })).rejects.toMatchObject({ code: "not_found" });
    expect(a.events.some((e) => e.name === "datasets.changed" && (e.payload as { deleted: boolean }).deleted)).toBe(true);
  });
});

describe("token counts", () => {
  const goldens = JSON.parse(readFileSync(join(FIX, "token-goldens.json"), "utf8")) as {
    models: Record<string, number[]>;
    samples: Array<{ file: string; messages: SampleMessage[] }>;
  };

  it("count the chat-templated sample exactly like transformers' apply_chat_template (goldens), cached per revision", async () => {
    const a = await app();
    const dir = tempDir();
    writeFileSync(join(dir, "g.jsonl"), jsonl(goldens.samples.map((s) => s.messages)));
    const d = await importFile(a, join(dir, "g.jsonl"));
    for (const [model, counts] of Object.entries(goldens.models)) {
      const tokenizer = { modelDir: join(MODELS, model) };
      const job = await a.call("datasets.tokens.count", { datasetId: d.id, tokenizer });
      expect(job).toMatchObject({ total: counts.length, pending: counts.length });
      await waitDone(a, job.jobId);
      const rows = (await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 100, tokenizer })).items;
      expect(rows.map((r) => r.tokens)).toEqual(counts); // exact: integer counts from the same tokenizer and template
      expect((await a.call("datasets.tokens.count", { datasetId: d.id, tokenizer })).pending).toBe(0);
    }
    // an edit makes that one sample pending again; samples.get counts it on the spot
    const tokenizer = { modelDir: join(MODELS, "qwen2"), maxSeqLen: 50 };
    const rows = (await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 100, tokenizer })).items;
    await a.call("samples.update", { id: rows[0].id, messages: turn("a much longer question than before, with more words in it", "ok") });
    const job = await a.call("datasets.tokens.count", { datasetId: d.id, tokenizer });
    expect(job.pending).toBe(1);
    await waitDone(a, job.jobId);
    const qwen = goldens.models.qwen2;
    const tooLong = (await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 100, tokenizer, hasProblems: true })).items;
    expect(tooLong.every((r) => r.problems.includes("too_long") && r.tokens! > 50)).toBe(true);
    expect(tooLong.length).toBe(qwen.slice(1).filter((n) => n > 50).length + ((await a.call("samples.get", { id: rows[0].id, tokenizer })).tokens! > 50 ? 1 : 0));
    const range = await a.call("samples.list", { datasetId: d.id, offset: 0, limit: 100, tokenizer, minTokens: 45, maxTokens: 60, sort: { by: "tokens", dir: "asc" } });
    const expected = qwen.slice(1).filter((n) => n >= 45 && n <= 60).sort((x, y) => x - y);
    expect(range.items.map((r) => r.tokens).filter((_, i) => range.items[i].id !== rows[0].id)).toEqual(expected);
    await expect(a.call("datasets.tokens.count", { datasetId: d.id, tokenizer: { modelDir: join(MODELS, "olmoe") } })).resolves.toBeDefined();
    await expect(a.call("datasets.tokens.count", { datasetId: d.id, tokenizer: { modelDir: dir } })).rejects.toMatchObject({
      code: "invalid_input",
      message: expect.stringContaining("tokenizer.json: file not found"),
    });
  });

  it("counting many samples yields to the event loop between slices and can be cancelled", async () => {
    const a = await app();
    const id = manySamples(a);
    const tokenizer = { modelDir: join(MODELS, "qwen2") };
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const job = await a.call("datasets.tokens.count", { datasetId: id, tokenizer });
    const end = await waitDone(a, job.jobId);
    clearInterval(timer);
    expect(end.state).toBe("done");
    expect(end.done).toBe(1500);
    const progress = jobEvents(a, (j) => j.id === job.jobId && j.status === "running" && j.progress !== null);
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.at(-1)).toMatchObject({ kind: "tokens", subject: id, title: "Count tokens of many", progress: { unit: "samples", total: 1500 } });
    expect(ticks).toBeGreaterThan(0); // timers ran while it counted: the loop was not held for the whole job
    // cancel: a new tokenizer, cancelled right away, leaves counts pending
    const other = { modelDir: join(MODELS, "llama") };
    const j2 = await a.call("datasets.tokens.count", { datasetId: id, tokenizer: other });
    await a.call("jobs.cancel", { id: j2.jobId });
    expect((await waitDone(a, j2.jobId)).state).toBe("cancelled");
    expect((await a.call("datasets.tokens.count", { datasetId: id, tokenizer: other })).pending).toBeGreaterThan(0);
  });

  async function waitDone(a: App, jobId: string) {
    for (;;) {
      const end = jobEvents(a, (j) => j.id === jobId && j.status !== "running" && j.status !== "queued").at(0);
      if (end) return { state: end.status, done: end.progress?.done ?? 0, total: end.progress?.total ?? 0 };
      await new Promise((r) => setTimeout(r, 5));
    }
  }
});

describe("dataset jobs across a crash", () => {
  // The crash: the database file exactly as it is at one instant mid-job (serialize() is SQLite's consistent
  // image of it, committed transactions only), opened by a new app in another folder, as a restart after a kill
  // would open it.
  it("a count cut off resumes counting only the rest; a cut-off scan is failed and a cut-off commit wrote nothing", async () => {
    const a = await app();
    const id = manySamples(a);
    const tokenizer = { modelDir: join(MODELS, "qwen2") };
    const dir = tempDir();
    const file = join(dir, "big.jsonl");
    writeFileSync(file, jsonl([turn("q".repeat(400), "a".repeat(400))]).repeat(30_000)); // ~25 MB
    const ready = await a.call("datasets.import.scan", { source: { kind: "path", path: file } });
    expect((await scanned(a, ready.importId)).state).toBe("ready");

    // image 1: a count past two batches (it then waits while the commit writes) and a commit that has inserted
    // rows in its open transaction (less than half of them: the commit is far from its end)
    const job = async (jobId: string) => (await a.call("jobs.list", {})).find((j) => j.id === jobId)!;
    const poll = async (done: () => Promise<boolean>) => {
      while (!(await done())) await new Promise((r) => setTimeout(r, 1));
    };
    const count = await a.call("datasets.tokens.count", { datasetId: id, tokenizer });
    await poll(async () => ((await job(count.jobId)).progress?.done ?? 0) >= 128);
    const committing = a.call("datasets.import.commit", { importId: ready.importId }).catch((e) => e);
    await poll(async () => {
      const st = await a.call("datasets.import.status", { importId: ready.importId });
      expect(st.state).toMatch(/^(ready|committing)$/);
      return st.state === "committing" && st.records > 0 && st.records < 15_000;
    });
    const image1 = a.s.db.serialize();
    expect((await job(count.jobId)).status).toBe("running");
    await a.call("jobs.cancel", { id: count.jobId });
    await committing; // the first app's commit ends either way: the image was taken mid-way
    // image 2: a scan that has read some bytes
    const scan = await a.call("datasets.import.scan", { source: { kind: "path", path: file } });
    await poll(async () => (await a.call("datasets.import.status", { importId: scan.importId })).bytesRead > 0);
    const image2 = a.s.db.serialize();
    expect((await a.call("datasets.import.status", { importId: scan.importId })).state).toBe("scanning");
    await a.call("datasets.import.cancel", { importId: scan.importId });

    const restart = async (image: Buffer) => {
      const dataDir = tempDir();
      writeFileSync(databaseFile(dataDir), image);
      return app(dataDir);
    };
    const c = await restart(image2);
    expect(await c.call("datasets.import.status", { importId: scan.importId })).toMatchObject({ state: "failed", report: null, error: expect.stringContaining("MoE Studio stopped") });
    await c.call("datasets.import.cancel", { importId: scan.importId }); // the user dismisses it: gone
    await expect(c.call("datasets.import.status", { importId: scan.importId })).rejects.toMatchObject({ code: "not_found" });

    const b = await restart(image1);
    const jobs = await b.call("jobs.list", {});
    expect(jobs.find((j) => j.id === count.jobId)).toMatchObject({ kind: "tokens", subject: id, status: "interrupted", canResume: true });
    expect(jobs.filter((j) => j.kind === "import")).toMatchObject([{ subject: ready.importId, status: "interrupted", canResume: false }]);
    // the commit's transaction never committed: no dataset but "many"; the import reads failed, with the reason
    expect((await b.call("datasets.list", {})).map((d) => d.name)).toEqual(["many"]);
    expect(await b.call("datasets.import.status", { importId: ready.importId })).toMatchObject({ state: "failed", error: expect.stringContaining("MoE Studio stopped") });

    // what the image holds was counted in whole batches of 64; a resume counts the rest and nothing twice
    const counted = (b.s.db.prepare("SELECT COUNT(*) AS n FROM sample_tokens").get() as { n: number }).n;
    expect(counted % 64).toBe(0);
    expect(counted).toBeGreaterThanOrEqual(128);
    expect(counted).toBeLessThan(1500);
    // every count the resumed job writes (INSERT OR REPLACE is an insert), seen by a trigger on this connection
    b.s.db.exec("CREATE TEMP TABLE written (n INTEGER); INSERT INTO written VALUES (0); CREATE TEMP TRIGGER count_written AFTER INSERT ON main.sample_tokens BEGIN UPDATE written SET n = n + 1; END;");
    const written = () => (b.s.db.prepare("SELECT n FROM temp.written").get() as { n: number }).n;
    for (let j = await b.call("jobs.resume", { id: count.jobId }); j.status === "running"; await new Promise((r) => setTimeout(r, 5))) {
      j = (await b.call("jobs.list", { kind: "tokens" })).find((x) => x.id === count.jobId)!;
    }
    const resumed = jobEvents(b, (j) => j.id === count.jobId);
    expect(written()).toBe(1500 - counted); // each sample's count written once, those of the image not again
    expect(resumed.at(-1)).toMatchObject({ status: "done", progress: { done: 1500, total: 1500 } });
    expect((b.s.db.prepare("SELECT COUNT(*) AS n FROM sample_tokens").get() as { n: number }).n).toBe(1500);
    expect((await b.call("datasets.tokens.count", { datasetId: id, tokenizer })).pending).toBe(0);
  });
});

describe("migration v3", () => {
  it("upgrades a v2 database with conversations intact and searchable", () => {
    const dir = tempDir();
    const file = databaseFile(dir);
    const v2 = openDatabase(file, { targetVersion: 2 });
    v2.prepare("INSERT INTO conversations VALUES ('c1', '杭州之行', 1, 2, 'sys', NULL, '{}', NULL)").run();
    v2.prepare("INSERT INTO messages VALUES ('m1', 'c1', 1, 'user', '西湖边有什么好吃的？', 1, 'complete', NULL, NULL)").run();
    v2.prepare("INSERT INTO messages VALUES ('m2', 'c1', 2, 'assistant', 'Try the vinegar fish.', 2, 'complete', NULL, NULL)").run();
    const before = dump(v2);
    v2.close();
    const db = openDatabase(file);
    try {
      // v2 -> the latest (v3 added datasets; later migrations, e.g. v4's jobs table, run in the same open)
      expect(SCHEMA_VERSION).toBeGreaterThanOrEqual(3);
      expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
      const after = JSON.parse(dump(db)) as Array<[string, unknown[]]>;
      const old = new Map(JSON.parse(before) as Array<[string, unknown[]]>);
      // every old row intact; a column a later migration added (e.g. v5's conversations.adapter_dir) is NULL on it
      for (const [t, rows] of after) {
        if (!old.has(t)) continue;
        const was = old.get(t) as Array<Record<string, unknown>>;
        expect(rows.length).toBe(was.length);
        (rows as Array<Record<string, unknown>>).forEach((r, i) => {
          for (const [k, v] of Object.entries(r)) expect(v, `${t}.${k}`).toEqual(k in was[i] ? was[i][k] : null);
        });
      }
      expect(db.prepare("SELECT m.id FROM messages m JOIN messages_fts f ON f.rowid = m.rowid WHERE f.content LIKE '%西湖边%'").all()).toEqual([{ id: "m1" }]);
      for (const t of ["datasets", "samples", "sample_bodies", "samples_fts", "sample_tokens", "dataset_undo"]) expect(after.map(([n]) => n)).toContain(t);
    } finally {
      db.close();
    }
  });
});

describe("the contract refuses malformed payloads before the service sees them", () => {
  it("roles, extra keys, ranges, base64, source kinds", async () => {
    const a = await app();
    const dispatch = createDispatcher(a.s.handlers);
    const bad: Array<[string, unknown, RegExp]> = [
      ["samples.update", { id: "x", messages: [{ role: "tool", content: "x" }] }, /messages\.0\.role/],
      ["samples.update", { id: "x", messages: [] }, /messages/],
      ["samples.update", { id: "x", messages: [{ role: "user", content: "x", name: "n" }] }, /unknown key "name"/],
      ["samples.add", { datasetId: "d", messages: [{ role: "user" }] }, /content/],
      ["samples.list", { datasetId: "d", offset: -1, limit: 10 }, /offset/],
      ["samples.list", { datasetId: "d", offset: 0, limit: 5000 }, /limit/],
      ["samples.list", { datasetId: "d", offset: 0, limit: 10, sort: { by: "length", dir: "asc" } }, /sort\.by/],
      ["datasets.split", { id: "d", validationRatio: 1, seed: 1 }, /validationRatio/],
      ["datasets.split", { id: "d", validationRatio: 0.2, seed: -1 }, /seed/],
      ["datasets.upload.chunk", { uploadId: "u", offset: 0, data: "not base64!" }, /data/],
      ["datasets.import.scan", { source: { kind: "url", url: "http://x" } }, /source/],
      ["datasets.import.scan", { source: { kind: "path", path: "" } }, /source\.path/],
      ["datasets.import.commit", { importId: "i", mode: "valid" }, /unknown key "mode"/],
      ["datasets.tokens.count", { datasetId: "d", tokenizer: { modelDir: "/m", maxSeqLen: 0 } }, /maxSeqLen/],
      ["datasets.rename", { id: "d", name: "" }, /name/],
      ["datasets.pickFile", { purpose: "delete" }, /purpose/],
    ];
    for (const [name, input, msg] of bad) {
      const e = await dispatch(name, input).catch((x) => x);
      expect(e, name).toMatchObject({ code: "invalid_input" });
      expect(e.message, name).toMatch(msg);
    }
    expect(await dispatch("datasets.pickFile", { purpose: "import" })).toEqual({ path: null });
    expect(existsSync(join(a.dataDir, "uploads"))).toBe(false);
  });
});
