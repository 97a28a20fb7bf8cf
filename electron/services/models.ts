// The model the app chats with: one engine worker (EngineHost), one loaded model at a time. Opening a folder
// checks it in this process first (config.json, tokenizer) so a folder that is not a model gets a plain message,
// then loads it in the worker with models.progress events and engine.status transitions. When the worker dies
// (native crash, OOM kill), the status goes crashed -> loading -> ready as a fresh worker loads the model again.
import { basename, resolve } from "node:path";
import { existsSync, statSync } from "node:fs";
import type { EngineStatus, EventName, EventPayload, ModelCard, RecentModel } from "../contract.js";
import type { EngineHost, RemoteModel } from "../engine/host.js";
import type { ModelInfo } from "../engine/engine.js";
import { readModelFolder } from "../engine/model-folder.js";
import { TextTokenizer } from "../text/tokenizer.js";
import { ChatTemplate } from "../text/chat-template.js";
import type { Repositories } from "../store/repositories.js";
import { RpcError } from "../contract.js";
import { engineError, noModel } from "./errors.js";

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
    kvCache: info.kvCache,
  };
}

/** "(signal SIGKILL)" / "(code 134)" from the host's "the engine worker exited (...)" message, or null. */
export function workerExitReason(e: unknown): string | null {
  const m = /engine worker exited \(([^)]*)\)/.exec(e instanceof Error ? e.message : String(e));
  return m ? m[1] : null;
}

const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;

export class ModelService {
  private state: EngineStatus = { state: "idle", model: null, dir: null, message: null };
  private loaded: LoadedModel | null = null;
  private opening: Promise<LoadedModel> | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private restarts: number[] = [];
  private disposed = false;
  /** Called before the loaded model goes away (ChatService stops a running reply). */
  beforeUnload: () => Promise<void> = async () => {};

  constructor(
    private readonly host: EngineHost,
    private readonly repos: Repositories,
    private readonly emit: Emit,
    private readonly opts: { threads?: number } = {},
  ) {
    host.on("exit", (e: { code: number | null; signal: string | null }) => this.onWorkerExit(e));
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
      if (!existsSync(dir)) throw new Error(`${dir}: folder not found`);
      if (!statSync(dir).isDirectory()) throw new Error(`${dir}: this is a file; choose the folder that holds config.json and the *.safetensors weights`);
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
      const model = await this.host.loadModel(dir, {
        ...(this.opts.threads ? { threads: this.opts.threads } : {}),
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
      return loaded;
    } catch (e) {
      throw this.failed(dir, e);
    }
  }

  /** A load failed: status error, and an RpcError whose message says what is wrong with the folder. */
  private failed(dir: string, e: unknown): RpcError {
    const raw = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    const why = workerExitReason(e);
    const message = why
      ? `The engine stopped while loading ${basename(dir)} (${why}). The model may need more memory than this machine has.`
      : `${basename(dir) || dir} cannot be opened as a model: ${raw}`;
    // A folder rejected before anything was unloaded leaves the loaded model (and its status) as it was.
    if (!this.loaded) this.setStatus({ state: "error", model: null, dir, message });
    return engineError(message);
  }

  private onWorkerExit(e: { code: number | null; signal: string | null }): void {
    if (this.disposed) return;
    const lost = this.loaded;
    if (!lost) return; // nothing was loaded (or a load was in progress: its own failure reports it)
    this.loaded = null;
    const why = e.signal ? `signal ${e.signal}` : `code ${e.code}`;
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < RESTART_WINDOW_MS);
    if (this.restarts.length >= MAX_RESTARTS) {
      this.setStatus({
        state: "error",
        model: null,
        dir: lost.dir,
        message: `The engine stopped unexpectedly (${why}) ${MAX_RESTARTS + 1} times within a minute; open the model again to retry.`,
      });
      return;
    }
    this.restarts.push(now);
    this.setStatus({ state: "crashed", model: null, dir: lost.dir, message: `The engine stopped unexpectedly (${why}); restarting it.` });
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
