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
  type Job,
  type RejectedLine,
  type Sample,
  type SampleMessage,
  type SampleRow,
  type TokenizerChoice,
} from "../contract.js";
import { validateMessages } from "../datasets/formats.js";
import { formatLimit, MAX_RECORD_BYTES } from "../datasets/records.js";
import { CommitCancelled, runBulk, type BulkMessage, type BulkResult, type BulkTask, type CommitRequest } from "../datasets/bulk.js";
import { scanFile, ScanCancelled, type ImportLimits, type ScanResult } from "../datasets/scan.js";
import { SampleTokenCounter } from "../datasets/tokens.js";
import { DatasetRepo, type SampleDbRow, type SampleQuery } from "../store/datasets.js";
import { openDatabase, type Db } from "../store/db.js";
import { JobsStore } from "../store/jobs.js";
import { isActive, JobService } from "../jobs/service.js";
import type { JobKindHandler } from "../jobs/kind.js";
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

/** A scan job's parameters: the file read (the user's path, or an upload's temp file) and what the dataset records. */
interface ScanParams {
  path: string;
  fileName: string;
  /** What the dataset records as its source: the user's path, or the uploaded file's name. */
  sourceFile: string;
  /** The upload's temp file, which goes when the import ends (null for a path). */
  uploadPath: string | null;
}

/** A scan job's result: the report without its rejected lines (those are in the job's saved detail). */
type ScanOutcome = Omit<ScanResult, "rejected" | "bytesRead"> & { fileName: string };

interface ImportParams {
  /** The scan job whose valid rows are committed. */
  scanId: string;
  name: string;
}

interface ImportOutcome {
  datasetId: string;
  name: string;
  samples: number;
}

interface TokensParams {
  datasetId: string;
  /** For the job's title. */
  datasetName: string;
  modelDir: string;
}

/** Samples per text-worker job when counting tokens (a cancel takes effect between jobs). */
const TOKEN_BATCH = 64;

export interface DatasetServiceOptions {
  /** Native open/save dialog (Electron); absent elsewhere. */
  pickFile?: (purpose: "import" | "export", suggestedName?: string) => Promise<string | null>;
  /** Delete what a crashed run left in <dataDir>/uploads (the app at start; not the CLI). */
  cleanStaleUploads?: boolean;
  /** Line and file size limits of an import (defaults: 16 MiB per line, 64 GiB per file; tests use small ones). */
  importLimits?: ImportLimits;
  /**
   * The app's job service, which the scan, import and tokens kinds register with. Absent (the CLI, which may run
   * beside the app on the same database): a job service of its own on an in-memory table.
   */
  jobs?: JobService;
}

export class DatasetService {
  readonly repo: DatasetRepo;
  private readonly uploads = new Map<string, Upload>();
  private readonly jobs: JobService;
  /** The in-memory database of a job service this service made for itself (closed by dispose). */
  private readonly ownJobs: Db | null = null;
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
    if (opts.jobs) this.jobs = opts.jobs;
    else {
      this.ownJobs = openDatabase(":memory:");
      this.jobs = new JobService({ store: new JobsStore(this.ownJobs), emit });
    }
    this.jobs.register(this.scanKind);
    this.jobs.register(this.importKind);
    this.jobs.register(this.tokensKind);
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
    this.cancelTokenJobs(id);
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

  // ---------- import: a "scan" job, then an "import" job ----------
  //
  // A scan job reads the file (progress in bytes, figures records / valid / rejected) and ends done with the
  // report (ScanOutcome; the rejected lines in its saved detail, not in every jobs.job event). The user's choice
  // then either starts an "import" job (subject: the scan's id) that commits the valid rows in one transaction, or
  // discards the scan (its job is removed: no trace). datasets.import.status is a view of those two jobs.

  scan(source: { kind: "path"; path: string } | { kind: "upload"; uploadId: string }): { importId: string; fileName: string; totalBytes: number } {
    let params: ScanParams;
    if (source.kind === "upload") {
      const upload = this.uploads.get(source.uploadId) ?? null;
      if (!upload) throw notFound(`upload ${source.uploadId} not found`);
      if (upload.received !== upload.size) throw busy(`the upload of ${upload.fileName} is incomplete (${upload.received} of ${upload.size} bytes)`);
      this.uploads.delete(upload.id); // the scan job owns its file now
      params = { path: upload.path, fileName: upload.fileName, sourceFile: upload.fileName, uploadPath: upload.path };
    } else {
      const path = resolve(source.path);
      params = { path, fileName: basename(path), sourceFile: path, uploadPath: null };
    }
    let totalBytes = 0;
    try {
      totalBytes = statSync(params.path).size;
    } catch {
      // the scan reports it as the job's error ("x.jsonl: file not found")
    }
    const job = this.jobs.start("scan", params);
    return { importId: job.id, fileName: params.fileName, totalBytes };
  }

