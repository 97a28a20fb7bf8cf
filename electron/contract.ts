// The one typed contract between the renderer and the main process (or the `serve` server).
//
// `calls` are request/response pairs, `events` are pushed from the main side. Every payload is a zod schema:
// the main process (electron/rpc.ts) validates each call's input before a service sees it, the preload exposes
// exactly `Api` below over Electron IPC, and the renderer's web transport implements the same `Api` over a
// WebSocket. Input objects are strict: an unknown key is a malformed payload, not something to ignore.
//
// Wire (WebSocket and IPC carry the same JSON):
//   renderer -> main   { t: "call", id, name, input }
//   main -> renderer   { t: "result", id, ok: true, output } | { t: "result", id, ok: false, error: { message, code } }
//                      { t: "event", name, payload }
import { z } from "zod";

// ---------- shared shapes ----------
const Id = z.string().min(1).max(64);
const Text = (max: number) => z.string().max(max);

/** Per-conversation sampling overrides; a null field means "use the model's default". */
export const SamplingSettings = z.strictObject({
  temperature: z.number().min(0).max(5).nullable(),
  topP: z.number().gt(0).max(1).nullable(),
  topK: z.number().int().min(0).max(100_000).nullable(),
  repetitionPenalty: z.number().min(0.5).max(5).nullable(),
  maxTokens: z.number().int().min(1).max(1_000_000).nullable(),
  seed: z.number().int().min(0).max(0xffffffff).nullable(),
});
export type SamplingSettings = z.infer<typeof SamplingSettings>;

export const GenerationStats = z.object({
  promptTokens: z.number(),
  reusedTokens: z.number(),
  completionTokens: z.number(),
  prefillTokensPerSecond: z.number(),
  decodeTokensPerSecond: z.number(),
  stopReason: z.enum(["eos", "length", "stop", "cancelled", "error"]),
  /** promptTokens + completionTokens: the context this conversation now occupies. */
  contextTokens: z.number(),
  contextLength: z.number(),
});
export type GenerationStats = z.infer<typeof GenerationStats>;

export const Message = z.object({
  id: Id,
  conversationId: Id,
  role: z.enum(["user", "assistant"]),
  content: z.string(),
  createdAt: z.number(),
  /** streaming: tokens still arriving; stopped: the user pressed Stop; error: see `error`. */
  status: z.enum(["complete", "streaming", "stopped", "error"]),
  error: z.string().nullable(),
  stats: GenerationStats.nullable(),
});
export type Message = z.infer<typeof Message>;

export const Conversation = z.object({
  id: Id,
  title: z.string(),
  createdAt: z.number(),
  updatedAt: z.number(),
  systemPrompt: z.string(),
  presetId: z.string().nullable(),
  sampling: SamplingSettings,
  modelDir: z.string().nullable(),
});
export type Conversation = z.infer<typeof Conversation>;

export const ConversationSummary = z.object({
  id: Id,
  title: z.string(),
  updatedAt: z.number(),
  /** For a search: a short excerpt around the match; else the last message's start. */
  snippet: z.string(),
});
export type ConversationSummary = z.infer<typeof ConversationSummary>;

export const Preset = z.object({
  id: Id,
  name: z.string(),
  content: z.string(),
  language: z.enum(["en", "zh"]),
  builtin: z.boolean(),
});
export type Preset = z.infer<typeof Preset>;

export const SamplingDefaults = z.object({
  temperature: z.number(),
  topP: z.number(),
  topK: z.number(),
  repetitionPenalty: z.number(),
  minP: z.number(),
  maxTokens: z.number(),
});
export type SamplingDefaults = z.infer<typeof SamplingDefaults>;

export const ModelCard = z.object({
  dir: z.string(),
  name: z.string(),
  architecture: z.string(),
  modelType: z.string(),
  paramsTotal: z.number(),
  paramsActive: z.number(),
  numExperts: z.number(),
  topK: z.number(),
  numSharedExperts: z.number(),
  numLayers: z.number(),
  hiddenSize: z.number(),
  contextLength: z.number(),
  dtype: z.string(),
  weightBytes: z.number(),
  estimatedMemoryBytes: z.number(),
  device: z.enum(["cpu", "cuda"]),
  threads: z.number(),
  hasChatTemplate: z.boolean(),
  sampling: SamplingDefaults,
  kvCache: z.enum(["f32", "int8"]).optional(), // KV cache storage (quantization issue); absent = f32
});
export type ModelCard = z.infer<typeof ModelCard>;

