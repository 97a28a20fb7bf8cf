// Datasets and their samples in SQLite (migration v3). Samples keep a dense order (position 0..n-1, which is also
// the row's index in the table) and a hash of the messages for duplicates; their text lives in sample_bodies
// (messages as JSON, and the joined content for the trigram full-text index), so moving or counting rows never
// touches it. Every method that changes several rows runs in one transaction.
import { createHash, randomUUID } from "node:crypto";
import type { DatasetFormat, DatasetSummary, FormatCounts, RejectedLine, Sample, SampleMessage, SampleProblem, SampleRow } from "../contract.js";
import type { Db } from "./db.js";
import { excerpt } from "./repositories.js";

const PREVIEW_CHARS = 200;

interface DatasetDbRow {
  id: string;
  name: string;
  created_at: number;
  updated_at: number;
  source_file: string | null;
  rejected_count: number;
  rejected: string;
}

export interface SampleDbRow {
  id: string;
  dataset_id: string;
  position: number;
  messages: string;
  content: string;
  hash: string;
  format: DatasetFormat;
  source_line: number | null;
  revision: number;
  message_count: number;
  has_system: number;
  user_preview: string;
  assistant_preview: string;
  created_at: number;
  updated_at: number;
}

export type UndoAction = "edit" | "add" | "duplicate" | "delete";

/** The columns derived from a sample's messages. */
export function sampleColumns(messages: readonly SampleMessage[]) {
  const json = JSON.stringify(messages.map((m) => ({ role: m.role, content: m.content })));
  const firstUser = messages.find((m) => m.role === "user");
  let lastAssistant: SampleMessage | undefined;
  for (let i = messages.length - 1; i >= 0 && !lastAssistant; i--) if (messages[i].role === "assistant") lastAssistant = messages[i];
  return {
    messages: json,
    content: messages.map((m) => m.content).join("\n"),
    hash: createHash("sha1").update(json).digest("hex"),
    message_count: messages.length,
    has_system: messages[0]?.role === "system" ? 1 : 0,
    user_preview: (firstUser?.content ?? "").slice(0, PREVIEW_CHARS),
    assistant_preview: (lastAssistant?.content ?? "").slice(0, PREVIEW_CHARS),
  };
}

/** mulberry32: a small seeded PRNG (uniform 32-bit states), so a split is the same on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Longest search query (characters); the contract refuses longer ones before they get here. */
export const MAX_SEARCH_CHARS = 500;
/** Trigrams of a query that go to the full-text index (see ftsQuery). */
const MAX_FTS_TRIGRAMS = 6;
/** Characters of a sample's text around the first match that a snippet is cut from (the rest is never copied). */
const SNIPPET_WINDOW = 2000;

const ftsString = (s: string) => `"${s.replace(/"/g, '""')}"`;

/**
 * The full-text part of a substring search (3+ characters), as quoted FTS5 strings, so FTS5 syntax in the query
 * (quotes, AND/OR/NOT, NEAR, *, ^, column filters) is plain text.
 * A short query is one phrase, which the trigram index answers exactly (`exact`). A long one is not: the trigram
 * tokenizer makes an n-character phrase n-2 tokens, and FTS5 matches a phrase by loading every token's position
 * list in every candidate row — on one large repetitive sample (n-2) × (an entry per character of the sample):
 * a 500-character query over a sample of a few MB took GBs of memory and minutes (measured: 5 MB of "aaa…" and
 * 200 characters, 1.1 GB and 60 s). So a long query sends a few of its distinct trigrams, ANDed, to pick the
 * candidates, and sample_contains() checks the whole query in each, in memory bounded by one sample.
 */
export function ftsQuery(q: string): { match: string; exact: boolean } {
  const chars = [...q];
  if (chars.length - 2 <= MAX_FTS_TRIGRAMS) return { match: ftsString(q), exact: true };
  const grams = new Set<string>();
  for (let i = 0; i + 3 <= chars.length; i++) grams.add(chars.slice(i, i + 3).join(""));
  const all = [...grams];
  // spread over the query (its start, end and between), so a shared prefix does not make every row a candidate
  const picked = all.length <= MAX_FTS_TRIGRAMS ? all : Array.from({ length: MAX_FTS_TRIGRAMS }, (_, k) => all[Math.round((k * (all.length - 1)) / (MAX_FTS_TRIGRAMS - 1))]);
  return { match: picked.map(ftsString).join(" "), exact: false };
}

