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
/** Text that may not hold a NUL character: names, paths, queries and sample text (SQLite functions, C strings and
 *  file names end at one; no dataset needs it). The error names the field: "search: must not contain ...". */
export const NUL_REFUSED = "must not contain a NUL character (\\u0000)";
const NoNulText = (max: number) => Text(max).refine((v) => !v.includes("\0"), NUL_REFUSED);

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
  /**
   * One side of a "Compare with base" turn (chat.compare): the reply of the bare base model, or of the conversation's
   * adapter; null for an ordinary message. A compared turn is a user message followed by its two replies.
   */
  compare: z.enum(["base", "adapter"]).nullable(),
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
  /** A PEFT adapter folder (e.g. a run's checkpoint-200) every reply applies unmerged on the base model; null: the base. */
  adapterDir: z.string().nullable(),
  /** A remote OpenAI-compatible endpoint (endpoints.*) that answers instead of the local model; null: local. */
  endpointId: z.string().nullable(),
});
export type Conversation = z.infer<typeof Conversation>;

/** A remote OpenAI-compatible server the chat can talk to (a vLLM cluster, another MoE Studio). */
export const Endpoint = z.object({
  id: Id,
  name: z.string(),
  /** Up to and including /v1: http(s)://host:port/v1 */
  baseUrl: z.string(),
  /** The model id the requests name. */
  model: z.string(),
  /** Headless: the environment variable holding the key (read at each request); null: the stored key, if any. */
  keyEnv: z.string().nullable(),
  /** Whether a key was stored for it (never sent back itself). */
  hasKey: z.boolean(),
  /** Where a stored key lives: the OS keychain, or memory (gone when the app quits). */
  keyStorage: z.enum(["keychain", "memory"]),
  createdAt: z.number(),
});
export type Endpoint = z.infer<typeof Endpoint>;

const EndpointUrl = z.string().max(2048).refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === "http:" || u.protocol === "https:") && !u.username && !u.password && !u.search && !u.hash;
  } catch {
    return false;
  }
}, "must be an http:// or https:// URL (the API's base, e.g. http://10.0.0.5:8000/v1), with no user, query or fragment");
const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "must be an environment variable name");
const EndpointKey = z.string().min(1).max(4096).regex(/^[\x21-\x7e]+$/, "an API key is printable ASCII without spaces");

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
  device: z.enum(["cpu", "emu", "cuda"]),
  threads: z.number(),
  hasChatTemplate: z.boolean(),
  sampling: SamplingDefaults,
  /**
   * The context a chat session with this model gets (what the engine worker opens sessions with; contextLength is
   * the model's maximum). The context meter's total; estimatedMemoryBytes counts a KV cache of this many tokens.
   */
  sessionContextLength: z.number(),
  kvCache: z.enum(["f32", "f16", "int8"]).optional(), // KV cache storage; absent = f32
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
  // model library: where models come from and go ("" = the default: HF_ENDPOINT or the hub; <data>/models)
  hubSource: z.enum(["hf", "modelscope"]),
  hubEndpoint: z.string().max(500).refine((v) => v === "" || /^https?:\/\/[^\s]+$/.test(v), "must be an http(s) URL, e.g. https://hf-mirror.com, or empty"),
  modelsDir: z.string().max(4096),
  /** The KV cache models load with (applies from the next load): f16 by default, f32 exact, int8 a quarter of f32. */
  kvCache: z.enum(["f32", "f16", "int8"]),
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

// ---------- library (shapes) ----------
export const HubSource = z.enum(["hf", "modelscope"]);
export type HubSource = z.infer<typeof HubSource>;
const RepoId = z
  .string()
  .max(200)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, "expected a model id owner/name, e.g. Qwen/Qwen3-0.6B");
const DownloadId = z.string().min(1).max(200);

export const PrecisionFit = z.object({
  precision: z.enum(["bf16", "int8", "int4"]),
  weightBytes: z.number(),
  kvBytes: z.number(),
  totalBytes: z.number(),
  /** fits; tight: loads only if other programs make room; no: does not fit this machine. */
  verdict: z.enum(["fits", "tight", "no"]),
  device: z.enum(["gpu", "cpu"]),
});
export type PrecisionFit = z.infer<typeof PrecisionFit>;

export const FitEstimate = z.object({
  paramsTotal: z.number(),
  paramsActive: z.number(),
  contextLength: z.number(),
  kvBytesPerToken: z.number(),
  fits: z.array(PrecisionFit),
});
export type FitEstimate = z.infer<typeof FitEstimate>;

export const MachineMemory = z.object({ totalRamBytes: z.number(), freeRamBytes: z.number(), vramBytes: z.number() });
export type MachineMemory = z.infer<typeof MachineMemory>;

export const DownloadProgress = z.object({
  id: DownloadId,
  repo: z.string(),
  source: HubSource,
  /** The model folder (it exists once state is "done"). */
  dir: z.string(),
  /** interrupted: found unfinished at start-up without having been paused (a crash, a kill, an error): resume it. */
  state: z.enum(["queued", "downloading", "paused", "interrupted", "done", "error", "cancelled"]),
  totalBytes: z.number(),
  doneBytes: z.number(),
  bytesPerSecond: z.number(),
  etaSeconds: z.number().nullable(),
  files: z.array(
    z.object({
      path: z.string(),
      size: z.number(),
      doneBytes: z.number(),
      state: z.enum(["pending", "downloading", "verifying", "done"]),
      /** How the file is verified: "none" = the hub listed no checksum, only the size is checked. */
      checksum: z.enum(["sha256", "git-sha1", "none"]),
    }),
  ),
  error: z.string().nullable(),
  /** gated: an access token is needed (or was refused). */
  /** no_checksum: checksums were required (requireChecksums) and the hub lists a file without one. */
  errorKind: z.enum(["gated", "not_found", "stalled", "checksum", "no_checksum", "network", "http", "invalid"]).nullable(),
});
export type DownloadProgress = z.infer<typeof DownloadProgress>;

