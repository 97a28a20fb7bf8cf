// The model the app chats with: one engine worker (EngineHost), one loaded model at a time. Opening a folder
// checks it in this process first (config.json, tokenizer) so a folder that is not a model gets a plain message,
// then loads it in the worker with models.progress events and engine.status transitions. When the worker dies
// (native crash, OOM kill), the status goes crashed -> loading -> ready as a fresh worker loads the model again.
import { basename, join, resolve, sep } from "node:path";
import { existsSync, statSync } from "node:fs";
import type { EngineStatus, EventName, EventPayload, ModelCard, ModelRouting, RecentModel } from "../contract.js";
import type { EngineHost, RemoteModel } from "../engine/host.js";
import type { ModelInfo } from "../engine/engine.js";
import { readModelFolder } from "../engine/model-folder.js";
import { TextTokenizer } from "../text/tokenizer.js";
import { ChatTemplate } from "../text/chat-template.js";
import type { Repositories } from "../store/repositories.js";
import { RpcError } from "../contract.js";
import { engineError, engineMessages, folderMessages, noModel } from "./errors.js";
import type { EngineOptions } from "../engine/load-options.js";

export type Emit = <E extends EventName>(name: E, payload: EventPayload<E>) => void;

/** A model loaded in the worker, with the tokenizer and chat template this process renders prompts with. */
export interface LoadedModel {
  dir: string;
  model: RemoteModel;
  card: ModelCard;
  tokenizer: TextTokenizer;
  template: ChatTemplate | null;
}

export function modelCard(info: ModelInfo): ModelCard {
  return {
    dir: info.dir,
    name: basename(info.dir),
    architecture: info.architecture,
    modelType: info.modelType,
    paramsTotal: info.paramsTotal,
    paramsActive: info.paramsActive,
    numExperts: info.numExperts,
    topK: info.topK,
    numSharedExperts: info.numSharedExperts,
    numLayers: info.numLayers,
    hiddenSize: info.hiddenSize,
    contextLength: info.contextLength,
    dtype: info.dtype,
    weightBytes: info.weightBytes,
    estimatedMemoryBytes: info.estimatedMemoryBytes,
    device: info.backend,
    threads: info.threads,
    hasChatTemplate: info.hasChatTemplate,
    sampling: info.sampling,
    sessionContextLength: info.sessionContextLength,
    kvCache: info.kvCache,
  };
}

/** "(signal SIGKILL)" / "(code 134)" from the host's "the engine worker exited (...)" message, or null. */
export function workerExitReason(e: unknown): string | null {
  const m = /engine worker exited \(([^)]*)\)/.exec(e instanceof Error ? e.message : String(e));
  return m ? m[1] : null;
}

/** A folder that is not a model, found before anything was loaded; its message is already the whole sentence. */
class FolderError extends Error {}

/** What is wrong with a folder at a glance (it is missing, a file, or has no config.json); null if it may be a model. */
export function folderProblem(dir: string): string | null {
  if (!existsSync(dir)) return folderMessages.missing(dir);
  if (!statSync(dir).isDirectory()) return folderMessages.isFile(dir);
  if (!existsSync(join(dir, "config.json"))) return folderMessages.noConfig(dir);
  return null;
}

/** An error about files in `dir` with their paths relative to it ("config.json: invalid JSON"): the path is said once. */
function withinFolder(message: string, dir: string): string {
  return message.split(dir + sep).join("").split(dir).join(".");
}

const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;

export class ModelService {
  private state: EngineStatus = { state: "idle", model: null, dir: null, message: null };
  private loaded: LoadedModel | null = null;
  private opening: Promise<LoadedModel> | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private restarts: number[] = [];
  /** A fresh worker is reloading the model after a crash (its outcome is logged). */
  private restarting = false;
  private disposed = false;
  /** Called before the loaded model goes away (ChatService stops a running reply). */
  beforeUnload: () => Promise<void> = async () => {};

  constructor(
    private readonly host: EngineHost,
    private readonly repos: Repositories,
    private readonly emit: Emit,
    /**
     * engine: the engine options of each load, asked at the load (the app's settings and serve's flags may change
     * between two loads); adapter: the model at modelDir loads with adapterDir as its own adapter (`serve --adapter`).
     */
    private readonly opts: { engine?: () => EngineOptions; log?: (line: string) => void; adapter?: { modelDir: string; adapterDir: string } } = {},
  ) {
    host.on("exit", (e: { code: number | null; signal: string | null; pid?: number }) => this.onWorkerExit(e));
  }

  /** One line for whoever runs the services (`serve` prints it on stderr): what happened to the engine worker. */
  private log(line: string): void {
    if (!this.disposed) this.opts.log?.(line);
  }

  status(): EngineStatus {
    return this.state;
  }

  private setStatus(s: EngineStatus): void {
    this.state = s;
    if (!this.disposed) this.emit("engine.status", s);
  }

  /** The loaded model, waiting for a load in progress (e.g. the reload after a crash); no_model when none. */
  async ready(): Promise<LoadedModel> {
    while (this.opening) {
      const p = this.opening;
      await p.catch(() => undefined);
      if (this.opening === p) break;
    }
    if (!this.loaded) throw noModel();
    return this.loaded;
  }

