// Messages between the engine host (main process / CLI / server) and the engine worker process that loads the
// native addon. A native crash or OOM kills the worker, never its host: the host sees the exit, fails what was
// pending with a clear error and starts a new worker on the next request.
import type { GenerateOptions, GenerateResult, ModelInfo, ChatMessage } from "./engine.js";

export type WorkerInput = readonly ChatMessage[] | { ids: number[] } | { prompt: string };
export type WireGenerateOptions = Omit<GenerateOptions, "signal">;

export type HostRequest =
  | { id: number; op: "load"; dir: string; threads?: number }
  | { id: number; op: "closeModel"; modelId: number }
  | { id: number; op: "createSession"; modelId: number; contextLength?: number }
  | { id: number; op: "disposeSession"; sessionId: number }
  | { id: number; op: "resetSession"; sessionId: number }
  | { id: number; op: "logits"; modelId: number; ids: number[] }
  | { id: number; op: "generate"; sessionId: number; input: WorkerInput; options: WireGenerateOptions }
  | { id: number; op: "cancel"; sessionId: number }
  | { id: number; op: "systemInfo" };

export type WorkerMessage =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string }
  | { id: number; event: "progress"; done: number; total: number }
  | { id: number; event: "delta"; text: string; tokens: number };

export type SystemInfoReply = { threads: number; simd: string; cuda: { compiled: boolean; devices: number; memoryBytes?: number; error?: string } };
export type LoadReply = { modelId: number; info: ModelInfo };
export type GenerateReply = GenerateResult;
