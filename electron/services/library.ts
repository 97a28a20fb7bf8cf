// The model library: the curated catalogue with fit estimates for this machine, hub search, and downloads into the
// models folder (<data>/models unless the modelsDir setting says otherwise). Download state lives in files next to
// the models (electron/library/downloader.ts), so unfinished downloads found at start-up are listed as paused and
// resume where they stopped. A finished download is added to the recent models, which is how it appears in Models.
import { existsSync, readFileSync } from "node:fs";
import { freemem, totalmem } from "node:os";
import { join } from "node:path";
import type { CatalogEntry, DownloadProgress, HubSearchResult, LibraryStatus, MachineMemory, RepoDetails } from "../contract.js";
import { loadCatalog, type CatalogModel } from "../library/catalog.js";
import { folderName, listSidecars, ModelDownload } from "../library/downloader.js";
import { selectFiles } from "../library/files.js";
import { fitEstimate, fitFromShape } from "../library/fit.js";
import { DEFAULT_ENDPOINTS, HubClient, type HubSource } from "../library/hub.js";
import { SUPPORTED_MODEL_TYPES } from "../library/params.js";
import type { TokenStore } from "../library/token-store.js";
import type { HandlerInput } from "../rpc.js";
import type { Repositories } from "../store/repositories.js";
import { notFound } from "./errors.js";
import type { Emit } from "./models.js";
import type { SettingsService } from "./settings.js";

export const DEFAULT_CONTEXT = 4096;

export interface LibraryOptions {
  dataDir: string;
  settings: SettingsService;
  repos: Repositories;
  tokens: TokenStore;
  emit: Emit;
  /** Device 0's memory in bytes (the engine's CUDA probe); 0 without a GPU. */
  vramBytes: () => Promise<number>;
  /** HF_ENDPOINT and friends (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Stall timeout for downloads (tests use a short one). */
  stallMs?: number;
}

export class LibraryService {
  private readonly downloads = new Map<string, ModelDownload>();
  private catalog: CatalogModel[] | null = null;
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly opts: LibraryOptions) {
    this.env = opts.env ?? process.env;
    // unfinished downloads from an earlier run: listed as paused, resumed on request
    for (const s of listSidecars(this.modelsDir())) this.track(new ModelDownload(this.downloadOptions(s.repo, s.source)));
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
    return {
      modelsDir: this.modelsDir(),
      repo,
      source,
      endpoint: this.endpoint(source),
      token: this.token(),
      ...(revision ? { revision } : {}),
      ...(requireChecksums ? { requireChecksums } : {}),
      ...(this.opts.stallMs ? { stallMs: this.opts.stallMs } : {}),
      onProgress: (p: DownloadProgress) => this.opts.emit("library.progress", p),
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

  /** Runs a download in the background; its end (done, error, paused) arrives as library.progress events. */
  private run(d: ModelDownload): DownloadProgress {
    // A failure is not lost: it is the download's state (error, errorKind) and its last library.progress event.
    d.start().then(
      (dir) => this.finished(d, dir),
      () => undefined,
    );
    return d.progress();
  }

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

  download(input: HandlerInput<"library.download">): DownloadProgress {
    const id = folderName(input.repo);
    const existing = this.downloads.get(id);
    if (existing && existing.progress().state !== "done" && existing.progress().state !== "cancelled") {
      existing.setRequireChecksums(!!input.requireChecksums);
      return this.run(existing);
    }
    return this.run(this.track(new ModelDownload(this.downloadOptions(input.repo, input.source ?? this.source(), input.revision, input.requireChecksums))));
  }

  list(): DownloadProgress[] {
    return [...this.downloads.values()].map((d) => d.progress()).filter((p) => p.state !== "cancelled");
  }

  async pause(id: string): Promise<DownloadProgress> {
    const d = this.get(id);
    await d.pause();
    return d.progress();
  }

  resume(id: string, requireChecksums = false): DownloadProgress {
    const d = this.get(id);
    d.setToken(this.token());
    d.setRequireChecksums(requireChecksums);
    return this.run(d);
  }

  async cancel(id: string): Promise<DownloadProgress> {
    const d = this.get(id);
    await d.cancel();
    this.downloads.delete(id);
    return d.progress();
  }

  /** Pauses every running download (its partial files stay for the next start). */
  async dispose(): Promise<void> {
    await Promise.all([...this.downloads.values()].map((d) => d.pause().catch(() => undefined)));
  }
}