/** Case-insensitive substring test (JavaScript's Unicode lower-casing, as the trigram index folds case). */
function containsFolded(text: string, needleFolded: string): boolean {
  return text.toLowerCase().includes(needleFolded);
}

/**
 * A search snippet cut from a bounded window around the first match, so a sample of many MB costs one scan for
 * the match, not copies of its whole text (whitespace folding and lower-casing run on the window only).
 */
export function sampleSnippet(text: string, needle: string, width: number): string {
  const at = text.toLowerCase().indexOf(needle.toLowerCase());
  const start = at < 0 ? 0 : Math.max(0, at - SNIPPET_WINDOW);
  const end = at < 0 ? Math.min(text.length, SNIPPET_WINDOW) : Math.min(text.length, at + needle.length + SNIPPET_WINDOW);
  const snip = excerpt(text.slice(start, end), needle, width);
  const cut = `${start > 0 && !snip.startsWith("…") ? "…" : ""}${snip}${end < text.length && !snip.endsWith("…") ? "…" : ""}`;
  // the cuts count UTF-16 units: drop half of an emoji's surrogate pair left at either end
  return cut.replace(/^(…?)[\udc00-\udfff]/, "$1").replace(/[\ud800-\udbff](…?)$/, "$1");
}

export interface SampleQuery {
  datasetId: string;
  offset: number;
  limit: number;
  sort?: { by: "index" | "tokens" | "updated"; dir: "asc" | "desc" };
  search?: string;
  minTokens?: number;
  maxTokens?: number;
  hasProblems?: boolean;
  /** Tokenizer identity for the token join, and the max sequence length for too_long. */
  tokenizerKey?: string;
  maxSeqLen?: number;
}

export class DatasetRepo {
  private readonly s;