  private readonly scanKind: JobKindHandler<ScanParams> = {
    kind: "scan",
    canPause: false,
    canResume: false,
    title: (p) => `Check ${p.fileName}`,
    label: (p) => ({ key: "scan", args: { name: p.fileName } }),
    subject: () => null,
    start: (p, report) => {
      const abort = new AbortController();
      const done = (async (): Promise<ScanOutcome> => {
        try {
          const scan = await scanFile(p.path, {
            signal: abort.signal,
            limits: this.opts.importLimits ?? {},
            onProgress: (pr) => {
              report.progress(pr.bytesRead, pr.totalBytes, "bytes");
              report.figures({ records: pr.records, valid: pr.valid, rejected: pr.rejectedCount });
            },
          });
          report.progress(scan.bytesRead, scan.totalBytes, "bytes");
          report.figures({ records: scan.records, valid: scan.valid, rejected: scan.rejectedCount });
          report.detail({ rejected: scan.rejected });
          const { rejected: _r, bytesRead: _b, ...outcome } = scan;
          return { ...outcome, fileName: p.fileName };
        } catch (e) {
          // an uploaded file the user cannot fix in place is of no further use
          if (p.uploadPath) rmSync(p.uploadPath, { force: true });
          if (e instanceof ScanCancelled) throw e;
          const message = e instanceof Error ? e.message : String(e);
          // an upload's temp file means nothing to the user: the error names the file they chose
          throw new Error(p.uploadPath ? message.split(p.path).join(p.fileName) : message);
        }
      })();
      return { done, cancel: () => abort.abort() };
    },
  };

  /** The import's state, from its scan job and the import job that commits it (after a reload, after a restart). */
  status(importId: string): ImportStatus {
    const scan = this.scanJob(importId);
    const out = scan.result as ScanOutcome | null;
    const f = scan.figures ?? {};
    const commit = this.commitJobOf(importId);
    const base: ImportStatus = {
      importId,
      state: "scanning",
      bytesRead: scan.progress?.done ?? 0,
      totalBytes: scan.progress?.total ?? out?.totalBytes ?? 0,
      records: f.records ?? 0,
      valid: f.valid ?? 0,
      rejectedCount: f.rejected ?? 0,
      report: null,
      datasetId: null,
      error: null,
    };
    if (scan.status === "failed" || scan.status === "interrupted") return { ...base, state: "failed", error: scan.error ?? scan.message ?? "the scan stopped" };
    if (scan.status === "cancelled") return { ...base, state: "cancelled" };
    if (scan.status !== "done" || !out) return base;
    const report: ImportReport = {
      importId,
      fileName: out.fileName,
      container: out.container,
      totalBytes: out.totalBytes,
      records: out.records,
      valid: out.valid,
      formats: out.formats,
      rejectedCount: out.rejectedCount,
      rejected: (this.jobs.detailOf(importId).rejected as RejectedLine[] | undefined) ?? [],
    };
    const ready = { ...base, report, records: out.records, valid: out.valid, rejectedCount: out.rejectedCount };
    if (!commit) return { ...ready, state: "ready" };
    switch (commit.status) {
      case "done":
        return { ...ready, state: "committed", datasetId: (commit.result as ImportOutcome).datasetId };
      case "failed":
      case "interrupted":
        return { ...ready, state: "failed", error: commit.error ?? commit.message };
      case "cancelled":
        return { ...ready, state: "cancelled" };
      default:
        return { ...ready, state: "committing", records: commit.progress?.done ?? 0, valid: commit.progress?.done ?? 0 };
    }
  }

  private scanJob(importId: string): Job {
    let job: Job;
    try {
      job = this.jobs.get(importId);
    } catch {
      throw notFound(`import ${importId} not found`);
    }
    if (job.kind !== "scan") throw notFound(`import ${importId} not found`);
    return job;
  }

