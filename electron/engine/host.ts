// EngineHost: the engine API of engine.ts, served by a worker process (worker.ts) so that a native crash or an
// out-of-memory kill takes down the worker, never the app. Same shapes: loadModel -> model with info, chat()
// -> session whose generate() is an async iterable of text deltas with a final result; AbortSignal cancels.
// When the worker dies, everything pending fails with an error saying so, the host emits "exit", and the next
// request starts a fresh worker (models must be loaded again).
//
// How the worker process is started is pluggable (`spawnWorker`): child_process.fork by default (CLI, server,
// tests); Electron passes a utilityProcess adapter (electron/electron-worker.ts).
import { DeltaStream } from "./delta-stream.js";
import { fork } from "node:child_process";
import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { GenerateInput, GenerateOptions, GenerateResult, Generation, LoadOptions, ModelInfo } from "./engine.js";
import { given } from "./load-options.js";
import type { HostRequest, OpArgs, OpEvent, OpName, OpReply, SystemInfoReply, WorkerEvent, WorkerMessage } from "./protocol.js";
import type { NativeRouting } from "./addon.js";

/** A running worker process, whatever started it. */
export interface WorkerProcess {
  readonly pid?: number;
  send(message: HostRequest): void;
  on(event: "message", listener: (message: WorkerMessage) => void): unknown;
  /** code and signal as known (utilityProcess reports only a code). */
  on(event: "exit", listener: (code: number | null, signal: NodeJS.Signals | string | null) => void): unknown;
  kill(): void;
}

/** Starts the worker module (out/electron/engine/worker.js) in a new process. */
export type WorkerSpawner = (modulePath: string) => WorkerProcess;

/** The default spawner: child_process.fork with an IPC channel. */
export function forkWorker(execArgv: string[] = []): WorkerSpawner {
  return (modulePath) => {
    const child = fork(modulePath, [], { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv });
    return {
      get pid() {
        return child.pid;
      },
      send: (m) => {
        if (child.connected) child.send(m);
      },
      on: (event: "message" | "exit", listener: (...args: never[]) => void) => child.on(event, listener as (...args: unknown[]) => void),
      kill: () => {
        child.kill();
      },
    } as WorkerProcess;
  };
}

/** The compiled worker (out/electron/engine/worker.js), whether this module runs compiled or from source. */
export function workerPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "worker.js"), join(here, "../../out/electron/engine/worker.js")];
  for (const p of candidates) if (existsSync(p)) return p;
  throw new Error(`engine worker not built: none of ${candidates.join(", ")} exists; run "npm run build:ts"`);
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  onEvent?: (e: WorkerEvent) => void;
}

export class EngineHost extends EventEmitter {
  private child: WorkerProcess | null = null;
  private readonly spawn: WorkerSpawner;
  private generation = 0;          // increments when a worker exits; handles from an older worker are dead
  private nextId = 1;
  private pending = new Map<number, Pending>();

  constructor(opts: { execArgv?: string[]; spawnWorker?: WorkerSpawner; workerPath?: string } = {}) {
    super();
    this.spawn = opts.spawnWorker ?? forkWorker(opts.execArgv ?? []);
    this.modulePath = opts.workerPath;
  }
  private readonly modulePath: string | undefined;

  /** The running worker's pid (undefined when no worker runs). Tests kill it to simulate a crash. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Whether a worker process is running. */
  get running(): boolean {
    return this.child !== null;
  }