  constructor(readonly db: Db) {
    // the search's per-row checks (see ftsQuery and sampleSnippet); registering again replaces them
    db.function("sample_contains", { deterministic: true }, (text: unknown, folded: unknown) => (containsFolded(String(text), String(folded)) ? 1 : 0));
    db.function("sample_snippet", { deterministic: true }, (text: unknown, needle: unknown, width: unknown) => sampleSnippet(String(text), String(needle), Number(width)));
    this.s = {
      insertDataset: db.prepare(
        "INSERT INTO datasets (id, name, created_at, updated_at, source_file, rejected_count, rejected) VALUES (@id, @name, @now, @now, @sourceFile, @rejectedCount, @rejected)",
      ),
      getDataset: db.prepare<[string], DatasetDbRow>("SELECT * FROM datasets WHERE id = ?"),
      datasetName: db.prepare<[string], { name: string }>("SELECT name FROM datasets WHERE id = ?"),
      allDatasets: db.prepare<[], DatasetDbRow>("SELECT * FROM datasets ORDER BY created_at DESC, rowid DESC"),
      counts: db.prepare<[string], { n: number }>("SELECT COUNT(*) AS n FROM samples WHERE dataset_id = ?"),
      // walks the (dataset_id, hash, position) index in order: no temporary b-tree, unlike COUNT(DISTINCT hash)
      dups: db.prepare<[string], { dups: number }>("SELECT coalesce(SUM(c - 1), 0) AS dups FROM (SELECT COUNT(*) AS c FROM samples WHERE dataset_id = ? GROUP BY hash)"),
      formats: db.prepare<[string], { format: DatasetFormat; n: number }>("SELECT format, COUNT(*) AS n FROM samples WHERE dataset_id = ? GROUP BY format"),
      undoOf: db.prepare<[string], { dataset_id: string; action: UndoAction; sample_id: string; previous: string | null }>("SELECT * FROM dataset_undo WHERE dataset_id = ?"),
      rename: db.prepare("UPDATE datasets SET name = ?, updated_at = ? WHERE id = ?"),
      touch: db.prepare("UPDATE datasets SET updated_at = ? WHERE id = ?"),
      deleteDataset: db.prepare("DELETE FROM datasets WHERE id = ?"),
      insertSample: db.prepare(
        `INSERT INTO samples (id, dataset_id, position, hash, format, source_line, revision, message_count, has_system, user_preview, assistant_preview, created_at, updated_at)
         VALUES (@id, @dataset_id, @position, @hash, @format, @source_line, @revision, @message_count, @has_system, @user_preview, @assistant_preview, @created_at, @updated_at)`,
      ),
      insertBody: db.prepare("INSERT INTO sample_bodies (sample_id, messages, content) VALUES (@id, @messages, @content)"),
      getSample: db.prepare<[string], SampleDbRow>("SELECT s.*, b.messages, b.content FROM samples s JOIN sample_bodies b ON b.sample_id = s.id WHERE s.id = ?"),
      updateSample: db.prepare(
        `UPDATE samples SET hash = @hash, message_count = @message_count, has_system = @has_system,
                user_preview = @user_preview, assistant_preview = @assistant_preview, revision = revision + 1, updated_at = @updated_at WHERE id = @id`,
      ),
      updateBody: db.prepare("UPDATE sample_bodies SET messages = @messages, content = @content WHERE sample_id = @id"),
      deleteSample: db.prepare("DELETE FROM samples WHERE id = ?"),
      shiftUp: db.prepare("UPDATE samples SET position = position + 1 WHERE dataset_id = ? AND position >= ?"),
      shiftDown: db.prepare("UPDATE samples SET position = position - 1 WHERE dataset_id = ? AND position > ?"),
      isDuplicate: db.prepare<[string, string, number], { x: number }>("SELECT 1 AS x FROM samples WHERE dataset_id = ? AND hash = ? AND position < ? LIMIT 1"),
      setUndo: db.prepare(
        "INSERT OR REPLACE INTO dataset_undo (dataset_id, action, sample_id, previous, created_at) VALUES (?, ?, ?, ?, ?)",
      ),
      clearUndo: db.prepare("DELETE FROM dataset_undo WHERE dataset_id = ?"),
      tokens: db.prepare<[string, string], { tokens: number; revision: number }>("SELECT tokens, revision FROM sample_tokens WHERE sample_id = ? AND tokenizer = ?"),
      // only while the sample still exists at that revision (it may be edited or deleted while a count runs)
      putTokens: db.prepare(
        "INSERT OR REPLACE INTO sample_tokens (sample_id, tokenizer, revision, tokens) SELECT @id, @tok, @rev, @tokens WHERE EXISTS (SELECT 1 FROM samples WHERE id = @id AND revision = @rev)",
      ),
      exportPage: db.prepare<[string, number, number], { position: number; messages: string }>(
        "SELECT s.position, b.messages FROM samples s JOIN sample_bodies b ON b.sample_id = s.id WHERE s.dataset_id = ? AND s.position > ? ORDER BY s.position LIMIT ?",
      ),
      // walks samples in rowid order from a cursor (the unary + keeps SQLite off the dataset index, which would
      // make it collect and sort every sample of the dataset for each batch); bodies are read per returned row
      uncounted: db.prepare<[string, string, number, number], { rowid: number; id: string; revision: number }>(
        `SELECT s.rowid, s.id, s.revision FROM samples s
         LEFT JOIN sample_tokens t ON t.sample_id = s.id AND t.tokenizer = ?
         WHERE +s.dataset_id = ? AND s.rowid > ? AND (t.revision IS NULL OR t.revision <> s.revision)
         ORDER BY s.rowid LIMIT ?`,
      ),
      body: db.prepare<[string], { messages: string }>("SELECT messages FROM sample_bodies WHERE sample_id = ?"),
      countUncounted: db.prepare<[string, string], { n: number }>(
        `SELECT COUNT(*) AS n FROM samples s LEFT JOIN sample_tokens t ON t.sample_id = s.id AND t.tokenizer = ?
         WHERE s.dataset_id = ? AND (t.revision IS NULL OR t.revision <> s.revision)`,
      ),
    };
  }

