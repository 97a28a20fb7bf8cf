// The app's services composed: one database in the data folder, one engine worker, and a handler for every call
// in the contract. The same composition runs inside Electron (IPC transport) and in `moe-studio serve` (WebSocket);
// transports never call handlers directly, only electron/rpc.ts's dispatcher over `handlers`.
//
//   const services = await createAppServices({ dataDir, emit, transport: "ws" });
//   const dispatch = createDispatcher(services.handlers);
//   ...
//   services.enginePid()   // the engine worker's pid (tests kill it to simulate a crash); undefined if none runs
//   await services.dispose();
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AppInfo, TokenizerChoice } from "../contract.js";
import { RpcError } from "../contract.js";
import { EngineHost, type WorkerSpawner } from "../engine/host.js";
import { configureBoundedText, type TextProcessSpawner } from "../text/bounded-text.js";
import type { AsyncHandlers } from "../rpc.js";
import { openDatabase, type Db } from "../store/db.js";
import { JobsStore } from "../store/jobs.js";
import { JobService } from "../jobs/service.js";
import { FinetuneService } from "../finetune/service.js";
import { repositories, type Repositories } from "../store/repositories.js";
import { EndpointService } from "./endpoints.js";
import { ChatService } from "./chat.js";
import { ConversationService } from "./conversations.js";
import { DatasetService } from "./datasets.js";
import { ModelService, type Emit } from "./models.js";
import { engineMessages, withDiskFullIn } from "./errors.js";
import { databaseFile } from "./paths.js";
import { PresetService } from "./presets.js";
import { QuantizeService, upgradeLegacyQuantizeRows, type QuantizeParams } from "./quantize.js";
import { SettingsService } from "./settings.js";
import { LibraryService } from "./library.js";
import { sweepLeftovers } from "./leftovers.js";
import { listLocal } from "../library/local.js";
import { MemoryTokenStore, type TokenStore } from "../library/token-store.js";
import { anyPath, ContainedPaths, type AllowedDir, type PathPolicy } from "./path-policy.js";
import { given, type EngineOptions } from "../engine/load-options.js";
import { GenerationQueue } from "./generation-queue.js";
import { SessionPool } from "./session-pool.js";
import { SESSIONS_KEPT } from "./chat.js";
import { OpenAiService, type AdapterEntry } from "../server/openai/service.js";
import { ApiServerControl } from "../server/openai/control.js";

export type { Emit } from "./models.js";

export interface AppServicesOptions {
  /** The app's data folder (defaultDataDir() unless told otherwise; Electron's userData is set to it). */
  dataDir: string;
  /** Pushes an event to the renderer(s). */
  emit: Emit;
  transport: "ipc" | "ws";
  /** How to start the engine worker (Electron: utilityProcess); default child_process.fork. */
  spawnWorker?: WorkerSpawner;
  /** How the text process (chat templates and tokenizers under limits) is started; default child_process.fork. */
  spawnTextProcess?: TextProcessSpawner;
  /** A native folder dialog (Electron only); without it models.pickFolder answers { dir: null }. */
  pickFolder?: () => Promise<string | null>;
  /** A native open/save dialog for dataset files (Electron only); without it datasets.pickFile answers { path: null }. */
  pickDatasetFile?: (purpose: "import" | "export", suggestedName?: string) => Promise<string | null>;
  /** A model folder to open at start (its errors show in engine.status, they do not stop the app). */
  initialModel?: string;
  /** `serve --adapter DIR`: a PEFT adapter folder the initial model runs with, applied unmerged, whenever it is loaded. */
  initialAdapter?: string;
  /**
   * How models load (`serve --threads/--kv-cache/--device`, the deploy config): what is given wins over the
   * settings (kvCache); what is not, the settings or the engine choose.
   */
  engine?: EngineOptions;
  presetsDir?: string;
  systemLocale?: string;
  /** The compiled engine worker module (default: next to host.js / out/electron/engine/worker.js). */
  workerPath?: string;
  /** Lines about the engine worker (it died, it is back); `serve` prints them on stderr. */
  log?: (line: string) => void;
  /** Where the hub access token is kept (Electron: safeStorage); default in memory only. */
  tokenStore?: TokenStore;
  /** Where the API server's key is kept (Electron: safeStorage); default in memory only. */
  apiKeyStore?: TokenStore;
  /** Where the remote endpoints' keys live (the desktop app: the keychain); default: memory only. */
  endpointKeyStore?: TokenStore;
  /** Switch the API server on at start if it was on when the app last quit (the desktop app; `serve` uses --api). */
  restoreApiServer?: boolean;
  /** Model library: stall timeout of a download in ms (default 30 s; MOE_STUDIO_STALL_MS for tests). */
  downloadStallMs?: number;
  /**
   * `serve`: every path a call names must lie under the data folder, the models folder or one of `dirs`
   * (services/path-policy.ts); `hint` ends the refusal. Absent (Electron, the CLI): any path.
   */
  containPaths?: { dirs: AllowedDir[]; hint?: string };
}