export const CatalogEntry = z.object({
  id: z.string(),
  name: z.string(),
  family: z.string(),
  architecture: z.string(),
  modelType: z.string(),
  hf: z.string(),
  modelscope: z.string().nullable(),
  /** Snapshot of the bf16 download size (bytes). */
  downloadBytes: z.number(),
  fit: FitEstimate,
  /** The downloaded model folder, when it is in the models folder. */
  localDir: z.string().nullable(),
});
export type CatalogEntry = z.infer<typeof CatalogEntry>;

export const LibraryStatus = z.object({
  source: HubSource,
  /** The endpoint downloads and search use now (setting, else HF_ENDPOINT, else the hub's own). */
  endpoint: z.string(),
  modelsDir: z.string(),
  /** Whether an access token is set (the token itself never comes back). */
  hasToken: z.boolean(),
  tokenStorage: z.enum(["safeStorage", "memory"]),
});
export type LibraryStatus = z.infer<typeof LibraryStatus>;

export const HubSearchResult = z.object({
  repo: z.string(),
  modelType: z.string().nullable(),
  downloads: z.number(),
  likes: z.number(),
  gated: z.boolean(),
  localDir: z.string().nullable(),
});
export type HubSearchResult = z.infer<typeof HubSearchResult>;

export const RepoDetails = z.object({
  repo: z.string(),
  source: HubSource,
  revision: z.string(),
  gated: z.boolean(),
  /** Only the files a download fetches. */
  files: z.array(z.object({ path: z.string(), size: z.number() })),
  downloadBytes: z.number(),
  modelType: z.string(),
  fit: FitEstimate,
});
export type RepoDetails = z.infer<typeof RepoDetails>;
// ---------- library: what the models folder holds ----------
/**
 * Where a file in the models folder came from, as the app recorded it when it wrote it: a sidecar `moe-studio.json`
 * inside a folder, or `<file>.moe-studio.json` beside a .gguf (electron/library/local.ts). Other programs' folders
 * have none (origin null). format: the output's weights: "adapter" (a PEFT folder), a merged dtype (bf16/fp16/fp32),
 * a quantized folder's or GGUF file's type (q8_0/q4_0/q4_k; f16 for an f16 GGUF).
 */
export const LocalFormat = z.enum(["adapter", "bf16", "fp16", "fp32", "f16", "q8_0", "q4_0", "q4_k"]);
export type LocalFormat = z.infer<typeof LocalFormat>;
export const LocalOrigin = z.discriminatedUnion("origin", [
  z.object({
    origin: z.literal("finetune"),
    run: z.object({ id: z.string(), name: z.string() }),
    /** The checkpoint's step; null for the run's final adapter. */
    checkpoint: z.number().int().min(0).nullable(),
    /** The base model folder the run trained. */
    base: z.string(),
    format: LocalFormat,
  }),
  z.object({ origin: z.literal("quantize"), /** the model folder it was made from */ source: z.string(), format: LocalFormat }),
  z.object({ origin: z.literal("download"), repo: z.string() }),
  /** An adapter trained elsewhere (moe-studio export-job → LLaMA-Factory) and brought back with import-adapter. */
  z.object({
    origin: z.literal("cluster"), /** the local base model folder it runs on */ base: z.string(), /** the job's name, if known */ job: z.string().nullable(),
    /** absent: the adapter itself; else the merged weights made of it (library.exportMerged) */ format: LocalFormat.optional(),
  }),
]);
export type LocalOrigin = z.infer<typeof LocalOrigin>;

export const LocalModel = z.object({
  /** The folder's or file's name in the models folder. */
  name: z.string(),
  path: z.string(),
  /** model: a folder with config.json (our engine opens it); adapter: a PEFT folder (adapter_config.json); gguf: a file for llama.cpp & co. */
  kind: z.enum(["model", "adapter", "gguf"]),
  sizeBytes: z.number(),
  /** config.json's model_type; an adapter's base model (adapter_config.json base_model_name_or_path); null if unknown. */
  architecture: z.string().nullable(),
  modifiedAt: z.number(),
  origin: LocalOrigin.nullable(),
});
export type LocalModel = z.infer<typeof LocalModel>;

// ---------- datasets: shapes ----------
// A dataset is a list of samples; a sample is one conversation normalised to the messages form. The semantics of
// every datasets/samples call (errors, jobs, events, limits) are written up in electron/datasets/README.md.

/** The three input formats a line (or JSON array element) may have; see electron/datasets/README.md. */
export const DatasetFormat = z.enum(["messages", "conversations", "instruction"]);
export type DatasetFormat = z.infer<typeof DatasetFormat>;

/** One turn of a sample. A valid sample: an optional system message first, then user/assistant alternating,
 *  starting with user and ending with assistant, no empty (whitespace-only) content. */
export const SampleMessage = z.strictObject({
  role: z.enum(["system", "user", "assistant"]),
  content: NoNulText(4_000_000),
});
export type SampleMessage = z.infer<typeof SampleMessage>;

/** Why a line was rejected (the list): not_json also covers invalid UTF-8 and over-long lines. */
export const RejectReason = z.enum(["not_json", "unknown_shape", "empty_content", "wrong_role_order", "no_assistant_turn"]);
export type RejectReason = z.infer<typeof RejectReason>;

/** A bad line: `line` is 1-based in the file (for a JSON array file: the line where the element starts). */
export const RejectedLine = z.object({ line: z.number(), reason: RejectReason, error: z.string() });
export type RejectedLine = z.infer<typeof RejectedLine>;

export const FormatCounts = z.object({ messages: z.number(), conversations: z.number(), instruction: z.number() });
export type FormatCounts = z.infer<typeof FormatCounts>;