  // ---------- datasets ----------

  createDataset(d: { name: string; sourceFile: string | null; rejectedCount?: number; rejected?: RejectedLine[] }, now = Date.now()): string {
    const id = randomUUID();
    this.s.insertDataset.run({ id, name: d.name, now, sourceFile: d.sourceFile, rejectedCount: d.rejectedCount ?? 0, rejected: JSON.stringify(d.rejected ?? []) });
    return id;
  }

  exists(id: string): boolean {
    return this.s.datasetName.get(id) !== undefined;
  }

  sampleCount(id: string): number {
    return this.s.counts.get(id)!.n;
  }

  name(id: string): string | null {
    return this.s.datasetName.get(id)?.name ?? null;
  }

  summary(id: string): DatasetSummary | null {
    const r = this.s.getDataset.get(id);
    return r ? this.toSummary(r) : null;
  }

  list(): DatasetSummary[] {
    return this.s.allDatasets.all().map((r) => this.toSummary(r));
  }

  rejectedLines(id: string): RejectedLine[] {
    const r = this.s.getDataset.get(id);
    return r ? (JSON.parse(r.rejected) as RejectedLine[]) : [];
  }

  rename(id: string, name: string): boolean {
    return this.s.rename.run(name, Date.now(), id).changes > 0;
  }

  touch(id: string): void {
    this.s.touch.run(Date.now(), id);
  }

  deleteDataset(id: string): boolean {
    // samples, their token counts and the undo entry go with it (ON DELETE CASCADE; the FTS rows by trigger)
    return this.s.deleteDataset.run(id).changes > 0;
  }

  private toSummary(r: DatasetDbRow): DatasetSummary {
    const c = this.s.counts.get(r.id)!;
    const formats: FormatCounts = { messages: 0, conversations: 0, instruction: 0 };
    for (const f of this.s.formats.all(r.id)) formats[f.format] = f.n;
    return {
      id: r.id,
      name: r.name,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      sourceFile: r.source_file,
      sampleCount: c.n,
      formats,
      rejectedCount: r.rejected_count,
      problemCount: this.s.dups.get(r.id)!.dups,
      undo: this.s.undoOf.get(r.id)?.action ?? null,
    };
  }

  // ---------- samples: bulk ----------

  /** A prepared inserter for a bulk load (the caller wraps the calls in its transaction). */
  inserter(datasetId: string, now = Date.now()) {
    let position = this.s.counts.get(datasetId)!.n;
    return (s: { format: DatasetFormat; messages: readonly SampleMessage[]; sourceLine: number | null }) => {
      const id = randomUUID();
      const cols = sampleColumns(s.messages);
      this.s.insertSample.run({
        id,
        dataset_id: datasetId,
        position: position++,
        ...cols,
        format: s.format,
        source_line: s.sourceLine,
        revision: 1,
        created_at: now,
        updated_at: now,
      });
      this.s.insertBody.run({ id, messages: cols.messages, content: cols.content });
      return id;
    };
  }

  /** Deletes every sample equal to an earlier one (same hash), then closes the gaps in the order. */
  dedupe(datasetId: string): number {
    return this.db.transaction(() => {
      const removed = this.db
        .prepare(
          `DELETE FROM samples WHERE dataset_id = ? AND EXISTS
             (SELECT 1 FROM samples d WHERE d.dataset_id = samples.dataset_id AND d.hash = samples.hash AND d.position < samples.position)`,
        )
        .run(datasetId).changes;
      if (removed > 0) {
        this.renumber(datasetId);
        this.dropStaleUndo(datasetId);
        this.touch(datasetId);
      }
      return removed;
    })();
  }