export const RecentModel = z.object({
  dir: z.string(),
  name: z.string(),
  architecture: z.string().nullable(),
  lastOpenedAt: z.number(),
});
export type RecentModel = z.infer<typeof RecentModel>;

export const EngineStatus = z.object({
  /** idle: no model; loading; ready; crashed: the worker died (it is being restarted); error: the last load failed. */
  state: z.enum(["idle", "loading", "ready", "crashed", "error"]),
  model: ModelCard.nullable(),
  /** Directory being loaded (loading) or last attempted (error). */
  dir: z.string().nullable(),
  message: z.string().nullable(),
});
export type EngineStatus = z.infer<typeof EngineStatus>;

export const Settings = z.strictObject({
  language: z.enum(["system", "en", "zh"]),
  theme: z.enum(["system", "light", "dark"]),
});
export type Settings = z.infer<typeof Settings>;

export const AppInfo = z.object({
  version: z.string(),
  platform: z.string(),
  /** "ipc" inside Electron, "ws" when served by `moe-studio serve`. */
  transport: z.enum(["ipc", "ws"]),
  /** Whether models.pickFolder opens a native dialog (Electron only). */
  canPickFolder: z.boolean(),
  systemLocale: z.string(),
  simd: z.string(),
  cuda: z.object({ compiled: z.boolean(), devices: z.number(), error: z.string().optional() }),
});
export type AppInfo = z.infer<typeof AppInfo>;

// ---------- quantize ----------
/** Output kinds: a GGUF file for llama.cpp & co., or a quantized model folder our engine runs. */
export const QuantizeTarget = z.enum(["gguf", "model"]);
export const QuantizeFormat = z.enum(["f16", "q8_0", "q4_0", "q4_k"]);
/** One side of the comparison; null fields were not measured (e.g. the engine does not run GGUF files). */
export const QuantizeSide = z.object({
  path: z.string(),
  fileBytes: z.number(),
  memoryBytes: z.number().nullable(),
  prefillTokensPerSecond: z.number().nullable(),
  decodeTokensPerSecond: z.number().nullable(),
});
export const QuantizeJob = z.object({
  id: Id,
  target: QuantizeTarget,
  format: QuantizeFormat,
  sourceDir: z.string(),
  output: z.string(),
  state: z.enum(["running", "comparing", "done", "error", "cancelled"]),
  /** Progress as a fraction of the output written, 0..1. */
  progress: z.number(),
  message: z.string().nullable(),
  notes: z.array(z.string()),
  result: z
    .object({
      source: QuantizeSide,
      quantized: QuantizeSide,
      /** Accuracy on a fixed token stream: mean KL(float ‖ quantized) of the next-token distribution, top-1 agreement. */
      klDivergence: z.number().nullable(),
      top1Agreement: z.number().nullable(),
      seconds: z.number(),
    })
    .nullable(),
});
export type QuantizeJob = z.infer<typeof QuantizeJob>;

const Empty = z.strictObject({});
const ById = z.strictObject({ id: Id });
const Ok = z.object({ ok: z.literal(true) });

function call<I extends z.ZodType, O extends z.ZodType>(input: I, output: O) {
  return { input, output };
}