/** What a scan found. `rejected` lists at most the first 10,000 bad lines; `rejectedCount` is the full number. */
export const ImportReport = z.object({
  importId: Id,
  fileName: z.string(),
  /** "jsonl": one sample per line; "json-array": the file is one JSON array of samples. */
  container: z.enum(["jsonl", "json-array"]),
  totalBytes: z.number(),
  /** Non-blank lines (jsonl) or array elements (json-array) seen. */
  records: z.number(),
  valid: z.number(),
  formats: FormatCounts,
  rejectedCount: z.number(),
  rejected: z.array(RejectedLine),
});
export type ImportReport = z.infer<typeof ImportReport>;

/** An import's state: scanning -> ready (report) -> committing -> committed; or failed / cancelled at any point. */
export const ImportStatus = z.object({
  importId: Id,
  state: z.enum(["scanning", "ready", "committing", "committed", "failed", "cancelled"]),
  bytesRead: z.number(),
  totalBytes: z.number(),
  records: z.number(),
  valid: z.number(),
  rejectedCount: z.number(),
  /** Set once the scan finished (state ready, committing, committed). */
  report: ImportReport.nullable(),
  /** The new dataset's id (state committed). */
  datasetId: Id.nullable(),
  /** Why it failed (state failed): e.g. "data.jsonl: file not found". */
  error: z.string().nullable(),
});
export type ImportStatus = z.infer<typeof ImportStatus>;

export const DatasetSummary = z.object({
  id: Id,
  name: z.string(),
  createdAt: z.number(),
  updatedAt: z.number(),
  /** The imported file's path (Electron, CLI) or name (browser upload); null for a split/derived dataset. */
  sourceFile: z.string().nullable(),
  sampleCount: z.number(),
  /** Samples per input format at import (samples added in the editor count as "messages"). */
  formats: FormatCounts,
  /** Lines rejected when it was imported (kept in the dataset's report; see datasets.get). */
  rejectedCount: z.number(),
  /** Samples with a problem that does not depend on a tokenizer: today, duplicates of an earlier sample. */
  problemCount: z.number(),
  /** What samples.undo would undo, or null: "edit" | "add" | "duplicate" | "delete". */
  undo: z.enum(["edit", "add", "duplicate", "delete"]).nullable(),
});
export type DatasetSummary = z.infer<typeof DatasetSummary>;

/** A sample problem. duplicate: same messages as an earlier sample; too_long: more tokens than maxSeqLen. */
export const SampleProblem = z.enum(["duplicate", "too_long"]);
export type SampleProblem = z.infer<typeof SampleProblem>;

/** One row of the samples table (no full messages: open it with samples.get). */
export const SampleRow = z.object({
  id: Id,
  datasetId: Id,
  /** 0-based place in the dataset's own order (stable under search/sort; for "#n" display add 1). */
  index: z.number(),
  /** First 200 characters of the first user and of the last assistant message. */
  userPreview: z.string(),
  assistantPreview: z.string(),
  /** Search: ~120 characters around the first match, else "". */
  snippet: z.string(),
  messageCount: z.number(),
  hasSystem: z.boolean(),
  /** Chat-templated token count for the query's tokenizer; null if not counted yet (or no tokenizer asked). */
  tokens: z.number().nullable(),
  problems: z.array(SampleProblem),
  format: DatasetFormat,
  /** Line in the imported file, null for samples added in the editor. */
  sourceLine: z.number().nullable(),
  revision: z.number(),
  updatedAt: z.number(),
});
export type SampleRow = z.infer<typeof SampleRow>;

export const Sample = SampleRow.omit({ userPreview: true, assistantPreview: true, snippet: true }).extend({
  messages: z.array(SampleMessage),
});
export type Sample = z.infer<typeof Sample>;

/** A model folder whose tokenizer.json + chat template count tokens; maxSeqLen flags samples as too_long. */
export const TokenizerChoice = z.strictObject({
  modelDir: Text(4096).min(1),
  maxSeqLen: z.number().int().min(1).max(10_000_000).optional(),
});
export type TokenizerChoice = z.infer<typeof TokenizerChoice>;


/** Largest decoded chunk datasets.upload.chunk accepts (its base64 text stays under the WebSocket's 16 MiB cap). */
export const UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024;
/** Largest piece datasets.exportChunk returns (characters of jsonl text; always whole lines unless one line is longer). */
export const EXPORT_CHUNK_CHARS = 4 * 1024 * 1024;
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
/** A quantize or gguf job's result (Job.result): the output and the comparison measured after it was written. */
export const QuantizeResult = z.object({
  target: QuantizeTarget,
  format: QuantizeFormat,
  output: z.string(),
  /** What the writer noted (tensors kept at higher precision, …) and what was not measured and why. */
  notes: z.array(z.string()),
  source: QuantizeSide,
  quantized: QuantizeSide,
  /** Accuracy on a fixed token stream: mean KL(float ‖ quantized) of the next-token distribution, top-1 agreement. */
  klDivergence: z.number().nullable(),
  top1Agreement: z.number().nullable(),
  seconds: z.number(),
});
export type QuantizeResult = z.infer<typeof QuantizeResult>;

// ---------- jobs ----------
// One job system (electron/jobs/): every long task the app runs — dataset import, token counting, quantize, GGUF
// export, download, training, merged export — is a Job the main process owns: its progress, cancel, pause where the
// task allows, its state across restarts, and one event (jobs.job) for every change. Views read their own jobs from
// one renderer store, filtered by kind and subject.
export const JobKind = z.enum(["scan", "import", "tokens", "quantize", "gguf", "download", "train", "export"]);
export type JobKind = z.infer<typeof JobKind>;
/**
 * queued → running → done | failed | cancelled; running → pausing → paused → (resume) running.
 * interrupted: the app stopped (a crash, a forced quit) while the job ran; retry or (where the kind resumes) resume.
 */
export const JobStatus = z.enum(["queued", "running", "pausing", "paused", "done", "failed", "cancelled", "interrupted"]);
export type JobStatus = z.infer<typeof JobStatus>;
/**
 * A job's title as a key of the renderer's message tables (renderer/src/i18n: "jobs.title.<key>") and the values it
 * names, so the activity panel reads in the user's language; Job.title is the same line in English (logs, the CLI,
 * and the fallback for a row whose key this version does not know).
 */
