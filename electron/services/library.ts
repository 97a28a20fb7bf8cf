// The model library: the curated catalogue with fit estimates for this machine, hub search, and downloads into the
// models folder (<data>/models unless the modelsDir setting says otherwise). A download is a "download" job on the
// one job system (its progress, pause, resume, cancel, its row across restarts); the files it fetches and where it
// stands in each are the downloader's (electron/library/downloader.ts: a sidecar and a staging folder beside the
// models), so unfinished downloads found at start-up are listed paused or interrupted and resume where they stopped,
// and library.downloads gives each one's files for the Discover panel. A finished download is added to the recent
// models, which is how it appears in Models.
import { existsSync, readFileSync } from "node:fs";
import { freemem, totalmem } from "node:os";
import { join } from "node:path";
import type { CatalogEntry, DownloadProgress, HubSearchResult, Job, LibraryStatus, MachineMemory, RepoDetails } from "../contract.js";
import { PAUSED, type JobKindHandler, type JobReporter } from "../jobs/kind.js";
import { isActive, type JobService } from "../jobs/service.js";
import { loadCatalog, type CatalogModel } from "../library/catalog.js";
import { DownloadStopped, folderName, listSidecars, ModelDownload } from "../library/downloader.js";
import { selectFiles } from "../library/files.js";
import { fitEstimate, fitFromShape } from "../library/fit.js";
import { DEFAULT_ENDPOINTS, HubClient, type HubSource } from "../library/hub.js";
import { SUPPORTED_MODEL_TYPES } from "../library/params.js";
import type { TokenStore } from "../library/token-store.js";
import type { HandlerInput } from "../rpc.js";
import type { Repositories } from "../store/repositories.js";
import { notFound } from "./errors.js";
import type { SettingsService } from "./settings.js";

export const DEFAULT_CONTEXT = 4096;

export interface LibraryOptions {
  dataDir: string;
  settings: SettingsService;
  repos: Repositories;
  tokens: TokenStore;
  /** The app's job service, which the download kind registers with. */
  jobs: JobService;
  /** Device 0's memory in bytes (the engine's CUDA probe); 0 without a GPU. */
  vramBytes: () => Promise<number>;
  /** HF_ENDPOINT and friends (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Stall timeout for downloads (tests use a short one). */
  stallMs?: number;
}

/** A download job's parameters (its subject is the download id, the repo's folder name). */
interface DownloadParams {
  repo: string;
  source: HubSource;
  revision?: string;
  requireChecksums?: boolean;
}

