// Datasets: import (browser uploads, the streaming scan, the one-transaction commit), the samples table and its
// edits with undo, token counts for a model's tokenizer, and dataset actions. Knows nothing of Electron: the
// Electron main process passes a file dialog in, the CLI and `serve` run it as is. Semantics of every call:
// electron/datasets/README.md.
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { appendFile, open, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import {
  EXPORT_CHUNK_CHARS,
  NUL_REFUSED,
  RpcError,
  UPLOAD_CHUNK_BYTES,
  type DatasetSummary,
  type ImportReport,
  type ImportStatus,
  type RejectedLine,
  type Sample,
  type SampleMessage,
  type SampleRow,
  type TokenizerChoice,
} from "../contract.js";
import { validateMessages } from "../datasets/formats.js";
import { formatLimit, MAX_RECORD_BYTES } from "../datasets/records.js";
import { CommitCancelled, runBulk, type BulkMessage, type BulkResult, type BulkTask, type CommitRequest } from "../datasets/bulk.js";
import { scanFile, ScanCancelled, type ImportLimits, type ScanProgress, type ScanResult } from "../datasets/scan.js";
import { SampleTokenCounter } from "../datasets/tokens.js";
import { DatasetRepo, type SampleDbRow, type SampleQuery } from "../store/datasets.js";
import type { Db } from "../store/db.js";
import { asDiskFull, busy, diskFull, isDiskFull, notFound } from "./errors.js";
import type { Emit } from "./models.js";

const invalid = (message: string) => new RpcError("invalid_input", message);

interface Upload {
  id: string;
  fileName: string;
  size: number;
  received: number;
  path: string;
}

interface ImportJob {
  id: string;
  /** The file read: the user's path, or the upload's temp file. */
  path: string;
  fileName: string;
  /** What the dataset records as its source: the user's path, or the uploaded file's name. */
  sourceFile: string;
  upload: Upload | null;
  state: ImportStatus["state"];
  progress: ScanProgress;
  scan: ScanResult | null;
  report: ImportReport | null;
  datasetId: string | null;
  error: string | null;
  abort: AbortController;
  scanning: Promise<void>;
  /** Set while committing: 1 = cancel (read by the commit worker). */
  cancelFlag?: Int32Array<SharedArrayBuffer>;
  committing?: Promise<void>;
}

interface TokenJob {
  id: string;
  datasetId: string;
  cancelled: boolean;
}

/** Finished imports kept for import.status (a reloaded page asks); older ones are forgotten. */
const KEEP_FINISHED_IMPORTS = 50;
/** Samples per text-worker job when counting tokens (a cancel takes effect between jobs). */
const TOKEN_BATCH = 64;

export interface DatasetServiceOptions {
  /** Native open/save dialog (Electron); absent elsewhere. */
  pickFile?: (purpose: "import" | "export", suggestedName?: string) => Promise<string | null>;
  /** Delete what a crashed run left in <dataDir>/uploads (the app at start; not the CLI). */
  cleanStaleUploads?: boolean;
  /** Line and file size limits of an import (defaults: 16 MiB per line, 64 GiB per file; tests use small ones). */
  importLimits?: ImportLimits;
}

export class DatasetService {
  readonly repo: DatasetRepo;
  private readonly uploads = new Map<string, Upload>();
  private readonly imports = new Map<string, ImportJob>();
  private readonly tokenJobs = new Map<string, TokenJob>();
  private readonly counters = new Map<string, { mtimeMs: number; counter: SampleTokenCounter }>();
  private readonly uploadDir: string;
  /** Bulk writes running on worker threads (token counts wait: their writes would queue behind that lock). */
  private bulkWrites = 0;

  constructor(
    db: Db,
    dataDir: string,
    private readonly emit: Emit,
    private readonly opts: DatasetServiceOptions = {},
  ) {
    this.repo = new DatasetRepo(db);
    this.uploadDir = join(dataDir, "uploads");
    // uploads do not outlive the app that received them: leftovers of a crash go (only the app does this, not
    // the CLI, which may run beside an app that is receiving an upload)
    if (opts.cleanStaleUploads && existsSync(this.uploadDir)) for (const f of readdirSync(this.uploadDir)) rmSync(join(this.uploadDir, f), { force: true });
  }

  // ---------- datasets ----------

  list(): DatasetSummary[] {
    return this.repo.list();
  }

  get(id: string): { dataset: DatasetSummary; rejected: RejectedLine[] } {
    return { dataset: this.summary(id), rejected: this.repo.rejectedLines(id) };
  }

  rename(id: string, name: string): DatasetSummary {
    const trimmed = checkName(name);
    if (!trimmed) throw invalid("name: the name is empty");
    if (!this.repo.rename(id, trimmed)) throw notFound(`dataset ${id} not found`);
    this.changed(id);
    return this.summary(id);
  }

  /** Deleting 100k samples updates the full-text index row by row: on the bulk worker. */
  async delete(id: string): Promise<{ ok: true }> {
    this.mustExist(id);
    for (const j of this.tokenJobs.values()) if (j.datasetId === id) j.cancelled = true;
    const r = (await this.runBulkTask({ kind: "delete", datasetId: id })) as { deleted: boolean };
    if (!r.deleted) throw notFound(`dataset ${id} not found`);
    this.emit("datasets.changed", { id, deleted: true });
    return { ok: true };
  }

  /** Deletes duplicates and renumbers the rest: on the bulk worker. */
  async dedupe(id: string): Promise<{ removed: number; dataset: DatasetSummary }> {
    this.mustExist(id);
    const { removed } = (await this.runBulkTask({ kind: "dedupe", datasetId: id })) as { removed: number };
    if (removed) this.changed(id);
    return { removed, dataset: this.summary(id) };
  }

  /** Copies every sample (and indexes its text again): on the bulk worker. */
  async split(id: string, validationRatio: number, seed: number): Promise<{ train: DatasetSummary; validation: DatasetSummary }> {
    this.mustExist(id);
    const { trainId, validationId } = (await this.runBulkTask({ kind: "split", datasetId: id, validationRatio, seed })) as { trainId: string; validationId: string };
    this.changed(trainId);
    this.changed(validationId);
    return { train: this.summary(trainId), validation: this.summary(validationId) };
  }

  /** Writes the dataset as messages-format jsonl to `path` (a temporary name, renamed when complete). */
  async export(id: string, path: string): Promise<{ path: string; samples: number; bytes: number }> {
    this.mustExist(id);
    const target = resolve(path);
    if (!existsSync(dirname(target))) throw invalid(`${dirname(target)}: folder not found`);
    const tmp = `${target}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
    let samples = 0;
    let bytes = 0;
    const fh = await open(tmp, "w");
    try {
      let after = -1;
      for (;;) {
        const page = this.repo.exportPage(id, after, EXPORT_CHUNK_CHARS);
        if (page.text) {
          const buf = Buffer.from(page.text, "utf8");
          await fh.write(buf);
          bytes += buf.length;
          samples += countLines(page.text);
        }
        after = page.lastPosition;
        if (page.done) break;
      }
      await fh.sync();
      await fh.close();
      await rename(tmp, target);
    } catch (e) {
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      if (isDiskFull(e)) throw diskFull(`cannot write the export ${target} (${(e as Error).message})`, dirname(target));
      throw new Error(`${target}: cannot write the export (${(e as Error).message})`);
    }
    return { path: target, samples, bytes };
  }

  exportChunk(id: string, cursor: string | null): { data: string; nextCursor: string | null; fileName: string } {
    const name = this.repo.name(id);
    if (name === null) throw notFound(`dataset ${id} not found`);
    const after = cursor === null ? -1 : Number(cursor);
    if (!Number.isInteger(after) || after < -1) throw invalid(`cursor: ${JSON.stringify(cursor)} is not a cursor this call returned`);
    const page = this.repo.exportPage(id, after, EXPORT_CHUNK_CHARS);
    return { data: page.text, nextCursor: page.done ? null : String(page.lastPosition), fileName: exportFileName(name) };
  }

  async pickFile(purpose: "import" | "export", suggestedName?: string): Promise<{ path: string | null }> {
    return { path: this.opts.pickFile ? await this.opts.pickFile(purpose, suggestedName) : null };
  }

  // ---------- browser uploads ----------

  async uploadBegin(fileName: string, size: number): Promise<{ uploadId: string }> {
    mkdirSync(this.uploadDir, { recursive: true });
    const id = randomUUID();
    const path = join(this.uploadDir, `${id}.upload`);
    await writeFile(path, "");
    this.uploads.set(id, { id, fileName: basename(fileName), size, received: 0, path });
    return { uploadId: id };
  }

  async uploadChunk(uploadId: string, offset: number, data: string): Promise<{ received: number }> {
    const u = this.uploads.get(uploadId);
    if (!u) throw notFound(`upload ${uploadId} not found`);
    if (offset !== u.received) throw invalid(`offset: expected ${u.received} (chunks go in order), got ${offset}`);
    const bytes = Buffer.from(data, "base64");
    if (bytes.length > UPLOAD_CHUNK_BYTES) throw invalid(`data: a chunk holds at most ${UPLOAD_CHUNK_BYTES} bytes, got ${bytes.length}`);
    if (u.received + bytes.length > u.size) throw invalid(`data: the chunk goes past the announced size (${u.size} bytes)`);
    u.received += bytes.length; // before the await: a second chunk racing this one sees the new offset
    try {
      await appendFile(u.path, bytes);
    } catch (e) {
      this.dropUpload(u);
      if (isDiskFull(e)) throw diskFull(`cannot store the upload of ${u.fileName} (${(e as Error).message})`, this.uploadDir);
      throw new Error(`cannot store the upload of ${u.fileName} (${(e as Error).message})`);
    }
    return { received: u.received };
  }

  uploadAbort(uploadId: string): { ok: true } {
    const u = this.uploads.get(uploadId);
    if (!u) throw notFound(`upload ${uploadId} not found`);
    this.dropUpload(u);
    return { ok: true };
  }

  private dropUpload(u: Upload): void {
    this.uploads.delete(u.id);
    rmSync(u.path, { force: true });
  }

  // ---------- import ----------

  scan(source: { kind: "path"; path: string } | { kind: "upload"; uploadId: string }): { importId: string; fileName: string; totalBytes: number } {
    let path: string;
    let fileName: string;
    let sourceFile: string;
    let upload: Upload | null = null;
    if (source.kind === "upload") {
      upload = this.uploads.get(source.uploadId) ?? null;
      if (!upload) throw notFound(`upload ${source.uploadId} not found`);
      if (upload.received !== upload.size) throw busy(`the upload of ${upload.fileName} is incomplete (${upload.received} of ${upload.size} bytes)`);
      this.uploads.delete(upload.id); // the import owns its file now
      path = upload.path;
      fileName = upload.fileName;
      sourceFile = upload.fileName;
    } else {
      path = resolve(source.path);
      fileName = basename(path);
      sourceFile = path;
    }
    let totalBytes = 0;
    try {
      totalBytes = statSync(path).size;
    } catch {
      // scanFile reports it as the import's error ("x.jsonl: file not found")
    }
    const job: ImportJob = {
      id: randomUUID(),
      path,
      fileName,
      sourceFile,
      upload,
      state: "scanning",
      progress: { bytesRead: 0, totalBytes, records: 0, valid: 0, rejectedCount: 0 },
      scan: null,
      report: null,
      datasetId: null,
      error: null,
      abort: new AbortController(),
      scanning: Promise.resolve(),
    };
    this.imports.set(job.id, job);
    this.forgetOldImports();
    job.scanning = this.runScan(job);
    return { importId: job.id, fileName, totalBytes };
  }

  private async runScan(job: ImportJob): Promise<void> {
    // let the caller receive the importId before the first event
    await new Promise((r) => setImmediate(r));
    try {
      const scan = await scanFile(job.path, {
        signal: job.abort.signal,
        limits: this.opts.importLimits ?? {},
        onProgress: (p) => {
          job.progress = p;
          this.emit("datasets.import.progress", { importId: job.id, ...p });
        },
      });
      if (job.state !== "scanning") return;
      job.scan = scan;
      job.progress = { bytesRead: scan.bytesRead, totalBytes: scan.totalBytes, records: scan.records, valid: scan.valid, rejectedCount: scan.rejectedCount };
      job.report = {
        importId: job.id,
        fileName: job.fileName,
        container: scan.container,
        totalBytes: scan.totalBytes,
        records: scan.records,
        valid: scan.valid,
        formats: scan.formats,
        rejectedCount: scan.rejectedCount,
        rejected: scan.rejected,
      };
      this.setState(job, "ready");
    } catch (e) {
      if (e instanceof ScanCancelled || job.state === "cancelled") return;
      const message = e instanceof Error ? e.message : String(e);
      // an upload's temp file means nothing to the user: the error names the file they chose
      job.error = job.upload ? message.split(job.path).join(job.fileName) : message;
      // an uploaded file the user cannot fix in place is of no further use
      this.dropJobFile(job);
      this.setState(job, "failed");
    }
  }

  status(importId: string): ImportStatus {
    return this.statusOf(this.job(importId));
  }

  /**
   * The user chose "import the valid rows": one transaction creates the dataset and inserts every valid sample
   * (read again from the file, which must be the one scanned), on a worker thread with its own connection so this
   * process keeps answering (electron/datasets/commit.ts). Progress: datasets.import.progress (records = samples
   * inserted so far). Cancelled while committing: rolled back, and this call fails with code "busy".
   */
  async commit(importId: string, name?: string): Promise<DatasetSummary> {
    const job = this.job(importId);
    if (job.state !== "ready") throw busy(`the import is ${job.state}; only a scanned import (ready) can be committed`);
    const scan = job.scan!;
    if (scan.valid === 0) throw invalid(`nothing to import: no line of ${job.fileName} is valid`);
    const request: CommitRequest = {
      path: job.path,
      expect: { size: scan.size, mtimeMs: scan.mtimeMs, valid: scan.valid },
      dataset: {
        name: (name !== undefined ? checkName(name) : "") || basename(job.fileName, extname(job.fileName)) || job.fileName,
        sourceFile: job.sourceFile,
        rejectedCount: scan.rejectedCount,
        rejected: scan.rejected,
      },
      limits: this.opts.importLimits ?? {},
    };
    job.cancelFlag = new Int32Array(new SharedArrayBuffer(4));
    this.setState(job, "committing");
    const onProgress = (inserted: number) => this.emit("datasets.import.progress", { importId: job.id, ...job.progress, records: inserted, valid: inserted });
    const running = this.runBulkTask({ kind: "import", request }, onProgress, job.cancelFlag);
    job.committing = running.then(() => undefined, () => undefined);
    let datasetId: string;
    try {
      datasetId = ((await running) as { datasetId: string }).datasetId;
    } catch (e) {
      if (e instanceof CommitCancelled) throw busy("the import was cancelled");
      // the transaction rolled back; a full disk says so (with the room left where the database is)
      const full = asDiskFull(e, this.databaseFolder());
      const message = full ? full.message : e instanceof Error ? e.message : String(e);
      job.error = message;
      this.dropJobFile(job);
      this.setState(job, "failed");
      throw full ?? invalid(message);
    }
    job.datasetId = datasetId;
    this.dropJobFile(job);
    this.setState(job, "committed");
    this.changed(datasetId);
    return this.summary(datasetId);
  }

  /** A whole-dataset write on the bulk worker thread (or in-process for an in-memory database). */
  private runBulkTask(task: BulkTask, onProgress: (n: number) => void = () => undefined, flag = new Int32Array(new SharedArrayBuffer(4))): Promise<BulkResult> {
    const dbFile = this.repo.db.name;
    const cancelled = () => Atomics.load(flag, 0) !== 0;
    this.bulkWrites++;
    const done = <T>(p: Promise<T>) => p.finally(() => this.bulkWrites--);
    if (!dbFile || this.repo.db.memory) {
      return done(new Promise((resolve, reject) => {
        try {
          resolve(runBulk(this.repo.db, task, onProgress, cancelled));
        } catch (e) {
          reject(e);
        }
      }));
    }
    return done(new Promise((resolve, reject) => {
      const worker = new Worker(bulkWorkerPath(), { workerData: { dbFile, task, cancel: flag.buffer } });
      let settled = false;
      worker.on("message", (m: BulkMessage) => {
        if (m.t === "progress") return onProgress(m.inserted);
        settled = true;
        if (m.t === "done") resolve(m.result);
        else if (m.t === "cancelled") reject(new CommitCancelled());
        else reject(Object.assign(new Error(m.message), m.code ? { code: m.code } : {}));
      });
      worker.on("error", (e) => {
        if (!settled) reject(e);
        settled = true;
      });
      worker.on("exit", (code) => {
        if (!settled) reject(new Error(`the datasets worker stopped (exit code ${code})`));
        settled = true;
      });
    }));
  }

  /** Cancel a scan or a commit (rolled back), or discard a scanned report; an upload's temp file goes. */
  async cancel(importId: string): Promise<{ ok: true }> {
    const job = this.job(importId);
    if (job.state === "committed") throw busy(`the import is already committed (dataset ${job.datasetId}); delete the dataset instead`);
    if (job.state === "cancelled") return { ok: true };
    const was = job.state;
    this.setState(job, "cancelled");
    job.abort.abort();
    if (job.cancelFlag) Atomics.store(job.cancelFlag, 0, 1);
    if (was === "scanning") await job.scanning;
    if (was === "committing") await job.committing;
    this.dropJobFile(job);
    return { ok: true };
  }

  /** For tests and the CLI: resolves when the import's scan has ended (ready, failed or cancelled). */
  async scanned(importId: string): Promise<ImportStatus> {
    const job = this.job(importId);
    await job.scanning;
    return this.statusOf(job);
  }

  private job(importId: string): ImportJob {
    const job = this.imports.get(importId);
    if (!job) throw notFound(`import ${importId} not found`);
    return job;
  }

  private statusOf(job: ImportJob): ImportStatus {
    return {
      importId: job.id,
      state: job.state,
      ...job.progress,
      report: job.report,
      datasetId: job.datasetId,
      error: job.error,
    };
  }

  private setState(job: ImportJob, state: ImportStatus["state"]): void {
    job.state = state;
    this.emit("datasets.import.status", this.statusOf(job));
  }

  private dropJobFile(job: ImportJob): void {
    if (job.upload) rmSync(job.upload.path, { force: true });
  }

  private forgetOldImports(): void {
    const finished = [...this.imports.values()].filter((j) => j.state === "committed" || j.state === "cancelled" || j.state === "failed");
    for (const j of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED_IMPORTS))) this.imports.delete(j.id);
  }

  // ---------- samples ----------

  listSamples(q: Omit<SampleQuery, "tokenizerKey" | "maxSeqLen"> & { tokenizer?: TokenizerChoice }): { total: number; offset: number; items: SampleRow[] } {
    this.mustExist(q.datasetId);
    const { tokenizer, ...rest } = q;
    const query: SampleQuery = { ...rest };
    if (tokenizer) {
      query.tokenizerKey = this.counter(tokenizer.modelDir).key;
      if (tokenizer.maxSeqLen !== undefined) query.maxSeqLen = tokenizer.maxSeqLen;
    }
    return { offset: q.offset, ...this.repo.listSamples(query) };
  }

  async getSample(id: string, tokenizer?: TokenizerChoice): Promise<Sample> {
    const r = this.row(id);
    if (!tokenizer) return this.toSample(r);
    const c = this.counter(tokenizer.modelDir);
    let tokens = this.repo.cachedTokens(r.id, c.key, r.revision);
    if (tokens === null) {
      tokens = await c.count(JSON.parse(r.messages) as SampleMessage[]);
      this.repo.putTokens([{ sampleId: r.id, revision: r.revision, tokens }], c.key);
    }
    return this.repo.toSample(r, tokens, tokenizer.maxSeqLen);
  }

  updateSample(id: string, messages: SampleMessage[]): Sample {
    this.row(id);
    checkSample(messages, this.opts.importLimits?.maxRecordBytes);
    const r = this.repo.updateSample(id, messages);
    this.changed(r.dataset_id);
    return this.toSample(r);
  }

  addSample(datasetId: string, messages: SampleMessage[]): Sample {
    this.mustExist(datasetId);
    checkSample(messages, this.opts.importLimits?.maxRecordBytes);
    const r = this.repo.addSample(datasetId, messages, { undo: "add" });
    this.changed(datasetId);
    return this.toSample(r);
  }

  duplicateSample(id: string): Sample {
    this.row(id);
    const r = this.repo.duplicateSample(id);
    this.changed(r.dataset_id);
    return this.toSample(r);
  }

  deleteSample(id: string): { ok: true } {
    const r = this.row(id);
    this.repo.deleteSample(id);
    this.changed(r.dataset_id);
    return { ok: true };
  }

  undo(datasetId: string): { undone: "edit" | "add" | "duplicate" | "delete"; sample: Sample | null } {
    this.mustExist(datasetId);
    const u = this.repo.undo(datasetId);
    if (!u) throw notFound("nothing to undo in this dataset");
    this.changed(datasetId);
    const r = u.sampleId ? this.repo.getRow(u.sampleId) : null;
    return { undone: u.action, sample: r ? this.toSample(r) : null };
  }

  private row(id: string): SampleDbRow {
    const r = this.repo.getRow(id);
    if (!r) throw notFound(`sample ${id} not found`);
    return r;
  }

  private toSample(r: SampleDbRow): Sample {
    return this.repo.toSample(r, null);
  }

  // ---------- token counts ----------

  /** The counter of a model folder (loaded once; loaded again when its tokenizer.json changes). */
  private counter(modelDir: string): SampleTokenCounter {
    const dir = resolve(modelDir);
    let mtimeMs = -1;
    try {
      mtimeMs = statSync(join(dir, "tokenizer.json")).mtimeMs;
    } catch {
      // fromFolder names the missing file
    }
    const hit = this.counters.get(dir);
    if (hit && hit.mtimeMs === mtimeMs) return hit.counter;
    let counter: SampleTokenCounter;
    try {
      counter = SampleTokenCounter.fromFolder(dir);
    } catch (e) {
      throw invalid(`tokenizer.modelDir: ${(e as Error).message}`);
    }
    if (this.counters.size >= 4) this.counters.delete(this.counters.keys().next().value!);
    this.counters.set(dir, { mtimeMs, counter });
    return counter;
  }

  countTokens(datasetId: string, tokenizer: TokenizerChoice): { jobId: string; total: number; pending: number } {
    this.mustExist(datasetId);
    const total = this.repo.sampleCount(datasetId);
    const counter = this.counter(tokenizer.modelDir);
    for (const j of this.tokenJobs.values()) if (j.datasetId === datasetId) j.cancelled = true;
    const job: TokenJob = { id: randomUUID(), datasetId, cancelled: false };
    this.tokenJobs.set(job.id, job);
    const pending = this.repo.countUncounted(datasetId, counter.key);
    void this.runTokenJob(job, counter, total, pending);
    return { jobId: job.id, total, pending };
  }

  cancelTokens(jobId: string): { ok: true } {
    const job = this.tokenJobs.get(jobId);
    if (!job) throw notFound(`token count ${jobId} not found (it may have finished)`);
    job.cancelled = true;
    return { ok: true };
  }

  /**
   * Counts TOKEN_BATCH samples per text-worker job (the template and tokenizer never run on this thread); each
   * job's counts are written in one transaction. Progress at most every 100 ms.
   */
  private async runTokenJob(job: TokenJob, counter: SampleTokenCounter, total: number, pending: number): Promise<void> {
    let done = total - pending;
    let lastEmit = 0;
    const progress = (state: "running" | "done" | "failed" | "cancelled", error: string | null = null) =>
      this.emit("datasets.tokens.progress", { jobId: job.id, datasetId: job.datasetId, done, total, state, error });
    await new Promise((r) => setImmediate(r));
    try {
      let after = 0;
      for (;;) {
        if (job.cancelled) return progress("cancelled");
        while (this.bulkWrites > 0 && !job.cancelled) await new Promise((r) => setTimeout(r, 50));
        const rows = this.repo.uncounted(job.datasetId, counter.key, after, 512);
        if (rows.length === 0) break;
        for (let i = 0; i < rows.length; i += TOKEN_BATCH) {
          const part = rows.slice(i, i + TOKEN_BATCH);
          // Rendered and tokenized in the text worker: this thread only parses and writes.
          const counts = await counter.countMany(part.map((r) => JSON.parse(r.messages) as SampleMessage[]));
          if (job.cancelled) return progress("cancelled");
          this.repo.putTokens(part.map((r, k) => ({ sampleId: r.id, revision: r.revision, tokens: counts[k] })), counter.key);
          after = part[part.length - 1].rowid;
          done += part.length;
          if (Date.now() - lastEmit >= 100) {
            lastEmit = Date.now();
            progress("running");
          }
        }
      }
      done = Math.min(done, total);
      progress("done");
    } catch (e) {
      const full = asDiskFull(e, this.databaseFolder());
      progress("failed", full ? full.message : e instanceof Error ? e.message : String(e));
    } finally {
      this.tokenJobs.delete(job.id);
    }
  }

  /** For tests and the CLI: resolves when no token count of this dataset runs. */
  async tokensIdle(datasetId: string): Promise<void> {
    while ([...this.tokenJobs.values()].some((j) => j.datasetId === datasetId)) await new Promise((r) => setTimeout(r, 5));
  }

  // ---------- helpers ----------

  private summary(id: string): DatasetSummary {
    const d = this.repo.summary(id);
    if (!d) throw notFound(`dataset ${id} not found`);
    return d;
  }

  /** Where the database file is (the data folder for an in-memory one): the disk a SQLITE_FULL is about. */
  private databaseFolder(): string {
    const file = this.repo.db.name;
    return file && !this.repo.db.memory ? dirname(resolve(file)) : dirname(this.uploadDir);
  }

  /** An existence check that costs one primary-key lookup (a summary counts the samples). */
  private mustExist(id: string): void {
    if (!this.repo.exists(id)) throw notFound(`dataset ${id} not found`);
  }

  private changed(id: string): void {
    this.emit("datasets.changed", { id, deleted: false });
  }

  /** Cancel running scans and token counts (the app is closing). */
  async dispose(): Promise<void> {
    for (const j of this.tokenJobs.values()) j.cancelled = true;
    const scans = [...this.imports.values()].filter((j) => j.state === "scanning" || j.state === "committing");
    await Promise.all(scans.map((j) => this.cancel(j.id).catch(() => undefined)));
    for (const u of [...this.uploads.values()]) this.dropUpload(u);
  }
}

/** The compiled bulk worker (out/electron/datasets/bulk-worker.js), whether this module runs compiled or from source. */
export function bulkWorkerPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "../datasets/bulk-worker.js"), join(here, "../../out/electron/datasets/bulk-worker.js")];
  for (const p of candidates) if (existsSync(p)) return p;
  throw new Error(`the datasets worker is not built: none of ${candidates.join(", ")} exists; run "npm run build:ts"`);
}

/**
 * The import's validation rules for a sample saved in the editor, and its size: a sample longer than the import's
 * line limit as a jsonl line would export to a file that cannot be imported again.
 */
export function checkSample(messages: readonly SampleMessage[], maxBytes = MAX_RECORD_BYTES): void {
  const bad = validateMessages(messages);
  if (bad) throw invalid(bad.error);
  const bytes = Buffer.byteLength(JSON.stringify({ messages }));
  if (bytes > maxBytes) throw invalid(`messages: the sample is ${bytes} bytes as a jsonl line, more than the limit of ${formatLimit(maxBytes)} for one sample`);
}

/** A dataset name from a caller that may not have come through the contract (the CLI's --name): trimmed, no NUL. */
function checkName(name: string): string {
  if (name.includes("\0")) throw invalid(`name: ${NUL_REFUSED}`);
  return name.trim();
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) n++;
  return n;
}

/** A download name from a dataset name: no path separators or control characters. */
export function exportFileName(name: string): string {
  // eslint-disable-next-line no-control-regex
  const safe = name.replace(/[\\/:*?"<>|\u0000-\u001f]+/g, "_").trim().slice(0, 120);
  return `${safe || "dataset"}.jsonl`;
}