export const JobTitleKey = z.enum(["quantize", "gguf", "download", "train", "exportAdapter", "exportMerged", "mergeAdapter", "scan", "import", "tokens"]);
export type JobTitleKey = z.infer<typeof JobTitleKey>;
export const JobLabel = z.object({ key: JobTitleKey, args: z.record(z.string(), z.string()) });
export type JobLabel = z.infer<typeof JobLabel>;
export const Job = z.object({
  id: Id,
  kind: JobKind,
  /** What a person reads in the activity panel ("Quantize Qwen3-MoE to q4_k", "Finetune run 'support-bot'"), in English. */
  title: z.string(),
  /** The same title for the renderer to translate; null for a kind that has none (its title is shown as it is). */
  label: JobLabel.nullable(),
  status: JobStatus,
  /** done of total in unit; null until the task knows its size. */
  progress: z.object({ done: z.number(), total: z.number(), unit: z.enum(["bytes", "steps", "samples", "tensors", "fraction"]) }).nullable(),
  /** The latest line worth reading ("step 12/100, loss 1.93", "writing model-00002-of-00003.safetensors"). */
  message: z.string().nullable(),
  /** Counts the kind reports while it runs, which views show in their own words (an import scan: records, valid, rejected). */
  figures: z.record(z.string(), z.number()).nullable().optional(),
  error: z.string().nullable(),
  canPause: z.boolean(),
  canResume: z.boolean(),
  startedAt: z.number(),
  updatedAt: z.number(),
  /** What the job works on, for views that filter their jobs: a dataset id, a model folder, a finetune run id. */
  subject: z.string().nullable(),
  /** The kind's own outcome (a quantize comparison, an export's output folder); null until done. */
  result: z.unknown().nullable(),
});
export type Job = z.infer<typeof Job>;