export interface AppServices {
  /** One handler per contract call; transports reach them only through createDispatcher(handlers). */
  handlers: AsyncHandlers;
  /** The engine worker's pid, or undefined when none runs. Not part of the contract: for tests and diagnostics. */
  enginePid(): number | undefined;
  /** Resolves once the initial model (if any) has loaded or failed. */
  initialLoad: Promise<void>;
  repos: Repositories;
  db: Db;
  /** The OpenAI-compatible API server's switch (`serve --api` starts it with its flags). */
  api: ApiServerControl;
  dispose(): Promise<void>;
}

function appVersion(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const p of [join(here, "../../package.json"), join(here, "../../../package.json")]) {
    if (!existsSync(p)) continue;
    try {
      const v = (JSON.parse(readFileSync(p, "utf8")) as { name?: string; version?: string });
      if (v.name === "moe-studio" && v.version) return v.version;
    } catch {
      // keep looking
    }
  }
  return "0.0.0";
}

export async function createAppServices(opts: AppServicesOptions): Promise<AppServices> {
  const db = openDatabase(databaseFile(opts.dataDir));
  const repos = repositories(db);
  repos.messages.markInterrupted(engineMessages.interrupted());
  if (opts.spawnTextProcess) configureBoundedText({ spawn: opts.spawnTextProcess });
  const host = new EngineHost({
    ...(opts.spawnWorker ? { spawnWorker: opts.spawnWorker } : {}),
    ...(opts.workerPath ? { workerPath: opts.workerPath } : {}),
  });
  const conversations = new ConversationService(repos);
  const presets = new PresetService(repos, opts.presetsDir);
  const settings = new SettingsService(repos);
  const engine = (): EngineOptions => ({ kvCache: settings.get().kvCache, ...given(opts.engine ?? {}) });
  const models = new ModelService(host, repos, opts.emit, { engine, ...(opts.log ? { log: opts.log } : {}),
    ...(opts.initialModel && opts.initialAdapter ? { adapter: { modelDir: opts.initialModel, adapterDir: opts.initialAdapter } } : {}) });
  // one generation at a time and one set of KV caches, shared by the chat and the API (services/generation-queue.ts)
  const queue = new GenerationQueue();
  const sessions = new SessionPool(SESSIONS_KEPT + 1);
  const endpoints = new EndpointService(repos, opts.endpointKeyStore ?? new MemoryTokenStore());
  const chat = new ChatService(repos, conversations, models, opts.emit, sessions, queue, endpoints);

  let info: Promise<Pick<AppInfo, "simd" | "cuda">> | null = null;
  const engineInfo = () =>
    (info ??= host.systemInfo().then(
      (s) => ({ simd: s.simd, cuda: s.cuda }),
      (e) => {
        info = null; // ask again next time
        return { simd: "unknown", cuda: { compiled: false, devices: 0, error: e instanceof Error ? e.message : String(e) } };
      },
    ));
  const version = appVersion();

  // every long task's state, progress, cancel and restart (electron/jobs/); the kinds register with it
  const jobsStore = new JobsStore(db);
  upgradeLegacyQuantizeRows(jobsStore);
  const jobs = new JobService({ store: jobsStore, emit: opts.emit });

  // ---------- library (the download kind) ----------
  const stallEnv = Number(process.env.MOE_STUDIO_STALL_MS);
  const library = new LibraryService({
    dataDir: opts.dataDir,
    settings,
    repos,
    tokens: opts.tokenStore ?? new MemoryTokenStore(),
    jobs,
    vramBytes: () => host.systemInfo().then((s) => (s.cuda.devices > 0 ? (s.cuda.memoryBytes ?? 0) : 0)),
    ...(opts.downloadStallMs ? { stallMs: opts.downloadStallMs } : stallEnv > 0 ? { stallMs: stallEnv } : {}),
  });
  // what a killed quantize, export, download or token write left in the models and data folders (services/leftovers.ts)
  for (const l of sweepLeftovers([library.modelsDir(), opts.dataDir]).removed) opts.log?.(`removed ${l.path} (left by pid ${l.pid ?? "?"}, which is gone)`);
  // datasets: the scan, import and tokens job kinds register with the job service
  const datasets = new DatasetService(db, opts.dataDir, opts.emit, { cleanStaleUploads: true, jobs, ...(opts.pickDatasetFile ? { pickFile: opts.pickDatasetFile } : {}) });
  const quantize = new QuantizeService(() => library.modelsDir(), jobs);
  // finetune runs: the train and export job kinds register with the job service (electron/finetune/)
  const finetune = new FinetuneService({ db, dbFile: databaseFile(opts.dataDir), dataDir: opts.dataDir, jobs, emit: opts.emit, modelsDir: () => library.modelsDir() });

  // the OpenAI-compatible API: the loaded model and every adapter its finetune runs wrote
  const adapters = (): AdapterEntry[] =>
    finetune.list().flatMap((r) => {
      const cps = r.checkpoints;
      const last = cps.find((c) => c.final) ?? cps.filter((c) => !c.final).at(-1);
      return [
        ...(last ? [{ modelDir: r.modelDir, run: r.name, step: null, dir: last.dir, createdAt: r.updatedAt }] : []),
        ...cps.filter((c) => !c.final).map((c) => ({ modelDir: r.modelDir, run: r.name, step: c.step, dir: c.dir, createdAt: r.updatedAt })),
      ];
    });
  const openai = new OpenAiService({ models, adapters, queue, sessions, ...(opts.log ? { log: opts.log } : {}) });
  const api = new ApiServerControl(openai, repos, opts.apiKeyStore ?? new MemoryTokenStore(), opts.log);

  // Paths from calls are checked here, once, where they enter; the services trust what they are given (the CLI
  // and the app's own start-up, e.g. initialModel, call them directly).
  const paths: PathPolicy = opts.containPaths
    ? new ContainedPaths({
        dirs: [{ dir: opts.dataDir, write: true }, ...opts.containPaths.dirs],
        // the models folder setting can only be set to a contained folder here; the desktop app may have set it
        // elsewhere, and downloads and quantized models land there
        currentDirs: () => [{ dir: library.modelsDir(), write: true }],
        // an export named like the database would replace it under the running app
        noWrite: ["", "-wal", "-shm", "-journal"].map((suffix) => databaseFile(opts.dataDir) + suffix),
        ...(opts.containPaths.hint ? { hint: opts.containPaths.hint } : {}),
      })
    : anyPath;
  /** The paths a job's parameters name, checked again before it runs again (retry, resume). */
  const checkJobPaths = (id: string) => {
    const j = jobs.get(id);
    if (j.kind === "quantize" || j.kind === "gguf") paths.checkRead((jobs.paramsOf(id) as QuantizeParams).sourceDir, "model folder to quantize");
    if (j.kind === "train") paths.checkRead(finetune.modelDirOfJob(id), "model folder to train");
  };
  const tokenizerIn = (t: TokenizerChoice | undefined): TokenizerChoice | undefined =>
    t && { ...t, modelDir: paths.checkRead(t.modelDir, "tokenizer.modelDir (a model folder)") };

  const handlers: AsyncHandlers = {
    "app.info": async () => ({
      version,
      platform: process.platform,
      transport: opts.transport,
      canPickFolder: !!opts.pickFolder,
      systemLocale: opts.systemLocale ?? Intl.DateTimeFormat().resolvedOptions().locale ?? "en-US",
      ...(await engineInfo()),
    }),
    "settings.get": async () => settings.get(),
    "settings.set": async (i) => settings.set(i.modelsDir ? { ...i, modelsDir: paths.checkWrite(i.modelsDir, "modelsDir (the models folder)") } : i),
    "api.status": async () => api.status(),
    "api.set": async (i) => api.set(i),
    "endpoints.list": async () => endpoints.list(),
    "endpoints.add": async (i) => endpoints.add(i),
    "endpoints.update": async (i) => endpoints.update(i),
    "endpoints.delete": async (i) => endpoints.delete(i),
    "endpoints.models": async (i) => endpoints.models(i),

    "conversations.list": async (i) => conversations.list(i),
    "conversations.get": async (i) => conversations.get(i),
    "conversations.create": async (i) =>
      conversations.create({
        ...i,
        ...(i.modelDir ? { modelDir: paths.checkRead(i.modelDir, "modelDir (the base model folder)") } : {}),
        ...(i.adapterDir ? { adapterDir: paths.checkRead(i.adapterDir, "adapterDir (the adapter folder)") } : {}),
      }, models.current()?.dir ?? null),
    "conversations.rename": async (i) => conversations.rename(i),
    "conversations.update": async (i) =>
      conversations.update(i.adapterDir ? { ...i, adapterDir: paths.checkRead(i.adapterDir, "adapterDir (the adapter folder)") } : i),
    "conversations.delete": async (i) => {
      await chat.stop({ conversationId: i.id });
      return conversations.delete(i);
    },

    "chat.send": async (i) => chat.send(i),
    "chat.compare": async (i) => chat.compare(i),
    "chat.stop": async (i) => chat.stop(i),
    "chat.regenerate": async (i) => chat.regenerate(i),
    "chat.edit": async (i) => chat.edit(i),

    "presets.list": async () => presets.list(),
    "presets.save": async (i) => presets.save(i),
    "presets.delete": async (i) => presets.delete(i),

    "models.open": async (i) => models.open(paths.checkRead(i.dir, "model folder")),
    "models.recent": async () => models.recent(),
    "models.forget": async (i) => models.forget(i.dir),
    "models.status": async () => models.status(),
    "models.routing": async () => models.routing(),
    "models.pickFolder": async () => ({ dir: opts.pickFolder ? await opts.pickFolder() : null }),

    "library.status": async () => library.status(),
    "library.local": async () => listLocal(library.modelsDir()),
    "library.exportMerged": async (i) => {
      const adapterPath = paths.checkRead(i.adapterPath, "the adapter folder");
      const entry = listLocal(library.modelsDir()).find((e) => e.path === adapterPath && e.kind === "adapter");
      if (!entry) throw new RpcError("not_found", `${adapterPath} is not an adapter in the models folder`);
      return finetune.exportImported(adapterPath, entry, i.dtype, i.name);
    },
    "library.importAdapter": async (i) => {
      const path = await finetune.importAdapter(paths.checkRead(i.dir, "the adapter folder"), paths.checkRead(i.base, "the base model folder"), i.name);
      const entry = listLocal(library.modelsDir()).find((e) => e.path === path);
      if (!entry) throw new RpcError("internal", `${path} was imported but is not in the models folder's list`);
      return entry;
    },
    "library.catalog": async (i) => library.listCatalog(i),
    "library.search": async (i) => library.search(i.query),
    "library.inspect": async (i) => library.inspect(i),
    "library.download": async (i) => library.download(i),
    "library.downloads": async () => library.list(),
    "library.pause": async (i) => library.pause(i.id),
    "library.resume": async (i) => library.resume(i.id, i.requireChecksums),
    "library.cancel": async (i) => library.cancel(i.id),
    "library.setToken": async (i) => library.setToken(i.token),
    // ---------- datasets ----------
    "datasets.list": async () => datasets.list(),
    "datasets.get": async (i) => datasets.get(i.id),
    "datasets.rename": async (i) => datasets.rename(i.id, i.name),
    "datasets.delete": async (i) => datasets.delete(i.id),
    "datasets.dedupe": async (i) => datasets.dedupe(i.id),
    "datasets.split": async (i) => datasets.split(i.id, i.validationRatio, i.seed),
    "datasets.export": async (i) => datasets.export(i.id, paths.checkWrite(i.path, "export file")),
    "datasets.exportChunk": async (i) => datasets.exportChunk(i.id, i.cursor),
    "datasets.pickFile": async (i) => datasets.pickFile(i.purpose, i.suggestedName),
    "datasets.upload.begin": async (i) => datasets.uploadBegin(i.fileName, i.size),
    "datasets.upload.chunk": async (i) => datasets.uploadChunk(i.uploadId, i.offset, i.data),
    "datasets.upload.abort": async (i) => datasets.uploadAbort(i.uploadId),
    "datasets.import.scan": async (i) =>
      datasets.scan(i.source.kind === "path" ? { kind: "path", path: paths.checkRead(i.source.path, "dataset file") } : i.source),
    "datasets.import.status": async (i) => datasets.status(i.importId),
    "datasets.import.commit": async (i) => datasets.commit(i.importId, i.name),
    "datasets.import.cancel": async (i) => datasets.cancel(i.importId),
    "samples.list": async ({ tokenizer, ...rest }) => datasets.listSamples({ ...rest, ...(tokenizer ? { tokenizer: tokenizerIn(tokenizer) } : {}) }),
    "samples.get": async (i) => datasets.getSample(i.id, tokenizerIn(i.tokenizer)),
    "samples.update": async (i) => datasets.updateSample(i.id, i.messages),
    "samples.add": async (i) => datasets.addSample(i.datasetId, i.messages),
    "samples.duplicate": async (i) => datasets.duplicateSample(i.id),
    "samples.delete": async (i) => datasets.deleteSample(i.id),
    "samples.undo": async (i) => datasets.undo(i.datasetId),
    "datasets.tokens.count": async (i) => datasets.countTokens(i.datasetId, tokenizerIn(i.tokenizer)!),
    // ---------- quantize ----------
    "quantize.start": async (i) => quantize.start({ ...i, dir: paths.checkRead(i.dir, "model folder to quantize") }),
    "quantize.folder": async () => ({ dir: quantize.folder() }),
    // ---------- jobs ----------
    "jobs.list": async (i) => jobs.list(i.kind),
    "jobs.cancel": async (i) => jobs.cancel(i.id),
    "jobs.pause": async (i) => jobs.pause(i.id),
    "jobs.resume": async (i) => {
      checkJobPaths(i.id);
      return jobs.resume(i.id);
    },
    // a retry reads the job's inputs again: they are checked like a new start's (the allowed folders may differ now)
    "jobs.retry": async (i) => {
      checkJobPaths(i.id);
      // a retried train job is a new job of the same run: the run follows it
      return finetune.adopt(jobs.retry(i.id));
    },
    "jobs.remove": async (i) => jobs.remove(i.id),
    // ---------- finetune ----------
    "finetune.estimate": async (i) => finetune.estimate({ ...i, modelDir: paths.checkRead(i.modelDir, "model folder to train") }),
    "finetune.start": async (i) => finetune.start({ ...i, modelDir: paths.checkRead(i.modelDir, "model folder to train") }),
    "finetune.list": async () => finetune.list(),
    "finetune.get": async (i) => finetune.get(i.id),
    "finetune.delete": async (i) => finetune.delete(i.id),
    "finetune.clusterJob": async (i) => finetune.clusterJob({ ...i.spec, modelDir: paths.checkRead(i.spec.modelDir, "model folder to train") }, i.base),
    // the output goes into the models folder (contained already); the run's model folder is read again
    "finetune.export": async (i) => {
      paths.checkRead(finetune.get(i.id).run.modelDir, "the run's model folder");
      return finetune.export(i);
    },
  };

  if (opts.restoreApiServer) void api.restore();
  const initialLoad = opts.initialModel ? models.open(opts.initialModel).then(() => undefined, () => undefined) : Promise.resolve();

  let disposed: Promise<void> | null = null;
  return {
    // a full disk is reported with the data folder's free space, whichever call hit it
    handlers: withDiskFullIn(handlers, opts.dataDir),
    enginePid: () => host.pid,
    initialLoad,
    repos,
    db,
    api,
    dispose: () =>
      (disposed ??= (async () => {
        await api.stop().catch(() => undefined);
        await chat.dispose().catch(() => undefined);
        await datasets.dispose().catch(() => undefined);
        // pausable jobs pause (training checkpoints, downloads), the rest are cancelled; awaited before the database closes
        await jobs.dispose().catch(() => undefined);
        const queued = models.dispose();
        host.shutdown();
        await queued.catch(() => undefined);
        db.close();
      })()),
  };
}
