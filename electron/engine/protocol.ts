// Messages between the engine host (main process / CLI / server) and the engine worker process that loads the
// native addon. A native crash or OOM kills the worker, never its host: the host sees the exit, fails what was
// pending with a clear error and starts a new worker on the next request.
//
// `Ops` is the one table of what the worker does: an op's name, its arguments, its reply and the events it may send
// before replying. The worker serves it with one handler per op (worker.ts), the host asks with one typed
// request(op, args) (host.ts). Adding an op is an entry here, its handler, and its native binding.
import type { GenerateOptions, GenerateResult, ModelInfo, ChatMessage } from "./engine.js";
import type { NativeRouting } from "./addon.js";
import type { ModelLoadOptions } from "./load-options.js";

export type WorkerInput = readonly ChatMessage[] | { ids: number[] } | { prompt: string };
export type WireGenerateOptions = Omit<GenerateOptions, "signal">;

export type SystemInfoReply = { threads: number; simd: string; cuda: { compiled: boolean; devices: number; memoryBytes?: number; error?: string } };
export type LoadReply = { modelId: number; info: ModelInfo };
export type GenerateReply = GenerateResult;

export type ProgressEvent = { event: "progress"; done: number; total: number };
export type DeltaEvent = { event: "delta"; text: string; tokens: number };

/** name -> { args, reply, event (never: the op sends none) }. */
export interface Ops {
  /** options.adapter: a PEFT adapter folder every forward of this model applies unmerged unless a session names its own. */
  load: { args: { dir: string; options: ModelLoadOptions }; reply: LoadReply; event: ProgressEvent };
  closeModel: { args: { modelId: number }; reply: null; event: never };
  /** adapter: the session runs with this PEFT adapter folder applied unmerged instead of the model's own; null: the bare base. */
  createSession: { args: { modelId: number; contextLength?: number; adapter?: string | null }; reply: { sessionId: number; contextLength: number }; event: never };
  disposeSession: { args: { sessionId: number }; reply: null; event: never };
  resetSession: { args: { sessionId: number }; reply: null; event: never };
  logits: { args: { modelId: number; ids: number[]; adapter?: string | null }; reply: number[][]; event: never };
  generate: { args: { sessionId: number; input: WorkerInput; options: WireGenerateOptions }; reply: GenerateReply; event: DeltaEvent };
  cancel: { args: { sessionId: number }; reply: null; event: never };
  systemInfo: { args: Record<string, never>; reply: SystemInfoReply; event: never };
  /** Expert routing counts of a model since its load (or the last reset: the counters restart after the snapshot). */
  routing: { args: { modelId: number; reset?: boolean }; reply: NativeRouting; event: never };
}

export type OpName = keyof Ops;
export type OpArgs<K extends OpName> = Ops[K]["args"];
export type OpReply<K extends OpName> = Ops[K]["reply"];
export type OpEvent<K extends OpName> = Ops[K]["event"];

/** What the host sends: an op's arguments with the op's name and the request id. */
export type HostRequest = { [K in OpName]: { id: number; op: K } & OpArgs<K> }[OpName];

export type WorkerEvent = { [K in OpName]: OpEvent<K> }[OpName];

export type WorkerMessage =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string }
  | ({ id: number } & WorkerEvent);