  /**
   * Two new datasets from a seeded shuffle: round(n * ratio) samples to validation, the rest to train, each in the
   * source's order. Fisher–Yates over the positions with mulberry32(seed): same seed + same samples = same split.
   */
  split(datasetId: string, validationRatio: number, seed: number): { trainId: string; validationId: string } {
    const src = this.s.getDataset.get(datasetId)!;
    const n = this.s.counts.get(datasetId)!.n;
    const nVal = Math.round(n * validationRatio);
    if (nVal === 0 || nVal === n) {
      throw Object.assign(new Error(`a validation ratio of ${validationRatio} leaves ${nVal === 0 ? "validation" : "train"} empty (the dataset has ${n} sample${n === 1 ? "" : "s"})`), {
        code: "invalid_input",
      });
    }
    const order = Array.from({ length: n }, (_, i) => i);
    const rand = seededRandom(seed);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      const t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    const isVal = new Uint8Array(n);
    for (let i = 0; i < nVal; i++) isVal[order[i]] = 1;
    return this.db.transaction(() => {
      const now = Date.now();
      const trainId = this.createDataset({ name: `${src.name} (train)`, sourceFile: null }, now);
      const validationId = this.createDataset({ name: `${src.name} (validation)`, sourceFile: null }, now + 1);
      this.db.exec("CREATE TEMP TABLE IF NOT EXISTS split_map (src_position INTEGER PRIMARY KEY, dst TEXT NOT NULL, dst_position INTEGER NOT NULL, dst_id TEXT NOT NULL)");
      this.db.exec("DELETE FROM split_map");
      const put = this.db.prepare("INSERT INTO split_map (src_position, dst, dst_position, dst_id) VALUES (?, ?, ?, ?)");
      let t = 0;
      let v = 0;
      for (let p = 0; p < n; p++) put.run(p, isVal[p] ? validationId : trainId, isVal[p] ? v++ : t++, randomUUID());
      this.db
        .prepare(
          `INSERT INTO samples (id, dataset_id, position, hash, format, source_line, revision, message_count, has_system, user_preview, assistant_preview, created_at, updated_at)
           SELECT m.dst_id, m.dst, m.dst_position, s.hash, s.format, s.source_line, 1, s.message_count, s.has_system, s.user_preview, s.assistant_preview, @now, @now
           FROM samples s JOIN split_map m ON m.src_position = s.position WHERE s.dataset_id = @src ORDER BY m.dst, m.dst_position`,
        )
        .run({ now, src: datasetId });
      this.db
        .prepare(
          `INSERT INTO sample_bodies (sample_id, messages, content)
           SELECT m.dst_id, b.messages, b.content FROM samples s JOIN split_map m ON m.src_position = s.position JOIN sample_bodies b ON b.sample_id = s.id
           WHERE s.dataset_id = @src ORDER BY m.dst, m.dst_position`,
        )
        .run({ src: datasetId });
      this.db.exec("DELETE FROM split_map");
      return { trainId, validationId };
    })();
  }

  /** The whole dataset as messages-format jsonl, in position order (for the trainer and the cluster hand-off). */
  exportAll(datasetId: string): string {
    let text = "", after = -1;
    for (;;) {
      const page = this.exportPage(datasetId, after, 8 << 20);
      text += page.text;
      after = page.lastPosition;
      if (page.done) return text;
    }
  }

  /** Messages-format jsonl lines after `afterPosition`, up to `maxChars` (at least one line). */
  exportPage(datasetId: string, afterPosition: number, maxChars: number): { text: string; lastPosition: number; done: boolean } {
    let text = "";
    let last = afterPosition;
    for (;;) {
      const rows = this.s.exportPage.all(datasetId, last, 256);
      if (rows.length === 0) return { text, lastPosition: last, done: true };
      for (const r of rows) {
        const line = `{"messages":${r.messages}}\n`;
        if (text.length > 0 && text.length + line.length > maxChars) return { text, lastPosition: last, done: false };
        text += line;
        last = r.position;
      }
    }
  }

  // ---------- samples: one at a time ----------

  getRow(id: string): SampleDbRow | null {
    return this.s.getSample.get(id) ?? null;
  }

  toSample(r: SampleDbRow, tokens: number | null, maxSeqLen?: number): Sample {
    return {
      id: r.id,
      datasetId: r.dataset_id,
      index: r.position,
      messageCount: r.message_count,
      hasSystem: r.has_system === 1,
      tokens,
      problems: this.problems(r, tokens, maxSeqLen),
      format: r.format,
      sourceLine: r.source_line,
      revision: r.revision,
      updatedAt: r.updated_at,
      messages: JSON.parse(r.messages) as SampleMessage[],
    };
  }