// ---------- finetune ----------
/** The training engine's knobs by the names train.json uses (electron/train/config.ts); every one optional. */
export const LoraTarget = z.enum(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
export const TrainKnobs = z.strictObject({
  learning_rate: z.number().positive().max(1).optional(),
  min_lr: z.number().min(0).max(1).optional(),
  warmup_ratio: z.number().min(0).max(1).optional(),
  warmup_steps: z.number().int().min(0).max(10_000_000).optional(),
  lr_scheduler_type: z.enum(["cosine_with_min_lr", "cosine", "linear", "constant"]).optional(),
  num_train_epochs: z.number().positive().max(10_000).optional(),
  max_steps: z.number().int().min(1).max(100_000_000).optional(),
  per_device_train_batch_size: z.number().int().min(1).max(4096).optional(),
  gradient_accumulation_steps: z.number().int().min(1).max(4096).optional(),
  max_seq_length: z.number().int().min(8).max(1_048_576).optional(),
  lora_rank: z.number().int().min(1).max(1024).optional(),
  lora_alpha: z.number().positive().max(100_000).optional(),
  lora_dropout: z.number().min(0).max(0.95).optional(),
  use_rslora: z.boolean().optional(),
  target_modules: z.array(LoraTarget).min(1).max(7).optional(),
  weight_decay: z.number().min(0).max(10).optional(),
  max_grad_norm: z.number().min(0).max(1e6).optional(),
  save_steps: z.number().int().min(0).max(100_000_000).optional(),
  eval_steps: z.number().int().min(0).max(100_000_000).optional(),
  seed: z.number().int().min(0).max(2 ** 31 - 1).optional(),
  gradient_checkpointing: z.boolean().optional(),
  validation_split: z.number().min(0).max(0.5).optional(),
  loss_on: z.enum(["assistant", "all"]).optional(),
  expert_lr_scale: z.strictObject({ routed: z.number().min(0).max(100), shared: z.number().min(0).max(100), attention: z.number().min(0).max(100) }).optional(),
});
export type TrainKnobs = z.infer<typeof TrainKnobs>;
/** Quick / Balanced / Thorough for a first run; hunyuan_lora is Tencent's recipe (r 64, alpha 128, dropout 0.1, ...). */
export const TrainPreset = z.enum(["quick", "balanced", "thorough", "hunyuan_lora"]);
export const FinetuneSpec = z.strictObject({
  modelDir: Text(4096).min(1),
  datasetId: Id,
  /** nf4: Q-LoRA (the frozen base quantized to NF4 at load); none: LoRA on the stored precision. */
  baseQuant: z.enum(["none", "nf4"]),
  preset: TrainPreset,
  /** Advanced panel: overrides of the preset's values. */
  knobs: TrainKnobs,
  name: Text(200).optional(),
});
export type FinetuneSpec = z.infer<typeof FinetuneSpec>;
/** The engine's estimate before step 1 against this machine's free memory. */
export const MemoryEstimate = z.object({
  baseBytes: z.number(), adapterBytes: z.number(), activationBytes: z.number(), totalBytes: z.number(),
  /** AdamW's two moments (8 bytes per LoRA parameter); adapterBytes is then the parameters and their gradients. */
  optimizerBytes: z.number().optional(),
  /** Free RAM now (MemAvailable); -1 unknown. */
  availableBytes: z.number(),
  params: z.number(),
  verdict: z.enum(["fits", "tight", "will_not_fit"]),
  /** What to change when it is tight or will not fit. */
  advice: z.string().nullable(),
  /** The max_seq_length the run uses: the knob, or the preset's cut to the model's context (max_position_embeddings). */
  maxSeqLength: z.number().optional(),
  /** True when that is the preset's max_seq_length cut to the model's context (the preset card names the uncut one). */
  seqCut: z.boolean().optional(),
});
export type MemoryEstimate = z.infer<typeof MemoryEstimate>;
export const TrainPoint = z.object({
  step: z.number(),
  loss: z.number().nullable(),
  evalLoss: z.number().nullable(),
  lr: z.number().nullable(),
  gradNorm: z.number().nullable(),
  tokensPerS: z.number().nullable(),
  elapsedS: z.number().nullable(),
});
export type TrainPoint = z.infer<typeof TrainPoint>;
/**
 * Expert routing telemetry (the engine's Model::routing_counts): how many (token, expert) pairs each expert of each
 * MoE layer received — every routed token counts top-k times, so Σ counts of a layer = tokens · its topK (Hunyuan's
 * varies by layer; the outer topK is the largest). Dense layers
 * are not listed (a dense model has no layers here).
 */
export const RoutingLayer = z.object({ layer: z.number().int().min(0), topK: z.number().int().min(1), counts: z.array(z.number().min(0)) });
export type RoutingLayer = z.infer<typeof RoutingLayer>;
/** The loaded model's routing since it was loaded (a restarted engine worker starts again from 0). */
export const ModelRouting = z.object({ dir: z.string(), topK: z.number().int(), layers: z.array(RoutingLayer) });
export type ModelRouting = z.infer<typeof ModelRouting>;
/** One window of a training run's routing: the steps (fromStep, step] (training forwards only, not validation). */
export const RunRouting = z.object({ step: z.number().int(), fromStep: z.number().int(), topK: z.number().int(), layers: z.array(RoutingLayer) });
export type RunRouting = z.infer<typeof RunRouting>;
export const RunStatus = z.enum(["queued", "running", "paused", "done", "failed", "cancelled", "interrupted"]);
export const FinetuneRun = z.object({
  id: Id,
  name: z.string(),
  modelDir: z.string(),
  datasetId: z.string(),
  datasetName: z.string(),
  baseQuant: z.enum(["none", "nf4"]),
  preset: TrainPreset,
  /** The resolved knobs the run trains with (preset + overrides + defaults). */
  args: z.record(z.string(), z.unknown()),
  status: RunStatus,
  error: z.string().nullable(),
  createdAt: z.number(),
  updatedAt: z.number(),
  step: z.number(),
  totalSteps: z.number().nullable(),
  finalLoss: z.number().nullable(),
  finalEvalLoss: z.number().nullable(),
  /** PEFT adapter folders: checkpoint-<step>/ and final/ (step of final = the last step). */
  checkpoints: z.array(z.object({ step: z.number(), dir: z.string(), final: z.boolean() })),
  runDir: z.string(),
  /** The job that trains it now (pause, resume, cancel go through jobs.*); null when none runs. */
  jobId: Id.nullable(),
});
export type FinetuneRun = z.infer<typeof FinetuneRun>;

/** The OpenAI-compatible API server (Settings): where it listens and the key clients send. */
export const ApiServerStatus = z.object({
  running: z.boolean(),
  /** What an OpenAI client takes as its base URL (http://127.0.0.1:PORT/v1); null while stopped. */
  baseUrl: z.string().nullable(),
  host: z.string(),
  port: z.number().int(),
  /** Shown for the user to copy into their client; null until the server was first switched on. */
  key: z.string().nullable(),
  /** Where the key is kept: the OS keychain (safeStorage) or memory only (gone when the app quits). */
  keyStorage: z.enum(["safeStorage", "memory"]),
  /** Why the last start failed (a port in use), or null. */
  error: z.string().nullable(),
});
export type ApiServerStatus = z.infer<typeof ApiServerStatus>;

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
  "api.status": call(Empty, ApiServerStatus),
  /** Switch the API server on (on 127.0.0.1: `port`, a fresh key with newKey) or off; remembered across starts. */
  "api.set": call(z.strictObject({ enabled: z.boolean(), port: z.number().int().min(1024).max(65535).optional(), newKey: z.boolean().optional() }), ApiServerStatus),

  "conversations.list": call(z.strictObject({ search: Text(500).optional() }), z.array(ConversationSummary)),
  "conversations.get": call(ById, z.object({ conversation: Conversation, messages: z.array(Message) })),
  "conversations.create": call(
    z.strictObject({
      title: Text(200).optional(),
      systemPrompt: Text(100_000).optional(),
      presetId: Id.nullable().optional(),
      /** "Chat with checkpoint N": the base model folder (default: the loaded model) and the adapter folder it runs with. */
      modelDir: NoNulText(4096).nullable().optional(),
      adapterDir: NoNulText(4096).nullable().optional(),
      /** Chat with a remote endpoint instead of the local model. */
      endpointId: Id.nullable().optional(),
    }),
    Conversation,
  ),
  "conversations.rename": call(z.strictObject({ id: Id, title: Text(200).min(1) }), Conversation),
  "conversations.update": call(
    z.strictObject({
      id: Id,
      systemPrompt: Text(100_000).optional(),
      presetId: Id.nullable().optional(),
      sampling: SamplingSettings.partial().strict().optional(),
      /** Run later replies with another adapter folder, or null: the base. */
      adapterDir: NoNulText(4096).nullable().optional(),
      /** Later replies from a remote endpoint, or null: the local model. */
      endpointId: Id.nullable().optional(),
    }),
    Conversation,
  ),
  "conversations.delete": call(ById, Ok),

  "endpoints.list": call(Empty, z.array(Endpoint)),
  /** key: stored in the keychain (never in the database); keyEnv: read from that variable at each request instead. */
  "endpoints.add": call(
    z.strictObject({ name: Text(100).min(1), baseUrl: EndpointUrl, model: Text(256).min(1), key: EndpointKey.optional(), keyEnv: EnvName.optional() }),
    Endpoint,
  ),
  /** key null: forget the stored key; keyEnv null: use the stored key again. */
  "endpoints.update": call(
    z.strictObject({ id: Id, name: Text(100).min(1).optional(), baseUrl: EndpointUrl.optional(), model: Text(256).min(1).optional(),
      key: EndpointKey.nullable().optional(), keyEnv: EnvName.nullable().optional() }),
    Endpoint,
  ),
  "endpoints.delete": call(ById, Ok),
  /** The remote's GET /models: of a saved endpoint (id), or of one being added (baseUrl, key). */
  "endpoints.models": call(
    z.union([z.strictObject({ id: Id }), z.strictObject({ baseUrl: EndpointUrl, key: EndpointKey.optional() })]),
    z.object({ models: z.array(z.string()) }),
  ),

  /** Saves the user message, starts the reply; tokens arrive as chat.delta events, then chat.done. */
  "chat.send": call(
    z.strictObject({ conversationId: Id, content: Text(1_000_000).min(1) }),
    z.object({ userMessage: Message, assistantMessage: Message }),
  ),
  /**
   * "Compare with base": saves the user message, then answers it twice — with the bare base model and with the
   * conversation's adapter — streamed one after the other as chat.delta events on their two messages (compare "base"
   * / "adapter"), each ended by chat.done. The conversation must have an adapter.
   */
  "chat.compare": call(
    z.strictObject({ conversationId: Id, content: Text(1_000_000).min(1) }),
    z.object({ userMessage: Message, baseMessage: Message, adapterMessage: Message }),
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
  /** The loaded model's expert routing counts since it loaded (chat prefill and decode); null: no model loaded. */
  "models.routing": call(Empty, ModelRouting.nullable()),
  /** Native folder dialog (Electron); { dir: null } when cancelled or unavailable (web). */
  "models.pickFolder": call(Empty, z.object({ dir: z.string().nullable() })),
  // ---------- library ----------
  "library.status": call(Empty, LibraryStatus),
  /** What the models folder holds (models, adapters, GGUF files; temporary and hidden entries left out), newest first, with their origin. */
  "library.local": call(Empty, z.array(LocalModel)),
  /** Merged weights of an imported adapter (origin "cluster") on its base, as an export job into the models folder. */
  "library.exportMerged": call(
    z.strictObject({ adapterPath: NoNulText(4096).min(1), dtype: z.enum(["bf16", "fp16", "fp32"]), name: Text(200).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "letters, digits, . _ and - only") }),
    Job,
  ),
  /** An adapter trained elsewhere (a cluster's LLaMA-Factory, peft): checked against `base` by the engine, copied in. */
  "library.importAdapter": call(
    z.strictObject({ dir: NoNulText(4096).min(1), base: NoNulText(4096).min(1), name: Text(200).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "letters, digits, . _ and - only").optional() }),
    LocalModel,
  ),
  /** The curated catalogue with a fit estimate per precision at `contextLength` (default 4096) for this machine. */
  "library.catalog": call(
    z.strictObject({ contextLength: z.number().int().min(256).max(1_048_576).optional() }),
    z.object({ machine: MachineMemory, contextLength: z.number(), models: z.array(CatalogEntry) }),
  ),
  /** Search the hub by name (Hugging Face or its mirror), filtered to the architectures the engine runs. */
  "library.search": call(z.strictObject({ query: Text(200).min(1) }), z.array(HubSearchResult)),
  /** Live file list, size and fit of one repo (from its config.json). */
  "library.inspect": call(
    z.strictObject({ repo: RepoId, source: HubSource.optional(), contextLength: z.number().int().min(256).max(1_048_576).optional() }),
    RepoDetails,
  ),
  /**
   * Starts a download as a "download" job (subject: its id; progress in bytes, figures bytesPerSecond / etaSeconds
   * (-1 unknown) / file / files, message the file being fetched, all through jobs.job; pause, resume and cancel
   * through these calls or jobs.*), or goes on with the repo's unfinished one. The answer and library.downloads
   * give each download's files. requireChecksums: refuse (before fetching anything) a model with a file the hub
   * lists without a checksum.
   */
  "library.download": call(z.strictObject({ repo: RepoId, source: HubSource.optional(), revision: Text(200).min(1).optional(), requireChecksums: z.boolean().optional() }), DownloadProgress),
  "library.downloads": call(Empty, z.array(DownloadProgress)),
  "library.pause": call(z.strictObject({ id: DownloadId }), DownloadProgress),
  /** requireChecksums as for library.download: it applies to this run (unset = not required). */
  "library.resume": call(z.strictObject({ id: DownloadId, requireChecksums: z.boolean().optional() }), DownloadProgress),
  /** Stops a download and deletes its partial files. */
  "library.cancel": call(z.strictObject({ id: DownloadId }), DownloadProgress),
  /** Sets (or with null removes) the hub access token for gated models. */
  "library.setToken": call(z.strictObject({ token: z.string().trim().min(1).max(1000).nullable() }), LibraryStatus),

  // ---------- datasets ----------
  // Errors: not_found (unknown dataset/sample/import/upload/job id), invalid_input (bad payload, a sample that
  // breaks the validation rules, a ratio that leaves one side empty, nothing valid to import), busy (the import is
  // not in the state the call needs, e.g. commit while scanning). Semantics: electron/datasets/README.md.

  /** Datasets, newest first. */
  "datasets.list": call(Empty, z.array(DatasetSummary)),
  /** One dataset with the bad lines of its import (first 10,000). */
  "datasets.get": call(ById, z.object({ dataset: DatasetSummary, rejected: z.array(RejectedLine) })),
  "datasets.rename": call(z.strictObject({ id: Id, name: NoNulText(200).min(1) }), DatasetSummary),
  /** Deletes the dataset, its samples and cached token counts (no undo: the UI confirms first). */
  "datasets.delete": call(ById, Ok),
  /** Removes every sample whose messages equal an earlier sample's (exact text and roles); keeps the first. */
  "datasets.dedupe": call(ById, z.object({ removed: z.number(), dataset: DatasetSummary })),
  /**
   * Splits into two NEW datasets "<name> (train)" and "<name> (validation)"; the source stays as it is.
   * A seeded shuffle (same seed + same samples = same split) puts round(n * validationRatio) samples in
   * validation; each side keeps the source's order. invalid_input if either side would be empty.
   */
  "datasets.split": call(
    z.strictObject({ id: Id, validationRatio: z.number().gt(0).lt(1), seed: z.number().int().min(0).max(0xffffffff) }),
    z.object({ train: DatasetSummary, validation: DatasetSummary }),
  ),
  /** Writes messages-format jsonl to `path` (temp file + rename). Electron and CLI; in the browser use exportChunk. */
  "datasets.export": call(z.strictObject({ id: Id, path: NoNulText(4096).min(1) }), z.object({ path: z.string(), samples: z.number(), bytes: z.number() })),
  /**
   * The export as text pieces for a browser download: start with cursor null, append `data`, repeat with
   * `nextCursor` until it is null; the concatenation is exactly the file datasets.export writes.
   */
  "datasets.exportChunk": call(
    z.strictObject({ id: Id, cursor: Text(64).nullable() }),
    z.object({ data: z.string(), nextCursor: z.string().nullable(), fileName: z.string() }),
  ),
  /** Native open/save dialog (Electron); { path: null } when cancelled or unavailable (browser: app.info transport "ws"). */
  "datasets.pickFile": call(
    z.strictObject({ purpose: z.enum(["import", "export"]), suggestedName: Text(255).optional() }),
    z.object({ path: z.string().nullable() }),
  ),

  /** Browser import, step 1: announce a file; the server creates a temp file in the data folder. */
  "datasets.upload.begin": call(
    z.strictObject({ fileName: NoNulText(255).min(1), size: z.number().int().min(0).max(64 * 1024 ** 3) }),
    z.object({ uploadId: Id }),
  ),
  /** Step 2 (repeat): bytes [offset, offset + decoded length) as base64, at most UPLOAD_CHUNK_BYTES decoded, in order. */
  "datasets.upload.chunk": call(
    z.strictObject({ uploadId: Id, offset: z.number().int().min(0), data: z.base64().max(Math.ceil(UPLOAD_CHUNK_BYTES / 3) * 4) }),
    z.object({ received: z.number() }),
  ),
  /** Drops an upload and its temp file (also done by import.cancel / import.commit for its upload). */
  "datasets.upload.abort": call(z.strictObject({ uploadId: Id }), Ok),

  /**
   * Starts scanning a file (Electron/CLI: a path; browser: a complete upload) as a "scan" job whose id is the
   * importId. Returns at once; its progress (bytes; figures records / valid / rejected) and end arrive as jobs.job
   * events. Nothing is written to the database by a scan.
   */
  "datasets.import.scan": call(
    z.strictObject({
      source: z.discriminatedUnion("kind", [
        z.strictObject({ kind: z.literal("path"), path: NoNulText(4096).min(1) }),
        z.strictObject({ kind: z.literal("upload"), uploadId: Id }),
      ]),
    }),
    z.object({ importId: Id, fileName: z.string(), totalBytes: z.number() }),
  ),
  /**
   * The import's state, a view of its scan job and the import job that commits it (after a reload and a restart
   * too): the report with its rejected lines once the scan is done. not_found once discarded.
   */
  "datasets.import.status": call(z.strictObject({ importId: Id }), ImportStatus),
  /**
   * The user chose "import the valid rows": an "import" job (subject: the importId) inserts every valid sample into
   * a new dataset in one transaction (name default: the file name without extension). Resolves when committed. busy unless state is ready;
   * invalid_input if no line is valid or the file changed since the scan. "Import nothing" = datasets.import.cancel.
   */
  "datasets.import.commit": call(z.strictObject({ importId: Id, name: NoNulText(200).min(1).optional() }), DatasetSummary),
  /** Cancels a scan or a running commit (rolled back) or discards a ready report; deletes its upload and the scan job. */
  "datasets.import.cancel": call(z.strictObject({ importId: Id }), Ok),

  /**
   * A window of samples for the virtualised table: `total` rows match, `items` are rows [offset, offset+limit).
   * search: case-insensitive substring of any message content (trigram FTS; 3+ characters use the index, shorter
   * ones scan). minTokens/maxTokens/sort by tokens need `tokenizer` and count only samples already counted
   * (datasets.tokens.count); hasProblems: duplicate, or too_long when tokenizer.maxSeqLen is given.
   */
  "samples.list": call(
    z.strictObject({
      datasetId: Id,
      offset: z.number().int().min(0),
      limit: z.number().int().min(1).max(1000),
      sort: z.strictObject({ by: z.enum(["index", "tokens", "updated"]), dir: z.enum(["asc", "desc"]) }).optional(),
      search: NoNulText(500).optional(),
      minTokens: z.number().int().min(0).optional(),
      maxTokens: z.number().int().min(0).optional(),
      hasProblems: z.boolean().optional(),
      tokenizer: TokenizerChoice.optional(),
    }),
    z.object({ total: z.number(), offset: z.number(), items: z.array(SampleRow) }),
  ),
  /** One sample with its messages; with `tokenizer` its count is computed now if not cached. */
  "samples.get": call(z.strictObject({ id: Id, tokenizer: TokenizerChoice.optional() }), Sample),
  /**
   * Replaces a sample's messages (roles, text, order, count) after the import's validation rules
   * (invalid_input names the message and the rule). Saves the previous version for samples.undo.
   */
  "samples.update": call(z.strictObject({ id: Id, messages: z.array(SampleMessage).min(1).max(10_000) }), Sample),
  /** Adds a sample at the end (validated like update). */
  "samples.add": call(z.strictObject({ datasetId: Id, messages: z.array(SampleMessage).min(1).max(10_000) }), Sample),
  /** Copies a sample to right after it. */
  "samples.duplicate": call(ById, Sample),
  "samples.delete": call(ById, Ok),
  /**
   * Undoes the dataset's last sample edit (update, add, duplicate or delete; one level, stored in the database so
   * it survives a reload). not_found if there is nothing to undo. Returns the restored sample (null after undoing
   * an add/duplicate, which deletes the sample).
   */
  "samples.undo": call(z.strictObject({ datasetId: Id }), z.object({ undone: z.enum(["edit", "add", "duplicate", "delete"]), sample: Sample.nullable() })),

  /**
   * Counts tokens for every sample of the dataset not yet counted for this tokenizer (cached per tokenizer
   * identity and sample revision) as a "tokens" job (subject: the dataset; jobId is its id; cancel: jobs.cancel;
   * progress in samples through jobs.job). A count already running for the dataset is cancelled. Returns at once;
   * `pending` 0 means everything was cached (the job still ends done).
   */
  "datasets.tokens.count": call(
    z.strictObject({ datasetId: Id, tokenizer: TokenizerChoice }),
    z.object({ jobId: Id, total: z.number(), pending: z.number() }),
  ),

  // ---------- jobs ----------
  /** Every job the app knows (running, paused, interrupted and recent finished ones), oldest first; kind filters. */
  "jobs.list": call(z.strictObject({ kind: JobKind.optional() }), z.array(Job)),
  /** Cancels a job; nothing half-written is left behind and the previous state stays intact. */
  "jobs.cancel": call(ById, Ok),
  /** Pauses a job whose canPause is true (training: checkpoint, then stop). */
  "jobs.pause": call(ById, Job),
  /** Continues a paused or interrupted job whose canResume is true. */
  "jobs.resume": call(ById, Job),
  /** Starts a failed, cancelled or interrupted job again from the beginning with the same parameters; answers the new job. */
  "jobs.retry": call(ById, Job),
  /** Forgets a job that is not running (what it produced stays). */
  "jobs.remove": call(ById, Ok),

  // ---------- finetune ----------
  /** The memory the run would need against this machine, before anything starts. */
  "finetune.estimate": call(FinetuneSpec, MemoryEstimate),
  /** Starts a run (a train job); refused with invalid_input when it will not fit, with the numbers. */
  "finetune.start": call(FinetuneSpec, FinetuneRun),
  "finetune.list": call(Empty, z.array(FinetuneRun)),
  /** One run with every step's metrics. */
  "finetune.get": call(ById, z.object({ run: FinetuneRun, points: z.array(TrainPoint), routing: z.array(RunRouting) })),
  /** Deletes a run that is not training, its files too. */
  "finetune.delete": call(ById, Ok),
  /** The run as a LLaMA-Factory job folder for a cluster (dataset jsonl + dataset_info.json, train_lora.yaml, ZeRO-3, README). */
  "finetune.clusterJob": call(
    z.strictObject({ spec: FinetuneSpec, /** model_name_or_path on the cluster; default: the model's _name_or_path or folder name */ base: Text(1000).min(1).optional() }),
    z.object({ dir: z.string(), conversations: z.number(), skipped: z.number(), firstSkip: z.string().nullable(), template: z.string(), base: z.string(), notMirrored: z.array(z.string()) }),
  ),
  /** Exports a checkpoint: a PEFT adapter folder, or merged weights (optionally quantized / GGUF) into the models folder (an export job). */
  "finetune.export": call(
    z.strictObject({
      id: Id,
      /** a checkpoint's step, or "final" */
      checkpoint: z.union([z.number().int().min(0), z.literal("final")]),
      kind: z.enum(["adapter", "merged"]),
      dtype: z.enum(["bf16", "fp16", "fp32"]).optional(),
      quantize: z.enum(["q8_0", "q4_k"]).optional(),
      gguf: z.enum(["f16", "q8_0", "q4_0", "q4_k"]).optional(),
      name: Text(200).min(1).regex(/^[^/\\]+$/, "a name, not a path").refine((n) => n !== "." && n !== "..", "a name, not a path"),
    }),
    Job,
  ),
  // ---------- quantize ----------
  /** Quantizes/exports a model folder into the app's models folder as `name` (a "quantize" or "gguf" job: progress, cancel, retry and remove through jobs.*; the comparison is its result, a QuantizeResult). */
  "quantize.start": call(
    z.strictObject({
      dir: Text(4096).min(1),
      target: QuantizeTarget,
      format: QuantizeFormat,
      name: Text(200).min(1).regex(/^[^/\\]+$/, "a name, not a path").refine((n) => n !== "." && n !== "..", "a name, not a path"),
    }),
    Job,
  ),
  /** The folder quantized models and GGUF files are written to. */
  "quantize.folder": call(Empty, z.object({ dir: z.string() })),
} as const;

