// Downloads one model from a hub into the models folder, resumable across restarts.
//
// On disk, for a model <owner>/<name> (folder name <owner>--<name>), while it downloads:
//   <models>/<owner>--<name>.download.json   the sidecar: repo, source, endpoint, the pinned commit, the file list
//                                            with sizes and checksums (written to a temporary name and renamed)
//   <models>/<owner>--<name>.partial/        the staging folder: <file>.partial while a file is being fetched,
//                                            <file> once its checksum matched
// and when every file is verified the staging folder is renamed to <models>/<owner>--<name> and the sidecar removed.
// So a model folder that exists is complete, and a crash, a pause or a lost connection leaves exactly what is needed
// to go on: the sidecar says what to fetch, each .partial's length says where to resume (HTTP Range: bytes=N-).
// The sidecar also says whether the download was paused (pausedAt, written by pause(), cleared when a run starts):
// one found without it at the next start stopped some other way (a crash, a kill, an error) and is "interrupted".
//
// Files are fetched one after another over one connection, not in parallel: one stream from the hub's CDN already
// fills a home connection, a single writer keeps the disk sequential, and resume state stays one offset per file.
//
// Checksums: the hub's LFS sha256 (HF weights; every file on ModelScope), or the git blob id — sha1("blob <size>\0"
// + content) — for small HF files kept in git. The hash is incremental: a resumed file hashes the bytes already on
// disk (reading them, not fetching them again) and then each new chunk as it arrives. A file whose checksum does not
// match is fetched again from the start once; a second mismatch stops the download with a clear error. A file the
// hub lists with neither (ModelScope files without Sha256, a mirror without blob ids) can only be checked by its size:
// its progress entry says checksum "none", the UI and `pull` name it, and requireChecksums refuses such a listing
// before anything is written or fetched.
//
// File names come from the hub and are not trusted: every name goes through files.ts's checkHubPath / stagedFilePath
// (listing, sidecar, and each path written), so nothing is ever written outside the staging folder.
import { createHash, type Hash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { HubClient, HubError, type HubSource, type RemoteFile } from "./hub.js";
import { writeFileAtomic } from "./atomic-write.js";
import { writeOrigin } from "./local.js";
import { selectFiles, stagedFilePath, unsafeHubPathReason } from "./files.js";

/** interrupted: found at start-up unfinished and not paused (the app or `pull` was killed, or it failed). */
export type DownloadState = "queued" | "downloading" | "paused" | "interrupted" | "done" | "error" | "cancelled";
export type FileState = "pending" | "downloading" | "verifying" | "done";
export type ChecksumKind = "sha256" | "git-sha1" | "none";

/** How a listed file can be verified: the hub's sha256, git's blob id, or (neither listed) only its size. */
export function checksumKind(f: RemoteFile): ChecksumKind {
  return f.sha256 ? "sha256" : f.gitSha1 ? "git-sha1" : "none";
}

export interface DownloadProgress {
  id: string;
  repo: string;
  source: HubSource;
  /** The final model folder (exists only once state is "done"). */
  dir: string;
  state: DownloadState;
  totalBytes: number;
  doneBytes: number;
  /** Bytes per second over the last few seconds (0 when not downloading). */
  bytesPerSecond: number;
  /** Seconds left at the current speed; null when unknown. */
  etaSeconds: number | null;
  /** checksum: how the file is verified; "none" = the hub gave no checksum, only its size is checked. */
  files: { path: string; size: number; doneBytes: number; state: FileState; checksum: ChecksumKind }[];
  error: string | null;
  errorKind: HubError["kind"] | null;
}

export interface Sidecar {
  version: 1;
  repo: string;
  source: HubSource;
  endpoint: string;
  revision: string;
  files: RemoteFile[];
  createdAt: number;
  /** When pause() stopped it; null or absent while it runs (or after a crash). */
  pausedAt?: number | null;
}

export interface DownloadOptions {
  modelsDir: string;
  repo: string;
  source: HubSource;
  endpoint?: string;
  revision?: string;
  token?: string | null;
  /** No data for this long aborts with a "stalled" error (default 30 s; tests use less). */
  stallMs?: number;
  /** Called at most every progressMs (and on every state change). */
  onProgress?: (p: DownloadProgress) => void;
  progressMs?: number;
  /** Refuse (before writing or fetching anything) a download with a file the hub lists without a checksum. */
  requireChecksums?: boolean;
}

/** "Qwen/Qwen3-0.6B" -> "Qwen--Qwen3-0.6B" (the hub cache's convention; one folder level, no slash). */
export function folderName(repo: string): string {
  return repo.replace("/", "--");
}

/** <folder>.download.json beside the models: the resumable state of a download (never swept). */
export const SIDECAR_SUFFIX = ".download.json";
/** <folder>.partial: the staging folder, resumable while its sidecar exists. */
export const STAGING_SUFFIX = ".partial";

export function sidecarPath(modelsDir: string, repo: string): string {
  return join(modelsDir, `${folderName(repo)}${SIDECAR_SUFFIX}`);
}

export function stagingPath(modelsDir: string, repo: string): string {
  return join(modelsDir, `${folderName(repo)}${STAGING_SUFFIX}`);
}

/** Sidecars of unfinished downloads in a models folder (a malformed one is skipped, never deleted). */
export function listSidecars(modelsDir: string): Sidecar[] {
  if (!existsSync(modelsDir)) return [];
  const out: Sidecar[] = [];
  for (const name of readdirSafe(modelsDir)) {
    if (!name.endsWith(SIDECAR_SUFFIX)) continue;
    try {
      const s = JSON.parse(readFileSync(join(modelsDir, name), "utf8")) as Sidecar;
      if (s.version === 1 && typeof s.repo === "string" && Array.isArray(s.files)) out.push(s);
    } catch {
      // not ours, or half-written by something else: leave it
    }
  }
  return out;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** What start() rejects with after pause() or cancel(): not a failure. */
export class DownloadStopped extends Error {
  constructor(readonly how: "pause" | "cancel") {
    super(how === "pause" ? "paused" : "cancelled");
    this.name = "DownloadStopped";
  }
}

/** Rolling speed over the last WINDOW_MS: (bytes now − bytes then) / elapsed. */
const WINDOW_MS = 5_000;
const SAMPLE_MS = 100;
/** Bytes gathered before one writev to the partial file. */
const WRITE_BATCH = 256 << 10;

export class ModelDownload {
  readonly repo: string;
  readonly source: HubSource;
  readonly id: string;
  readonly dir: string;
  readonly stagingDir: string;
  readonly sidecarFile: string;
  private hub: HubClient;
  private sidecar: Sidecar | null = null;
  private state: DownloadState = "queued";
  private error: HubError | null = null;
  private fileDone = new Map<string, number>();
  private fileState = new Map<string, FileState>();
  private samples: { t: number; bytes: number }[] = [];
  private abort: AbortController | null = null;
  private stopping: "pause" | "cancel" | null = null;
  private lastEmit = 0;
  private running: Promise<string> | null = null;
  private requireChecksums: boolean;

  constructor(private readonly opts: DownloadOptions) {
    this.repo = opts.repo;
    this.source = opts.source;
    this.id = folderName(opts.repo);
    this.dir = join(opts.modelsDir, this.id);
    this.stagingDir = stagingPath(opts.modelsDir, opts.repo);
    this.sidecarFile = sidecarPath(opts.modelsDir, opts.repo);
    this.requireChecksums = !!opts.requireChecksums;
    this.hub = new HubClient({ source: opts.source, endpoint: opts.endpoint, token: opts.token, stallMs: opts.stallMs });
    if (existsSync(this.sidecarFile)) {
      try {
        const s = JSON.parse(readFileSync(this.sidecarFile, "utf8")) as Sidecar;
        if (s.version === 1 && s.repo === opts.repo && Array.isArray(s.files)) {
          this.sidecar = s;
          // resume from the hub the download started from, at the same commit
          if (!opts.endpoint || opts.endpoint === s.endpoint) this.hub = new HubClient({ source: s.source, endpoint: s.endpoint, token: opts.token, stallMs: opts.stallMs });
          this.source = s.source;
          this.state = s.pausedAt ? "paused" : "interrupted";
          this.scanDisk();
        }
      } catch {
        // unreadable sidecar: start over (the listing is fetched again)
      }
    }
  }

  /** Whether a file without a checksum is refused, from the next run on (the user may retry without the requirement). */
  setRequireChecksums(on: boolean): void {
    this.requireChecksums = on;
  }

  /** A new token (e.g. after a gated error): used from the next run on. */
  setToken(token: string | null): void {
    this.hub = new HubClient({ source: this.hub.source, endpoint: this.hub.endpoint, token, stallMs: this.opts.stallMs });
  }

  progress(): DownloadProgress {
    const files = this.sidecar?.files ?? [];
    const totalBytes = files.reduce((s, f) => s + f.size, 0);
    const doneBytes = files.reduce((s, f) => s + Math.min(f.size, this.fileDone.get(f.path) ?? 0), 0);
    const speed = this.state === "downloading" ? this.speed() : 0;
    return {
      id: this.id,
      repo: this.repo,
      source: this.source,
      dir: this.dir,
      state: this.state,
      totalBytes,
      doneBytes,
      bytesPerSecond: speed,
      etaSeconds: speed > 0 ? Math.ceil((totalBytes - doneBytes) / speed) : null,
      files: files.map((f) => ({ path: f.path, size: f.size, doneBytes: Math.min(f.size, this.fileDone.get(f.path) ?? 0), state: this.fileState.get(f.path) ?? "pending", checksum: checksumKind(f) })),
      error: this.error?.message ?? null,
      errorKind: this.error?.kind ?? null,
    };
  }

  private speed(): number {
    if (this.samples.length < 2) return 0;
    const a = this.samples[0];
    const b = this.samples[this.samples.length - 1];
    const dt = (b.t - a.t) / 1000;
    return dt > 0.2 ? Math.round((b.bytes - a.bytes) / dt) : 0;
  }

  private emit(force = false): void {
    const now = Date.now();
    // one speed sample per SAMPLE_MS at most: a fast link delivers thousands of chunks a second
    const last = this.samples[this.samples.length - 1];
    if (!last || now - last.t >= SAMPLE_MS) {
      let doneBytes = 0;
      for (const n of this.fileDone.values()) doneBytes += n;
      this.samples.push({ t: now, bytes: doneBytes });
      while (this.samples.length > 2 && now - this.samples[0].t > WINDOW_MS) this.samples.shift();
    }
    if (!force && now - this.lastEmit < (this.opts.progressMs ?? 250)) return;
    this.lastEmit = now;
    this.opts.onProgress?.(this.progress());
  }

  private setState(s: DownloadState): void {
    this.state = s;
    if (s !== "downloading") this.samples = [];
    this.emit(true);
  }

  /** What is on disk already: verified files count whole, partials by their length. */
  private scanDisk(): void {
    for (const f of this.sidecar?.files ?? []) {
      // an unsafe name in an edited sidecar is refused by run(), with the error; here it is only not looked at
      if (unsafeHubPathReason(f.path)) continue;
      const final = stagedFilePath(this.stagingDir, this.repo, f.path);
      if (existsSync(final) && statSync(final).size === f.size) {
        this.fileDone.set(f.path, f.size);
        this.fileState.set(f.path, "done");
      } else if (existsSync(`${final}.partial`)) {
        this.fileDone.set(f.path, statSync(`${final}.partial`).size);
      }
    }
  }

  /** Starts (or resumes) and resolves with the model folder once every file is verified and in place. */
  start(): Promise<string> {
    this.running ??= this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Stops the transfer and keeps what is on disk (resume continues from there, also after a restart). */
  async pause(): Promise<void> {
    if (!this.running) return;
    this.stopping = "pause";
    this.abort?.abort(new DownloadStopped(this.stopping));
    await this.running.catch(() => undefined);
    if (this.state === "paused") this.writeSidecar(Date.now());
  }

  /** The sidecar with pausedAt set (paused) or cleared (running): only while the download has one on disk. */
  private writeSidecar(pausedAt: number | null): void {
    if (!this.sidecar || !existsSync(this.sidecarFile)) return;
    this.sidecar = { ...this.sidecar, pausedAt };
    try {
      writeFileAtomic(this.sidecarFile, JSON.stringify(this.sidecar, null, 2));
    } catch {
      // a read-only or full disk: the download still resumes, it is only listed as interrupted rather than paused
    }
  }

  /** Stops and removes the partial files and the sidecar. */
  async cancel(): Promise<void> {
    this.stopping = "cancel";
    this.abort?.abort(new DownloadStopped(this.stopping));
    await this.running?.catch(() => undefined);
    rmSync(this.stagingDir, { recursive: true, force: true });
    rmSync(this.sidecarFile, { force: true });
    this.fileDone.clear();
    this.fileState.clear();
    this.setState("cancelled");
  }

  private async run(): Promise<string> {
    this.stopping = null;
    this.error = null;
    this.abort = new AbortController();
    const signal = this.abort.signal;
    try {
      if (existsSync(this.dir)) throw new HubError("invalid", `${this.dir} already exists: ${this.repo} is downloaded (delete that folder to download it again)`);
      this.setState("downloading");
      if (!this.sidecar) {
        const listing = await this.hub.listFiles(this.repo, this.opts.revision, signal);
        const files = selectFiles(listing.files, this.repo);
        for (const f of files) stagedFilePath(this.stagingDir, this.repo, f.path);
        this.refuseUnchecked(files);
        this.sidecar = { version: 1, repo: this.repo, source: this.source, endpoint: this.hub.endpoint, revision: listing.revision, files, createdAt: Date.now() };
        mkdirSync(this.opts.modelsDir, { recursive: true });
        writeFileAtomic(this.sidecarFile, JSON.stringify(this.sidecar, null, 2));
        this.emit(true);
      } else {
        // a sidecar is a file on disk anyone could have edited: its names pass the same rule as a fresh listing
        for (const f of this.sidecar.files) stagedFilePath(this.stagingDir, this.repo, f.path);
        this.refuseUnchecked(this.sidecar.files);
        if (this.sidecar.pausedAt) this.writeSidecar(null);
      }
      mkdirSync(this.stagingDir, { recursive: true });
      for (const f of this.sidecar.files) {
        if (this.fileState.get(f.path) === "done") continue;
        await this.fetchVerified(f, signal);
      }
      // where it came from, for the Models view's list (library/local.ts): inside the staging folder, so the model
      // folder appears with its origin or not at all
      writeOrigin(this.stagingDir, { origin: "download", repo: this.repo });
      renameSync(this.stagingDir, this.dir);
      rmSync(this.sidecarFile, { force: true });
      this.setState("done");
      return this.dir;
    } catch (e) {
      if (this.stopping) {
        if (this.stopping === "pause") this.setState("paused");
        throw new DownloadStopped(this.stopping);
      }
      this.error = e instanceof HubError ? e : new HubError("network", e instanceof Error ? e.message : String(e));
      this.setState("error");
      throw this.error;
    } finally {
      this.abort = null;
    }
  }

  /** With requireChecksums, a listing with a file that has no checksum is refused, naming the files. */
  private refuseUnchecked(files: RemoteFile[]): void {
    if (!this.requireChecksums) return;
    const unchecked = files.filter((f) => checksumKind(f) === "none").map((f) => f.path);
    if (unchecked.length === 0) return;
    throw new HubError(
      "no_checksum",
      `${this.repo}: ${this.hub.host} lists no checksum for ${unchecked.length === 1 ? "" : `${unchecked.length} files: `}${unchecked.slice(0, 5).join(", ")}${unchecked.length > 5 ? ", …" : ""}; checksums are required, so nothing was downloaded`,
    );
  }

  /** One file, with one fresh retry when the checksum does not match. */
  private async fetchVerified(f: RemoteFile, signal: AbortSignal): Promise<void> {
    const final = stagedFilePath(this.stagingDir, this.repo, f.path);
    mkdirSync(dirname(final), { recursive: true });
    try {
      await this.fetchFile(f, final, signal);
    } catch (e) {
      if (!(e instanceof HubError) || e.kind !== "checksum") throw e;
      rmSync(`${final}.partial`, { force: true });
      this.fileDone.set(f.path, 0);
      await this.fetchFile(f, final, signal).catch((e2: unknown) => {
        if (e2 instanceof HubError && e2.kind === "checksum") {
          rmSync(`${final}.partial`, { force: true });
          this.fileDone.set(f.path, 0);
          throw new HubError("checksum", `${f.path} of ${this.repo} failed its checksum twice (the hub or a proxy on the way sends corrupted data); it was deleted — try again later or another mirror`);
        }
        throw e2;
      });
    }
  }

  private async fetchFile(f: RemoteFile, final: string, signal: AbortSignal): Promise<void> {
    const partial = `${final}.partial`;
    const hash = newHash(f);
    let have = existsSync(partial) ? statSync(partial).size : 0;
    if (have > f.size) {
      rmSync(partial);
      have = 0;
    }
    // Resume: hash what is already on disk (read locally, never fetched again).
    if (have > 0) {
      this.fileState.set(f.path, "verifying");
      this.emit(true);
      await hashFile(partial, hash, have);
    }
    this.fileDone.set(f.path, have);
    this.fileState.set(f.path, "downloading");
    this.emit(true);
    if (have < f.size) {
      const url = this.hub.fileUrl(this.repo, this.sidecar!.revision, f.path);
      const { res, abort } = await this.hub.request(url, { signal, headers: have > 0 ? { Range: `bytes=${have}-` } : {} });
      let append = have > 0;
      if (res.status === 206) {
        const start = /bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
        if (!start || Number(start[1]) !== have) {
          await res.body?.cancel().catch(() => undefined);
          throw new HubError("http", `${this.hub.host} answered a range request for ${f.path} with the wrong range (${res.headers.get("content-range") ?? "none"})`);
        }
      } else if (res.status === 200) {
        if (have > 0) {
          // the server ignored Range: start the file over
          append = false;
          have = 0;
          hash.reset();
          this.fileDone.set(f.path, 0);
        }
      } else if (res.status === 416 && have === f.size) {
        await res.body?.cancel().catch(() => undefined);
      } else {
        throw await this.hub.statusError(res, this.repo, f.path);
      }
      if (res.status === 200 || res.status === 206) await this.receive(res, abort, partial, append, hash, f, signal);
    }
    const got = statSync(partial, { throwIfNoEntry: false })?.size ?? 0;
    if (got !== f.size) throw new HubError("network", `${f.path}: the connection ended after ${got} of ${f.size} bytes; resume to continue`);
    this.fileState.set(f.path, "verifying");
    this.emit(true);
    const digest = hash.digest();
    const want = f.sha256 ?? f.gitSha1;
    if (want && digest !== want.toLowerCase()) throw new HubError("checksum", `${f.path}: checksum mismatch (expected ${want}, got ${digest})`);
    renameSync(partial, final);
    this.fileState.set(f.path, "done");
    this.emit(true);
  }

  /**
   * Streams the body into the partial file, hashing as it goes. Chunks (~16-64 KB each) are gathered and written
   * with one writev per WRITE_BATCH bytes, and flushed when the transfer ends for any reason, so what arrived is on
   * disk for a resume. A silent connection for stallMs aborts: a watchdog compares the time of the last byte, so the
   * per-chunk path sets no timers.
   */
  private async receive(res: Response, abort: AbortController, partial: string, append: boolean, hash: IncrementalHash, f: RemoteFile, signal: AbortSignal): Promise<void> {
    if (!res.body) throw new HubError("network", `${f.path}: empty response from ${this.hub.host}`);
    let fh: FileHandle | null = null;
    let stalled = false;
    let lastByte = Date.now();
    const stallMs = this.hub.stallMs;
    const watchdog = setInterval(() => {
      if (Date.now() - lastByte >= stallMs) {
        stalled = true;
        abort.abort();
      }
    }, Math.max(10, Math.min(1000, stallMs / 4)));
    const onAbort = () => abort.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0 || !fh) return;
      await fh.writev(pending);
      pending.length = 0;
      pendingBytes = 0;
    };
    try {
      fh = await open(partial, append ? "a" : "w");
      let done = this.fileDone.get(f.path) ?? 0;
      const reader = res.body.getReader();
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        lastByte = Date.now();
        done += value.byteLength;
        if (done > f.size) throw new HubError("http", `${f.path}: ${this.hub.host} sent more than the ${f.size} bytes the listing says`);
        hash.update(value);
        pending.push(value);
        pendingBytes += value.byteLength;
        if (pendingBytes >= WRITE_BATCH) await flush();
        this.fileDone.set(f.path, done);
        this.emit();
      }
      await flush();
    } catch (e) {
      await flush().catch(() => undefined);
      if (stalled) throw this.hub.stallError(this.hub.endpoint);
      if (signal.aborted) throw signal.reason ?? e;
      if (e instanceof HubError) throw e;
      throw new HubError("network", `${f.path}: the connection to ${this.hub.host} broke (${(e as Error)?.message ?? e}); resume to continue`);
    } finally {
      clearInterval(watchdog);
      signal.removeEventListener("abort", onAbort);
      await fh?.close();
    }
  }
}

interface IncrementalHash {
  update(b: Uint8Array): void;
  digest(): string;
  reset(): void;
}

/** sha256 of the content, or git's blob id: sha1 over "blob <size>\0" + content. */
function newHash(f: RemoteFile): IncrementalHash {
  const fresh = (): Hash => {
    if (f.sha256) return createHash("sha256");
    const h = createHash("sha1");
    h.update(`blob ${f.size}\0`);
    return h;
  };
  let h = fresh();
  return {
    update: (b) => h.update(b),
    digest: () => h.digest("hex"),
    reset: () => {
      h = fresh();
    },
  };
}

async function hashFile(path: string, hash: IncrementalHash, length: number): Promise<void> {
  if (length === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
}