// ---------- the table ----------
export const calls = {
  "app.info": call(Empty, AppInfo),
  "settings.get": call(Empty, Settings),
  "settings.set": call(Settings.partial().strict(), Settings),

  "conversations.list": call(z.strictObject({ search: Text(500).optional() }), z.array(ConversationSummary)),
  "conversations.get": call(ById, z.object({ conversation: Conversation, messages: z.array(Message) })),
  "conversations.create": call(
    z.strictObject({ title: Text(200).optional(), systemPrompt: Text(100_000).optional(), presetId: Id.nullable().optional() }),
    Conversation,
  ),
  "conversations.rename": call(z.strictObject({ id: Id, title: Text(200).min(1) }), Conversation),
  "conversations.update": call(
    z.strictObject({
      id: Id,
      systemPrompt: Text(100_000).optional(),
      presetId: Id.nullable().optional(),
      sampling: SamplingSettings.partial().strict().optional(),
    }),
    Conversation,
  ),
  "conversations.delete": call(ById, Ok),

  /** Saves the user message, starts the reply; tokens arrive as chat.delta events, then chat.done. */
  "chat.send": call(
    z.strictObject({ conversationId: Id, content: Text(1_000_000).min(1) }),
    z.object({ userMessage: Message, assistantMessage: Message }),
  ),
  /** Stops the running reply of that conversation (takes effect within one token). */
  "chat.stop": call(z.strictObject({ conversationId: Id }), Ok),
  /** Replaces the last assistant message with a new reply. */
  "chat.regenerate": call(z.strictObject({ conversationId: Id }), z.object({ assistantMessage: Message })),
  /** Edits a user message, deletes every later message, and replies again. */
  "chat.edit": call(
    z.strictObject({ conversationId: Id, messageId: Id, content: Text(1_000_000).min(1) }),
    z.object({ userMessage: Message, assistantMessage: Message }),
  ),

  "presets.list": call(Empty, z.array(Preset)),
  "presets.save": call(
    z.strictObject({ id: Id.optional(), name: Text(200).min(1), content: Text(100_000), language: z.enum(["en", "zh"]) }),
    Preset,
  ),
  "presets.delete": call(ById, Ok),

  /** Loads a model folder into the engine worker (progress: models.progress events; then engine.status). */
  "models.open": call(z.strictObject({ dir: Text(4096).min(1) }), ModelCard),
  "models.recent": call(Empty, z.array(RecentModel)),
  "models.forget": call(z.strictObject({ dir: Text(4096).min(1) }), Ok),
  "models.status": call(Empty, EngineStatus),
  /** Native folder dialog (Electron); { dir: null } when cancelled or unavailable (web). */
  "models.pickFolder": call(Empty, z.object({ dir: z.string().nullable() })),

  // ---------- quantize ----------
  /** Quantizes/exports a model folder into the app's models folder as `name` (progress: quantize.job events). */
  "quantize.start": call(
    z.strictObject({
      dir: Text(4096).min(1),
      target: QuantizeTarget,
      format: QuantizeFormat,
      name: Text(200).min(1).regex(/^[^/\\]+$/, "a name, not a path").refine((n) => n !== "." && n !== "..", "a name, not a path"),
    }),
    QuantizeJob,
  ),
  /** Cancels a running job; nothing partial is left behind. */
  "quantize.cancel": call(ById, Ok),
  "quantize.list": call(Empty, z.array(QuantizeJob)),
  /** The folder quantized models and GGUF files are written to. */
  "quantize.folder": call(Empty, z.object({ dir: z.string() })),
} as const;

export const events = {
  "chat.delta": z.object({ conversationId: Id, messageId: Id, delta: z.string(), tokens: z.number() }),
  /** The reply ended (complete, stopped or error): the final message with its statistics. */
  "chat.done": z.object({ conversationId: Id, message: Message }),
  "engine.status": EngineStatus,
  "models.progress": z.object({ dir: z.string(), done: z.number(), total: z.number() }),

  // ---------- quantize ----------
  /** A quantize job changed (progress, state, result). */
  "quantize.job": QuantizeJob,
} as const;

// ---------- types both sides use ----------
export type CallName = keyof typeof calls;
export type EventName = keyof typeof events;
export type CallInput<N extends CallName> = z.input<(typeof calls)[N]["input"]>;
export type CallOutput<N extends CallName> = z.output<(typeof calls)[N]["output"]>;
export type EventPayload<E extends EventName> = z.output<(typeof events)[E]>;

/** What the renderer can do: the preload exposes exactly this, and the web transport implements it. */
export interface Api {
  call<N extends CallName>(name: N, input: CallInput<N>): Promise<CallOutput<N>>;
  on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void;
}

/** An error a call returns: `code` lets the UI choose a message; `message` is already human-readable. */
export type RpcErrorCode = "invalid_input" | "unknown_call" | "not_found" | "no_model" | "busy" | "engine" | "internal";
export class RpcError extends Error {
  constructor(
    readonly code: RpcErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "RpcError";
  }
}

export type WireMessage =
  | { t: "call"; id: number; name: string; input: unknown }
  | { t: "result"; id: number; ok: true; output: unknown }
  | { t: "result"; id: number; ok: false; error: { message: string; code: RpcErrorCode } }
  | { t: "event"; name: EventName; payload: unknown };

export const IPC_CALL_CHANNEL = "moe:call";
export const IPC_EVENT_CHANNEL = "moe:event";