  current(): LoadedModel | null {
    return this.loaded;
  }

  /** The loaded model's expert routing since it loaded (null: none loaded, or its worker is reloading it). */
  async routing(): Promise<ModelRouting | null> {
    const m = this.loaded;
    if (!m) return null;
    try {
      const r = await m.model.routing();
      return { dir: m.dir, topK: r.topK, layers: r.layers };
    } catch (e) {
      if (this.loaded !== m) return null;  // unloaded or crashed meanwhile: nothing to show yet
      throw e;
    }
  }

  /** Open a model folder (one load at a time; a second open waits for the first). */
  open(dir: string): Promise<ModelCard> {
    const run = this.queue.then(() => this.load(resolve(dir)));
    this.queue = run.catch(() => undefined);
    this.opening = run;
    const clear = () => {
      if (this.opening === run) this.opening = null;
    };
    run.then(clear, clear);
    return run.then((m) => m.card);
  }

  private async load(dir: string): Promise<LoadedModel> {
    if (this.disposed) throw new RpcError("internal", "the app is shutting down");
    // Check the folder here first: its problems become one plain sentence, not a worker error.
    let tokenizer: TextTokenizer;
    let template: ChatTemplate | null;
    try {
      const problem = folderProblem(dir);
      if (problem) throw new FolderError(problem);
      readModelFolder(dir);
      tokenizer = TextTokenizer.fromFolder(dir);
      template = ChatTemplate.fromFolder(dir);
    } catch (e) {
      throw this.failed(dir, e);
    }

    if (this.loaded) {
      await this.beforeUnload();
      const old = this.loaded;
      this.loaded = null;
      await old.model.close().catch(() => undefined);
    }
    this.setStatus({ state: "loading", model: null, dir, message: null });
    const p = (async () => {
      const adapter = this.opts.adapter && resolve(this.opts.adapter.modelDir) === dir ? resolve(this.opts.adapter.adapterDir) : undefined;
      const model = await this.host.loadModel(dir, {
        ...this.opts.engine?.(),
        ...(adapter ? { adapter } : {}),
        onProgress: (done, total) => {
          if (!this.disposed) this.emit("models.progress", { dir, done, total });
        },
      });
      return { dir, model, card: modelCard(model.info), tokenizer, template };
    })();
    try {
      const loaded = await p;
      this.loaded = loaded;
      this.repos.recentModels.upsert({ dir, name: loaded.card.name, architecture: loaded.card.architecture, lastOpenedAt: Date.now() });
      this.setStatus({ state: "ready", model: loaded.card, dir, message: null });
      if (this.restarting) this.log(`the engine worker is back (pid ${this.host.pid ?? "?"}): ${loaded.card.name} is loaded again`);
      this.restarting = false;
      return loaded;
    } catch (e) {
      const err = this.failed(dir, e);
      if (this.restarting) this.log(`the engine worker could not be restarted: ${err.message}`);
      this.restarting = false;
      throw err;
    }
  }

  /** A load failed: status error, and an RpcError whose message names the folder once and says what is wrong. */
  private failed(dir: string, e: unknown): RpcError {
    const raw = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    const why = workerExitReason(e);
    const message = e instanceof FolderError ? e.message : why ? engineMessages.loadCrashed(basename(dir), why) : folderMessages.cannotOpen(dir, withinFolder(raw, dir));
    // A folder rejected before anything was unloaded leaves the loaded model (and its status) as it was.
    if (!this.loaded) this.setStatus({ state: "error", model: null, dir, message });
    return engineError(message);
  }

  private onWorkerExit(e: { code: number | null; signal: string | null; pid?: number }): void {
    if (this.disposed) return;
    const why = e.signal ? `signal ${e.signal}` : `code ${e.code}`;
    const worker = `the engine worker${e.pid ? ` (pid ${e.pid})` : ""}`;
    const lost = this.loaded;
    if (!lost) {
      // nothing was loaded (or a load was in progress: its own failure reports it); a new worker starts when needed
      this.log(`${worker} exited (${why})`);
      return;
    }
    this.loaded = null;
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < RESTART_WINDOW_MS);
    if (this.restarts.length >= MAX_RESTARTS) {
      this.log(`${worker} died (${why}), ${MAX_RESTARTS + 1} times within a minute; not restarting it (open the model again)`);
      this.setStatus({
        state: "error",
        model: null,
        dir: lost.dir,
        message: engineMessages.crashLoop(why, MAX_RESTARTS + 1),
      });
      return;
    }
    this.restarts.push(now);
    this.log(`${worker} died (${why}); restarting it`);
    this.restarting = true;
    this.setStatus({ state: "crashed", model: null, dir: lost.dir, message: engineMessages.restarting(why) });
    // Reload the same model in a fresh worker (the next request starts it).
    this.open(lost.dir).catch(() => undefined);
  }

  recent(): RecentModel[] {
    return this.repos.recentModels.list();
  }

  forget(dir: string): { ok: true } {
    this.repos.recentModels.delete(dir);
    if (dir !== resolve(dir)) this.repos.recentModels.delete(resolve(dir));
    return { ok: true };
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.queue.catch(() => undefined);
  }
}