  private ensure(): WorkerProcess {
    if (this.child) return this.child;
    const child = this.spawn(this.modulePath ?? workerPath());
    child.on("message", (m: WorkerMessage) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      if ("event" in m) {
        const { id: _id, ...e } = m;
        p.onEvent?.(e as WorkerEvent);
      }
      else {
        this.pending.delete(m.id);
        if (m.ok) p.resolve(m.value);
        else p.reject(new Error(m.error));
      }
    });
    child.on("exit", (code, signal) => {
      if (this.child === child) this.child = null;
      this.generation++; // models and sessions of the dead worker are gone
      const why = `the engine worker exited (${signal ? `signal ${signal}` : `code ${code}`}); load the model again`;
      for (const p of this.pending.values()) p.reject(new Error(why));
      this.pending.clear();
      this.emit("exit", { code, signal, pid: child.pid });
    });
    this.child = child;
    return child;
  }

  /**
   * Ask the worker to run one op of protocol.ts's table: it answers once, and may send the op's events (load's
   * progress, generate's deltas) to onEvent before that. Starts a worker if none runs.
   */
  request<K extends OpName>(op: K, args: OpArgs<K>, onEvent?: (e: OpEvent<K>) => void): { id: number; promise: Promise<OpReply<K>> } {
    const child = this.ensure();
    const id = this.nextId++;
    const promise = new Promise<OpReply<K>>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onEvent: onEvent as ((e: WorkerEvent) => void) | undefined });
      child.send({ ...args, op, id } as HostRequest);
    });
    return { id, promise };
  }

  /** Fire-and-forget (cancel): never starts a worker, expects no answer. */
  notify<K extends OpName>(op: K, args: OpArgs<K>): void {
    this.child?.send({ ...args, op, id: this.nextId++ } as HostRequest);
  }

  /** The worker's view of the machine: SIMD path, CUDA devices, threads (starts the worker if needed). */
  async systemInfo(): Promise<SystemInfoReply> {
    return this.request("systemInfo", {}).promise;
  }

  workerGeneration(): number {
    return this.generation;
  }

  /** opts.adapter: a PEFT adapter folder every session of the model applies unmerged unless it names its own. */
  async loadModel(dir: string, opts: LoadOptions = {}): Promise<RemoteModel> {
    const { onProgress, ...options } = opts;
    const { promise } = this.request("load", { dir, options: given(options) }, (e) => onProgress?.(e.done, e.total));
    const r = await promise;
    return new RemoteModel(this, this.generation, r.modelId, r.info);
  }

  /** Stop the worker (models are unloaded). */
  shutdown(): void {
    this.child?.kill();
  }
}

export class RemoteModel {
  constructor(readonly host: EngineHost, readonly workerGen: number, readonly modelId: number, readonly info: ModelInfo) {}

  alive(): void {
    if (this.host.workerGeneration() !== this.workerGen) throw new Error(`${this.info.dir}: the engine worker restarted since this model was loaded; load it again`);
  }

  /**
   * adapter: the session applies this PEFT adapter folder unmerged (read once per model and folder in the worker);
   * null: the bare base even on a model loaded with an adapter; absent: the model as loaded.
   */
  async chat(opts: { contextLength?: number; adapter?: string | null } = {}): Promise<RemoteSession> {
    this.alive();
    const r = await this.host.request("createSession", { modelId: this.modelId, ...opts }).promise;
    return new RemoteSession(this, r.sessionId, r.contextLength);
  }

  async logits(ids: number[], opts: { adapter?: string | null } = {}): Promise<number[][]> {
    this.alive();
    return this.host.request("logits", { modelId: this.modelId, ids, ...opts }).promise;
  }

  /** Tokens routed to each expert since the load (a restarted worker's model starts again from 0). */
  async routing(opts: { reset?: boolean } = {}): Promise<NativeRouting> {
    this.alive();
    return this.host.request("routing", { modelId: this.modelId, ...opts }).promise;
  }

  async close(): Promise<void> {
    if (this.host.workerGeneration() !== this.workerGen) return;
    await this.host.request("closeModel", { modelId: this.modelId }).promise;
  }
}

export class RemoteSession {
  constructor(readonly model: RemoteModel, readonly sessionId: number, readonly contextLength: number) {}

  generate(input: GenerateInput, options: GenerateOptions = {}): Generation {
    const { signal, ...wire } = options;
    const stream = new DeltaStream();
    const cancel = () => this.model.host.notify("cancel", { sessionId: this.sessionId });
    const onAbort = () => cancel();
    let result: Promise<GenerateResult>;
    try {
      this.model.alive();
      if (signal?.aborted) throw Object.assign(new Error("cancelled before start"), { cancelledBeforeStart: true });
      signal?.addEventListener("abort", onAbort, { once: true });
      result = this.model.host.request("generate", { sessionId: this.sessionId, input, options: wire }, (e) => {
        stream.tokens = e.tokens;
        stream.push(e.text);
      }).promise;
    } catch (e) {
      if ((e as { cancelledBeforeStart?: boolean }).cancelledBeforeStart) {
        result = Promise.resolve({ text: "", ids: [], promptIds: [], stats: { promptTokens: 0, reusedTokens: 0, completionTokens: 0, prefillTokensPerSecond: 0, decodeTokensPerSecond: 0, prefillMs: 0, decodeMs: 0, stopReason: "cancelled" } });
      } else result = Promise.reject(e);
    }
    result = result.finally(() => signal?.removeEventListener("abort", onAbort));
    return stream.generation(result, cancel);
  }

  async reset(): Promise<void> {
    this.model.alive();
    await this.model.host.request("resetSession", { sessionId: this.sessionId }).promise;
  }

  async dispose(): Promise<void> {
    if (this.model.host.workerGeneration() !== this.model.workerGen) return;
    await this.model.host.request("disposeSession", { sessionId: this.sessionId }).promise;
  }
}