export const events = {
  "chat.delta": z.object({ conversationId: Id, messageId: Id, delta: z.string(), tokens: z.number() }),
  /** The reply ended (complete, stopped or error): the final message with its statistics. */
  "chat.done": z.object({ conversationId: Id, message: Message }),
  "engine.status": EngineStatus,
  "models.progress": z.object({ dir: z.string(), done: z.number(), total: z.number() }),
  // ---------- datasets ----------
  /** A dataset was created, renamed, changed (samples), or deleted (deleted: true): refresh lists. */
  "datasets.changed": z.object({ id: Id, deleted: z.boolean() }),

  // ---------- jobs ----------
  /** A job was created or changed (state, progress, message, result). */
  "jobs.job": Job,
  /** A job was removed (jobs.remove, or a finished job aged out). */
  "jobs.removed": z.object({ id: Id }),
  // ---------- finetune ----------
  /** A run changed (status, step, checkpoints, final metrics). */
  "finetune.run": FinetuneRun,
  /** A training step or evaluation of a run arrived (the chart appends it). */
  "finetune.point": z.object({ runId: Id, point: TrainPoint }),
  /** A window of the run's expert routing arrived (the heatmap shows the newest). */
  "finetune.routing": z.object({ runId: Id, window: RunRouting }),
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

/** An error a call returns: `code` lets the UI choose a message; `message` is already human-readable.
 *  disk_full: the disk (or quota) is full, whichever layer hit it ("disk full: ... (free N MB in DIR)"). */
export type RpcErrorCode = "invalid_input" | "unknown_call" | "not_found" | "no_model" | "busy" | "engine" | "disk_full" | "internal";
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