export class LibraryService {
  /** Each download's files and where it stands in them, by id (also the ones found on disk at start-up). */
  private readonly downloads = new Map<string, ModelDownload>();
  /** The reporter of each download's running job. */
  private readonly reporters = new Map<string, JobReporter>();
  private catalog: CatalogModel[] | null = null;
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly opts: LibraryOptions) {
    this.env = opts.env ?? process.env;
    // unfinished downloads from an earlier run: listed as paused, resumed on request
    for (const s of listSidecars(this.modelsDir())) this.track(new ModelDownload(this.downloadOptions(s.repo, s.source)));
    opts.jobs.register(this.downloadKind);
  }

  modelsDir(): string {
    return this.opts.settings.get().modelsDir || join(this.opts.dataDir, "models");
  }

  source(): HubSource {
    return this.opts.settings.get().hubSource;
  }

  /** The setting, else HF_ENDPOINT (as huggingface-cli honours it) for the Hugging Face source, else the hub's own. */
  endpoint(source: HubSource = this.source()): string {
    const set = this.opts.settings.get().hubEndpoint;
    if (set && source === this.source()) return set.replace(/\/+$/, "");
    if (source === "hf" && this.env.HF_ENDPOINT) return this.env.HF_ENDPOINT.replace(/\/+$/, "");
    return DEFAULT_ENDPOINTS[source];
  }

  private token(): string | null {
    return this.opts.tokens.get() ?? (this.env.HF_TOKEN || null);
  }

  private hub(source: HubSource = this.source()): HubClient {
    return new HubClient({ source, endpoint: this.endpoint(source), token: this.token(), stallMs: this.opts.stallMs });
  }

  status(): LibraryStatus {
    return { source: this.source(), endpoint: this.endpoint(), modelsDir: this.modelsDir(), hasToken: !!this.token(), tokenStorage: this.opts.tokens.kind };
  }

  setToken(token: string | null): LibraryStatus {
    this.opts.tokens.set(token);
    for (const d of this.downloads.values()) d.setToken(this.token());
    return this.status();
  }

  async machine(): Promise<MachineMemory> {
    const vram = await this.opts.vramBytes().catch(() => 0);
    return { totalRamBytes: totalmem(), freeRamBytes: freemem(), vramBytes: vram };
  }

  /** The model folder of a repo if it is downloaded. */
  localDir(repo: string): string | null {
    const dir = join(this.modelsDir(), folderName(repo));
    return existsSync(join(dir, "config.json")) ? dir : null;
  }

  async listCatalog(input: HandlerInput<"library.catalog">): Promise<{ machine: MachineMemory; contextLength: number; models: CatalogEntry[] }> {
    this.catalog ??= loadCatalog();
    const machine = await this.machine();
    const ctx = input.contextLength ?? DEFAULT_CONTEXT;
    return {
      machine,
      contextLength: ctx,
      models: this.catalog.map((m) => ({
        id: m.id,
        name: m.name,
        family: m.family,
        architecture: m.architecture,
        modelType: m.shape.modelType,
        hf: m.hf,
        modelscope: m.modelscope,
        downloadBytes: m.downloadBytes,
        fit: fitFromShape(m.shape, ctx, machine),
        localDir: this.localDir(m.hf) ?? (m.modelscope ? this.localDir(m.modelscope) : null),
      })),
    };
  }

  async search(query: string): Promise<HubSearchResult[]> {
    const hits = await this.hub().search(query, 50);
    return hits
      .filter((h) => h.modelType !== null && (SUPPORTED_MODEL_TYPES as readonly string[]).includes(h.modelType))
      .map((h) => ({ ...h, localDir: this.localDir(h.repo) }));
  }

  async inspect(input: HandlerInput<"library.inspect">): Promise<RepoDetails> {
    const source = input.source ?? this.source();
    const hub = this.hub(source);
    const listing = await hub.listFiles(input.repo);
    const files = selectFiles(listing.files, input.repo);
    const config = await hub.fetchJsonFile(input.repo, "config.json", listing.revision);
    const fit = fitEstimate(config, input.contextLength ?? DEFAULT_CONTEXT, await this.machine(), `${input.repo}/config.json`);
    return {
      repo: listing.repo,
      source,
      revision: listing.revision,
      gated: listing.gated,
      files: files.map((f) => ({ path: f.path, size: f.size })),
      downloadBytes: files.reduce((s, f) => s + f.size, 0),
      modelType: String(config.model_type),
      fit,
    };
  }

  private downloadOptions(repo: string, source: HubSource, revision?: string, requireChecksums?: boolean) {
    const id = folderName(repo);
    return {
      modelsDir: this.modelsDir(),
      repo,
      source,
      endpoint: this.endpoint(source),
      token: this.token(),
      ...(revision ? { revision } : {}),
      ...(requireChecksums ? { requireChecksums } : {}),
      ...(this.opts.stallMs ? { stallMs: this.opts.stallMs } : {}),
      // the running job's reporter (the job service coalesces what reaches the UI and the database)
      onProgress: (p: DownloadProgress) => {
        const report = this.reporters.get(id);
        if (!report) return;
        report.progress(p.doneBytes, p.totalBytes, "bytes");
        const i = p.files.findIndex((f) => f.state === "downloading" || f.state === "verifying");
        report.figures({ bytesPerSecond: p.bytesPerSecond, etaSeconds: p.etaSeconds ?? -1, file: i + 1, files: p.files.length });
        if (i >= 0) report.message(p.files[i].path);
      },
    };
  }

  private track(d: ModelDownload): ModelDownload {
    this.downloads.set(d.id, d);
    return d;
  }

  private get(id: string): ModelDownload {
    const d = this.downloads.get(id);
    if (!d) throw notFound(`no download ${id}`);
    return d;
  }

  /** The newest job of a download (null: none, e.g. one found on disk that `pull` or an older version started). */
  private jobOf(id: string): Job | null {
    return this.opts.jobs.list("download").filter((j) => j.subject === id).at(-1) ?? null;
  }

  /**
   * One execution of a download job: the downloader's start() (which resumes from what is on disk), settled with
   * the model folder, PAUSED after pause() (once the sidecar says paused), or the hub's error.
   */
  private readonly downloadKind: JobKindHandler<DownloadParams> = {
    kind: "download",
    canPause: true,
    canResume: true,
    title: (p) => `Download ${p.repo}`,
    label: (p) => ({ key: "download", args: { name: p.repo } }),
    subject: (p) => folderName(p.repo),
    start: (p, report) => {
      const id = folderName(p.repo);
      let d = this.downloads.get(id);
      const state = d?.progress().state;
      if (!d || state === "done" || state === "cancelled") d = this.track(new ModelDownload(this.downloadOptions(p.repo, p.source, p.revision, p.requireChecksums)));
      else d.setToken(this.token());
      const dl = d;
      this.reporters.set(id, report);
      let pausing: Promise<void> | null = null;
      const done = dl.start().then(
        (dir) => {
          this.finished(dl, dir);
          return { dir, repo: dl.repo };
        },
        async (e: unknown) => {
          if (e instanceof DownloadStopped && e.how === "pause") {
            await pausing;
            return PAUSED;
          }
          throw e;
        },
      );
      return {
        done: done.finally(() => {
          if (this.reporters.get(id) === report) this.reporters.delete(id);
        }),
        cancel: () => void dl.cancel(),
        pause: () => void (pausing = dl.pause()),
      };
    },
    // a paused or interrupted download cancelled: its partial files and sidecar go
    discarded: (p) => {
      const d = this.downloads.get(folderName(p.repo));
      if (d) void d.cancel();
    },
  };

  private finished(d: ModelDownload, dir: string): void {
    let architecture: string | null = null;
    try {
      const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { architectures?: unknown };
      if (Array.isArray(cfg.architectures) && typeof cfg.architectures[0] === "string") architecture = cfg.architectures[0];
    } catch {
      // the engine will say what is wrong when it is opened
    }
    this.opts.repos.recentModels.upsert({ dir, name: d.repo.split("/")[1] ?? d.repo, architecture, lastOpenedAt: Date.now() });
  }

  /** Starts a download job, or goes on with the repo's unfinished one (a paused or interrupted job resumes). */
  download(input: HandlerInput<"library.download">): DownloadProgress {
    const id = folderName(input.repo);
    const existing = this.downloads.get(id);
    const state = existing?.progress().state;
    if (existing && state !== "done" && state !== "cancelled") return this.resume(id, !!input.requireChecksums);
    this.start({ repo: input.repo, source: input.source ?? this.source(), ...(input.revision ? { revision: input.revision } : {}), ...(input.requireChecksums ? { requireChecksums: true } : {}) });
    return this.get(id).progress();
  }

  private start(p: DownloadParams): void {
    const old = this.jobOf(folderName(p.repo));
    this.opts.jobs.start<DownloadParams>("download", p);
    // the repo's finished job (failed, cancelled) is replaced by the new one in the activity list
    if (old && !isActive(old) && old.status !== "paused") this.opts.jobs.remove(old.id);
  }

  /** Every download the library knows (its files), as the Discover panel lists them. */
  list(): DownloadProgress[] {
    return [...this.downloads.values()].map((d) => d.progress()).filter((p) => p.state !== "cancelled");
  }

  async pause(id: string): Promise<DownloadProgress> {
    const d = this.get(id);
    const job = this.jobOf(id);
    if (job && (job.status === "running" || job.status === "pausing")) {
      this.opts.jobs.pause(job.id);
      await this.opts.jobs.settled(job.id);
    }
    return d.progress();
  }

  /**
   * Goes on with a paused, interrupted or failed download from what is on disk: its paused or interrupted job
   * resumes; a failed one, or one without a job, starts a new job. requireChecksums applies from this run on.
   */
  resume(id: string, requireChecksums = false): DownloadProgress {
    const d = this.get(id);
    d.setToken(this.token());
    d.setRequireChecksums(requireChecksums);
    const job = this.jobOf(id);
    if (job && isActive(job)) return d.progress();
    if (job && (job.status === "paused" || job.status === "interrupted")) this.opts.jobs.resume(job.id);
    else this.start({ repo: d.repo, source: d.source, ...(requireChecksums ? { requireChecksums } : {}) });
    return d.progress();
  }

  /** Stops the download and removes its partial files (the job ends cancelled). */
  async cancel(id: string): Promise<DownloadProgress> {
    const d = this.get(id);
    const job = this.jobOf(id);
    if (job && (isActive(job) || job.status === "paused" || job.status === "interrupted")) {
      this.opts.jobs.cancel(job.id);
      await this.opts.jobs.settled(job.id);
    }
    await d.cancel();
    this.downloads.delete(id);
    return d.progress();
  }
}