  private problems(r: SampleDbRow, tokens: number | null, maxSeqLen?: number): SampleProblem[] {
    const p: SampleProblem[] = [];
    if (this.s.isDuplicate.get(r.dataset_id, r.hash, r.position)) p.push("duplicate");
    if (maxSeqLen !== undefined && tokens !== null && tokens > maxSeqLen) p.push("too_long");
    return p;
  }

  private writeMessages(id: string, messages: readonly SampleMessage[], now: number): void {
    const cols = sampleColumns(messages);
    this.s.updateSample.run({ id, ...cols, updated_at: now });
    this.s.updateBody.run({ id, messages: cols.messages, content: cols.content });
  }

  /** Replace a sample's messages (already validated); the previous row becomes the dataset's undo. */
  updateSample(id: string, messages: readonly SampleMessage[]): SampleDbRow {
    return this.db.transaction(() => {
      const before = this.s.getSample.get(id)!;
      this.writeMessages(id, messages, Date.now());
      this.s.setUndo.run(before.dataset_id, "edit", id, JSON.stringify(before), Date.now());
      this.touch(before.dataset_id);
      return this.s.getSample.get(id)!;
    })();
  }

  /** A new sample at `position` (default: the end). */
  addSample(datasetId: string, messages: readonly SampleMessage[], opts: { position?: number; format?: DatasetFormat; undo: "add" | "duplicate" }): SampleDbRow {
    return this.db.transaction(() => {
      const n = this.s.counts.get(datasetId)!.n;
      const position = Math.min(opts.position ?? n, n);
      if (position < n) this.s.shiftUp.run(datasetId, position);
      const now = Date.now();
      const id = randomUUID();
      const cols = sampleColumns(messages);
      this.s.insertSample.run({
        id,
        dataset_id: datasetId,
        position,
        ...cols,
        format: opts.format ?? "messages",
        source_line: null,
        revision: 1,
        created_at: now,
        updated_at: now,
      });
      this.s.insertBody.run({ id, messages: cols.messages, content: cols.content });
      this.s.setUndo.run(datasetId, opts.undo, id, null, now);
      this.touch(datasetId);
      return this.s.getSample.get(id)!;
    })();
  }

  duplicateSample(id: string): SampleDbRow {
    const r = this.s.getSample.get(id)!;
    return this.addSample(r.dataset_id, JSON.parse(r.messages) as SampleMessage[], { position: r.position + 1, format: r.format, undo: "duplicate" });
  }

  deleteSample(id: string): void {
    this.db.transaction(() => {
      const r = this.s.getSample.get(id)!;
      this.s.deleteSample.run(id);
      this.s.shiftDown.run(r.dataset_id, r.position);
      this.s.setUndo.run(r.dataset_id, "delete", id, JSON.stringify(r), Date.now());
      this.touch(r.dataset_id);
    })();
  }

  /** Undo the dataset's last sample edit; null when there is none. */
  undo(datasetId: string): { action: UndoAction; sampleId: string | null } | null {
    return this.db.transaction(() => {
      const u = this.s.undoOf.get(datasetId);
      if (!u) return null;
      this.s.clearUndo.run(datasetId);
      const now = Date.now();
      if (u.action === "edit") {
        const prev = JSON.parse(u.previous!) as SampleDbRow;
        if (!this.s.getSample.get(u.sample_id)) return null;
        this.writeMessages(u.sample_id, JSON.parse(prev.messages) as SampleMessage[], now);
      } else if (u.action === "delete") {
        const prev = JSON.parse(u.previous!) as SampleDbRow;
        const n = this.s.counts.get(datasetId)!.n;
        const position = Math.min(prev.position, n);
        if (position < n) this.s.shiftUp.run(datasetId, position);
        // back with its id (links and open editors stay valid), a new revision (its token counts were dropped)
        this.s.insertSample.run({ ...prev, position, revision: prev.revision + 1, updated_at: now });
        this.s.insertBody.run({ id: prev.id, messages: prev.messages, content: prev.content });
      } else {
        const r = this.s.getSample.get(u.sample_id);
        if (!r) return null;
        this.s.deleteSample.run(r.id);
        this.s.shiftDown.run(datasetId, r.position);
      }
      this.touch(datasetId);
      return { action: u.action, sampleId: u.action === "add" || u.action === "duplicate" ? null : u.sample_id };
    })();
  }