  private commitJobOf(importId: string): Job | null {
    const all = this.jobs.list("import").filter((j) => j.subject === importId);
    return all[all.length - 1] ?? null;
  }

  /**
   * The user chose "import the valid rows": an import job runs one transaction that creates the dataset and
   * inserts every valid sample (read again from the file, which must be the one scanned), on a worker thread
   * with its own connection so this process keeps answering (electron/datasets/bulk.ts). Resolves when committed;
   * cancelled while committing: rolled back, and this call fails with code "busy".
   */
  async commit(importId: string, name?: string): Promise<DatasetSummary> {
    const st = this.status(importId);
    if (st.state !== "ready") throw busy(`the import is ${st.state}; only a scanned import (ready) can be committed`);
    if (st.report!.valid === 0) throw invalid(`nothing to import: no line of ${st.report!.fileName} is valid`);
    const fileName = st.report!.fileName;
    const chosen = name !== undefined ? checkName(name) : "";
    const job = this.jobs.start<ImportParams>("import", { scanId: importId, name: chosen || basename(fileName, extname(fileName)) || fileName });
    const end = await this.jobs.settled(job.id);
    if (end.status === "done") return this.summary((end.result as ImportOutcome).datasetId);
    if (end.status === "cancelled") throw busy("the import was cancelled");
    // the job keeps its error as text; a full disk (asDiskFull in the kind, with the room left) keeps its code
    const message = end.error ?? "the import failed";
    throw message.startsWith("disk full: ") ? new RpcError("disk_full", message) : invalid(message);
  }

  private readonly importKind: JobKindHandler<ImportParams> = {
    kind: "import",
    canPause: false,
    canResume: false,
    title: (p) => `Import ${p.name}`,
    label: (p) => ({ key: "import", args: { name: p.name } }),
    subject: (p) => p.scanId,
    start: (p, report) => {
      const scan = this.scanJob(p.scanId);
      const sp = this.jobs.paramsOf(p.scanId) as ScanParams;
      const out = scan.result as ScanOutcome | null;
      if (scan.status !== "done" || !out) throw new Error(`${sp.fileName}: the file's check did not finish; drop the file again`);
      const request: CommitRequest = {
        path: sp.path,
        expect: { size: out.size, mtimeMs: out.mtimeMs, valid: out.valid },
        dataset: {
          name: p.name,
          sourceFile: sp.sourceFile,
          rejectedCount: out.rejectedCount,
          rejected: (this.jobs.detailOf(p.scanId).rejected as RejectedLine[] | undefined) ?? [],
        },
        limits: this.opts.importLimits ?? {},
      };
      const flag = new Int32Array(new SharedArrayBuffer(4));
      report.progress(0, out.valid, "samples");
      const done = this.runBulkTask({ kind: "import", request }, (n) => report.progress(n, out.valid, "samples"), flag).then(
        (r): ImportOutcome => {
          const datasetId = (r as { datasetId: string }).datasetId;
          this.changed(datasetId);
          return { datasetId, name: p.name, samples: out.valid };
        },
        (e: unknown) => {
          if (e instanceof CommitCancelled) throw e;
          // the transaction rolled back; a full disk says so (with the room left where the database is)
          throw asDiskFull(e, this.databaseFolder()) ?? e;
        },
      );
      // an upload's temp file goes once its rows are in (or will never be)
      const settled = done.finally(() => {
        if (sp.uploadPath) rmSync(sp.uploadPath, { force: true });
      });
      return { done: settled, cancel: () => Atomics.store(flag, 0, 1) };
    },
  };

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

  /**
   * "Import nothing": cancels a running scan or commit (rolled back) or discards a scanned report; the scan's job
   * and its upload go. A commit's import job stays in the activity list as cancelled.
   */
  async cancel(importId: string): Promise<{ ok: true }> {
    const st = this.status(importId);
    if (st.state === "committed") throw busy(`the import is already committed (dataset ${st.datasetId}); delete the dataset instead`);
    const commit = this.commitJobOf(importId);
    if (commit && isActive(commit)) {
      this.jobs.cancel(commit.id);
      await this.jobs.settled(commit.id);
    }
    if (st.state === "scanning") {
      this.jobs.cancel(importId);
      await this.jobs.settled(importId);
    }
    const upload = (this.jobs.paramsOf(importId) as ScanParams).uploadPath;
    if (upload) rmSync(upload, { force: true });
    this.jobs.remove(importId);
    return { ok: true };
  }

  /** For tests and the CLI: resolves when the import's scan has ended (ready, failed or cancelled). */
  async scanned(importId: string): Promise<ImportStatus> {
    this.scanJob(importId);
    await this.jobs.settled(importId);
    return this.status(importId);
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

  /**
   * Counts tokens of every sample not yet counted for this tokenizer, as a "tokens" job (subject: the dataset); a
   * count already running for the dataset is cancelled. Checks the tokenizer before any job exists.
   */
  countTokens(datasetId: string, tokenizer: TokenizerChoice): { jobId: string; total: number; pending: number } {
    this.mustExist(datasetId);
    const total = this.repo.sampleCount(datasetId);
    const counter = this.counter(tokenizer.modelDir);
    this.cancelTokenJobs(datasetId);
    const pending = this.repo.countUncounted(datasetId, counter.key);
    const job = this.jobs.start<TokensParams>("tokens", { datasetId, datasetName: this.repo.name(datasetId) ?? datasetId, modelDir: resolve(tokenizer.modelDir) });
    return { jobId: job.id, total, pending };
  }

  private cancelTokenJobs(datasetId: string): void {
    for (const j of this.jobs.list("tokens")) if (j.subject === datasetId && isActive(j)) this.jobs.cancel(j.id);
  }

  /**
   * Counts TOKEN_BATCH samples per text-worker call (the template and tokenizer never run on this thread); each
   * batch's counts are written in one transaction, so a cancel, a crash or a resume loses at most one batch.
   */
  private readonly tokensKind: JobKindHandler<TokensParams> = {
    kind: "tokens",
    canPause: false,
    // what is counted is kept: a resume counts the rest
    canResume: true,
    title: (p) => `Count tokens of ${p.datasetName}`,
    label: (p) => ({ key: "tokens", args: { name: p.datasetName } }),
    subject: (p) => p.datasetId,
    start: (p, report) => {
      this.mustExist(p.datasetId);
      const counter = this.counter(p.modelDir);
      let cancelled = false;
      const done = (async () => {
        const total = this.repo.sampleCount(p.datasetId);
        let counted = total - this.repo.countUncounted(p.datasetId, counter.key);
        report.progress(counted, total, "samples");
        await new Promise((r) => setImmediate(r));
        let after = 0;
        for (;;) {
          if (cancelled) return null;
          const rows = this.repo.uncounted(p.datasetId, counter.key, after, 512);
          if (rows.length === 0) break;
          for (let i = 0; i < rows.length; i += TOKEN_BATCH) {
            const part = rows.slice(i, i + TOKEN_BATCH);
            // Rendered and tokenized in the text worker: this thread only parses and writes.
            const counts = await counter.countMany(part.map((r) => JSON.parse(r.messages) as SampleMessage[]));
            // a bulk write (an import's transaction on its worker) holds the database's write lock: writing now
            // would block this thread until it commits, so the counts wait for it instead
            while (this.bulkWrites > 0 && !cancelled) await new Promise((r) => setTimeout(r, 50));
            if (cancelled) return null;
            try {
              this.repo.putTokens(part.map((r, k) => ({ sampleId: r.id, revision: r.revision, tokens: counts[k] })), counter.key);
            } catch (e) {
              throw asDiskFull(e, this.databaseFolder()) ?? e;
            }
            after = part[part.length - 1].rowid;
            counted = Math.min(counted + part.length, total);
            report.progress(counted, total, "samples");
          }
        }
        return { counted: total, total };
      })();
      return { done, cancel: () => void (cancelled = true) };
    },
  };

  /** For tests and the CLI: resolves when no token count of this dataset runs. */
  async tokensIdle(datasetId: string): Promise<void> {
    for (const j of this.jobs.list("tokens")) if (j.subject === datasetId) await this.jobs.settled(j.id);
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

  /** The app is closing: uploads not yet scanned go; the jobs (scans, imports, counts) stop with the job service. */
  async dispose(): Promise<void> {
    for (const u of [...this.uploads.values()]) this.dropUpload(u);
    if (this.ownJobs) {
      await this.jobs.dispose();
      this.ownJobs.close();
    }
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