  /** After a bulk removal: an undo that points at a sample no longer there is dropped. */
  private dropStaleUndo(datasetId: string): void {
    const u = this.s.undoOf.get(datasetId);
    if (u && u.action !== "delete" && !this.s.getSample.get(u.sample_id)) this.s.clearUndo.run(datasetId);
  }

  /** Close gaps in the order: positions become 0..n-1 in the current order. */
  private renumber(datasetId: string): void {
    this.db
      .prepare(
        `UPDATE samples SET position = r.p FROM
           (SELECT rowid AS rid, ROW_NUMBER() OVER (ORDER BY position) - 1 AS p FROM samples WHERE dataset_id = ?) AS r
         WHERE samples.rowid = r.rid AND samples.position <> r.p`,
      )
      .run(datasetId);
  }

  // ---------- samples: the table's window ----------

  listSamples(q: SampleQuery): { total: number; items: SampleRow[] } {
    const where = ["s.dataset_id = @datasetId"];
    const params: Record<string, unknown> = { datasetId: q.datasetId, tok: q.tokenizerKey ?? "", limit: q.limit, offset: q.offset };
    const search = q.search?.trim() ?? "";
    if (search) {
      const chars = [...search].length;
      if (chars > MAX_SEARCH_CHARS) {
        throw Object.assign(new Error(`search: the query is ${chars} characters long; at most ${MAX_SEARCH_CHARS} are allowed`), { code: "invalid_input" });
      }
      // 3+ characters: candidates from the trigram index, each checked for the whole query; shorter: a scan
      // (the index has no trigrams to look up)
      if (chars >= 3) {
        const fts = ftsQuery(search);
        const check = fts.exact ? "" : " AND sample_contains(b.content, @folded)";
        where.push(`s.id IN (SELECT b.sample_id FROM sample_bodies b WHERE b.rowid IN (SELECT rowid FROM samples_fts WHERE samples_fts MATCH @fts)${check})`);
        params.fts = fts.match;
        if (!fts.exact) params.folded = search.toLowerCase();
      } else {
        where.push("EXISTS (SELECT 1 FROM sample_bodies b WHERE b.sample_id = s.id AND instr(lower(b.content), lower(@needle)) > 0)");
      }
      params.needle = search;
    }
    const withTokens = q.tokenizerKey !== undefined;
    if (withTokens && q.minTokens !== undefined) {
      where.push("t.tokens >= @minTokens");
      params.minTokens = q.minTokens;
    }
    if (withTokens && q.maxTokens !== undefined) {
      where.push("t.tokens <= @maxTokens");
      params.maxTokens = q.maxTokens;
    }
    const dup = "EXISTS (SELECT 1 FROM samples d WHERE d.dataset_id = s.dataset_id AND d.hash = s.hash AND d.position < s.position)";
    // as a filter: first the (few) hashes that occur twice, from the index in one pass; EXISTS only for those rows
    const dupFilter = `(s.hash IN (SELECT hash FROM samples WHERE dataset_id = @datasetId GROUP BY hash HAVING COUNT(*) > 1) AND ${dup})`;
    let tokenFilter = q.minTokens !== undefined || q.maxTokens !== undefined;
    if (q.hasProblems !== undefined) {
      const tooLong = withTokens && q.maxSeqLen !== undefined ? " OR t.tokens > @maxSeqLen" : "";
      if (tooLong) {
        params.maxSeqLen = q.maxSeqLen;
        tokenFilter = true;
      }
      where.push(q.hasProblems ? `(${dupFilter}${tooLong})` : `NOT (${dupFilter}${tooLong ? ` OR coalesce(t.tokens > @maxSeqLen, 0)` : ""})`);
    }
    const join = "LEFT JOIN sample_tokens t ON t.sample_id = s.id AND t.tokenizer = @tok AND t.revision = s.revision";
    const desc = q.sort?.dir === "desc";
    const dir = desc ? "DESC" : "ASC";
    const byTokens = withTokens && q.sort?.by === "tokens";
    const order = byTokens ? `t.tokens ${dir}, s.position ${dir}` : q.sort?.by === "updated" ? `s.updated_at ${dir}, s.position ${dir}` : `s.position ${dir}`;
    // the count joins token counts only when a filter needs them
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM samples s ${withTokens && tokenFilter ? join : ""} WHERE ${where.join(" AND ")}`).get(params) as { n: number }).n;
    let window = "LIMIT @limit OFFSET @offset";
    if (where.length === 1 && (q.sort?.by ?? "index") === "index") {
      // the plain table in its own order: positions are 0..n-1, so a window is a range seek, not an OFFSET walk
      where.push(desc ? "s.position <= @from" : "s.position >= @from");
      params.from = desc ? total - 1 - q.offset : q.offset;
      window = "LIMIT @limit";
    }
    // two steps: the window's rowids (sorting keys only), then the columns for those rows alone, so a sort over
    // 100k samples never computes duplicates, previews or snippets for rows it does not return
    const rows = this.db
      .prepare(
        `SELECT s.id, s.dataset_id, s.position, s.hash, s.format, s.source_line, s.revision, s.message_count, s.has_system, s.user_preview,
                s.assistant_preview, s.updated_at, ${withTokens ? "t.tokens" : "NULL"} AS tokens,
                ${search ? "sample_snippet((SELECT content FROM sample_bodies b WHERE b.sample_id = s.id), @needle, 120)" : "''"} AS snippet, ${dup} AS dup
         FROM samples s ${withTokens ? join : ""}
         WHERE s.rowid IN (SELECT s.rowid FROM samples s ${withTokens ? join : ""} WHERE ${where.join(" AND ")} ORDER BY ${order} ${window})
         ORDER BY ${order}`,
      )
      .all(params) as Array<SampleDbRow & { tokens: number | null; dup: number; snippet: string }>;
    const items = rows.map((r): SampleRow => {
      const problems: SampleProblem[] = [];
      if (r.dup) problems.push("duplicate");
      if (q.maxSeqLen !== undefined && r.tokens !== null && r.tokens > q.maxSeqLen) problems.push("too_long");
      return {
        id: r.id,
        datasetId: r.dataset_id,
        index: r.position,
        userPreview: r.user_preview,
        assistantPreview: r.assistant_preview,
        snippet: r.snippet,
        messageCount: r.message_count,
        hasSystem: r.has_system === 1,
        tokens: r.tokens,
        problems,
        format: r.format,
        sourceLine: r.source_line,
        revision: r.revision,
        updatedAt: r.updated_at,
      };
    });
    return { total, items };
  }

  // ---------- token counts ----------

  cachedTokens(sampleId: string, tokenizerKey: string, revision: number): number | null {
    const r = this.s.tokens.get(sampleId, tokenizerKey);
    return r && r.revision === revision ? r.tokens : null;
  }

  putTokens(rows: ReadonlyArray<{ sampleId: string; revision: number; tokens: number }>, tokenizerKey: string): void {
    this.db.transaction(() => {
      for (const r of rows) this.s.putTokens.run({ id: r.sampleId, tok: tokenizerKey, rev: r.revision, tokens: r.tokens });
    })();
  }

  /** Samples without a current count for this tokenizer, in rowid order after `afterRowid`. */
  uncounted(datasetId: string, tokenizerKey: string, afterRowid: number, limit: number): Array<{ rowid: number; id: string; revision: number; messages: string }> {
    return this.s.uncounted.all(tokenizerKey, datasetId, afterRowid, limit).map((r) => ({ ...r, messages: this.s.body.get(r.id)?.messages ?? "[]" }));
  }

  countUncounted(datasetId: string, tokenizerKey: string): number {
    return this.s.countUncounted.get(tokenizerKey, datasetId)!.n;
  }
}
