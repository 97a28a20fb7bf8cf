// The typed surface of the native addon (native/binding/). This file is the contract between the C++ engine
// and everything in Node: the binding must implement exactly this, and nothing in Node calls the addon except
// through these types. Token ids in, token ids out: text is Node's job (electron/text/).
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ModelLoadOptions } from "./load-options.js";

export type KvCacheType = "f32" | "f16" | "int8";
export type WeightDType = "f32" | "f16" | "bf16" | "q8_0" | "q4_0" | "q4_k";

/** `--device`: auto (cpu until the CUDA backend runs whole models), cpu, cuda (refused, saying why, until then), emu. */
export type DeviceKind = "auto" | "cpu" | "cuda" | "emu";
export const DEVICE_KINDS: readonly DeviceKind[] = ["auto", "cpu", "cuda", "emu"];
/** A `--device` flag's value checked (undefined stays undefined: the default, cpu). */
export function parseDevice(value: string | undefined): DeviceKind | undefined {
  if (value === undefined) return undefined;
  if (!(DEVICE_KINDS as readonly string[]).includes(value)) throw new Error(`--device must be one of ${DEVICE_KINDS.join(", ")}, got "${value}"`);
  return value as DeviceKind;
}

/** What the engine learned from config.json + the safetensors headers. */
export interface NativeModelInfo {
  modelType: string;            // config.model_type, e.g. "qwen2_moe", "hunyuan" (Hunyuan-Large)
  architecture: string;         // config.architectures[0] when present, else modelType
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  numExperts: number;           // 0 for dense models
  topK: number;                 // experts per token; 0 for dense
  numSharedExperts: number;     // shared/ungated MLPs per MoE layer (0 if none)
  contextLength: number;        // max_position_embeddings
  dtype: WeightDType;           // dtype of the bulk of the stored weights
  paramsTotal: number;          // every parameter in the checkpoint
  paramsActive: number;         // parameters touched per token (top-k experts + shared + dense parts)
  weightBytes: number;          // bytes of mapped weights
  kvBytesPerToken: number;      // KV cache bytes per token (CLA layers counted once per sharing group)
  kvCache: KvCacheType;         // "f16": IEEE half K/V; "int8": per-head-per-token absmax int8 K/V (loadModel opts.kvCache)
  ropeType: string;             // "default" | "linear" | "dynamic" | "ntk_alpha" | "llama3" | "yarn"
  tieWordEmbeddings: boolean;
  backend: "cpu" | "emu";       // the backend every op runs on (loadModel opts.device; "emu": the CUDA kernels under the SIMT emulator)
  threads: number;
  /** The LoRA adapter every forward applies unmerged (loadModel opts.adapter), or null. */
  adapter: { r: number; loraAlpha: number; useRslora: boolean; params: number } | null;
}

/** One forward + backward through the model's adapter (NativeModel.grad). */
export interface NativeGradResult {
  loss: number;                 // mean cross-entropy over the counted targets (transformers' causal-LM loss)
  nTargets: number;
  /** d loss / d tensor for every tensor of the adapter, under its name in adapter_model.safetensors (row-major). */
  grads: Record<string, Float32Array>;
}

export interface NativeSamplingParams {
  temperature: number;          // <= 0 means greedy (argmax)
  topK: number;                 // <= 0 disables
  topP: number;                 // >= 1 disables
  minP: number;                 // <= 0 disables
  repetitionPenalty: number;    // 1 disables; HF semantics: logit>0 ? logit/r : logit*r over ids seen in prompt+output
  presencePenalty?: number;     // [-2, 2], 0 disables; OpenAI semantics over the generated ids: l -= (count > 0) * p
  frequencyPenalty?: number;    // [-2, 2], 0 disables; l -= count * f
  logitBias?: Record<number, number>;  // OpenAI's logit_bias: id -> [-100, 100] added to its logit
  /**
   * Constrained generation (needs setTokenBytes): the output spells one of oneOf (when given), then one JSON object,
   * and stops (stopReason "eos") when the object closes; "length" if it runs out of tokens or nothing is allowed.
   */
  constraint?: NativeConstraint;
  seed: number;                 // uint32; same seed + same prompt => same ids
  maxTokens: number;            // new tokens to generate, >= 1
  eosIds: number[];             // stop (the eos id is not emitted to onToken, it is reported as stopReason "eos")
}

export interface NativeConstraint {
  jsonObject: true;
  oneOf?: string[];             // at most 64 non-empty literals, one of which comes before the object
}

export interface NativeGenerateResult {
  ids: number[];                // generated ids, without a final eos
  stopReason: "eos" | "length" | "cancelled";
  promptTokens: number;         // length of the ids passed in
  reusedTokens: number;         // prompt tokens already in the KV cache (not prefilled again)
  prefillMs: number;
  decodeMs: number;
}

export interface NativeSession {
  /** Prefill ids from an empty cache and return logits for every position: Float32Array of ids.length*vocab. */
  logits(ids: number[]): Promise<Float32Array>;
  /**
   * Generate on a native thread. The prompt is compared with the ids already in the KV cache and only the
   * part after the longest common prefix is prefilled. onToken is called (on the JS thread) once per new id.
   * After it resolves the cache holds prompt + generated ids (the eos id is not added).
   */
  generate(ids: number[], params: NativeSamplingParams, onToken: (id: number) => void): Promise<NativeGenerateResult>;
  /** Request cancellation; the native loop checks it before every token. Safe to call at any time. */
  cancel(): void;
  /** Drop the KV cache contents. */
  reset(): void;
  /** Ids currently held in the KV cache. */
  cachedIds(): number[];
  readonly contextLength: number;
  /** Free the KV cache now (otherwise GC frees it). */
  dispose(): void;
}

export interface NativeModel {
  info(): NativeModelInfo;
  /**
   * adapter: a PEFT adapter folder this session's forwards apply unmerged instead of the model's own; read once per
   * model and folder and shared by every session naming it. Throws (naming the file and tensor) when it does not fit
   * this model. null: the bare base, even on a model loaded with an adapter; absent: the model's own.
   */
  createSession(opts?: { contextLength?: number; adapter?: string | null }): NativeSession;
  /** Unmap the weights. Sessions of this model must not be used afterwards. */
  close(): void;
  /**
   * Loss and LoRA gradients of one sequence (needs loadModel opts.adapter). labels follow transformers: aligned with
   * ids, -100 ignored, position t predicts labels[t + 1]; default labels = ids.
   */
  grad(ids: number[], labels?: number[]): Promise<NativeGradResult>;
  /**
   * A LoRA trainer over this model (native/train/trainer.h): a fresh adapter (peft's init from config.seed) or the
   * checkpoint folder `resume` continued bit-identically. Throws when the run cannot fit in memory (the numbers).
   */
  createTrainer(config: NativeTrainConfig, opts?: { resume?: string }): NativeTrainer;
  /** The memory a fresh run of `config` would need (the same sizing), answered even when it does not fit; no trainer is made. */
  createTrainer(config: NativeTrainConfig, opts: { estimate: true }): NativeTrainEstimate;
  /**
   * Expert routing telemetry: the (token, expert) pairs each expert of each MoE layer received since load or the last
   * reset — chat prefill and decode and training's forwards, each token once (not backward's recompute nor
   * validation). reset: the counters restart from 0 after this snapshot.
   */
  routing(opts?: { reset?: boolean }): NativeRouting;
  /** The bytes of every token id (text/token-bytes.ts), for params.constraint: offsets has vocabSize + 1 entries. */
  setTokenBytes(data: Uint8Array, offsets: Uint32Array): void;
}

/** model.routing(): MoE layers only (a dense model has none); Σ counts of a layer = tokens · its topK (Hunyuan's varies by layer). */
export interface NativeRouting {
  /** The largest layer's. */
  topK: number;
  layers: { layer: number; topK: number; counts: number[] }[];
}

/** train.json's knobs by their names, as the engine takes them (the CLI resolves epochs into max_steps). */
export interface NativeTrainConfig {
  learning_rate?: number;
  min_lr?: number;
  warmup_ratio?: number;
  warmup_steps?: number;
  lr_scheduler_type?: "constant" | "constant_with_warmup" | "linear" | "cosine" | "cosine_with_min_lr";
  max_steps: number;
  lora_rank?: number;
  lora_alpha?: number;
  lora_dropout?: number;
  use_rslora?: boolean;
  target_modules?: string[];
  target_parameters?: string[];
  weight_decay?: number;
  max_grad_norm?: number;
  max_seq_length?: number;
  seed?: number;
  expert_lr_scale?: { routed?: number; shared?: number; attention?: number };
  base_model_name_or_path?: string;
}

/** One training sequence: labels aligned with ids (-100: no loss); position t learns labels[t + 1]. */
export interface NativeTrainSeq { ids: number[]; labels: number[] }

export interface NativeStepResult {
  step: number; loss: number; nTargets: number; lr: number; gradNorm: number; tokens: number; ms: number;
}

export interface NativeTrainMemory {
  baseBytes: number; adapterBytes: number; activationBytes: number; totalBytes: number;
  /** MemAvailable plus what the trainer already holds; -1 unknown */
  availableBytes: number;
  params: number; fits: boolean; summary: string; step: number;
}

/** createTrainer(config, { estimate: true }): activationsLowerBound when even the attention probabilities (and the
 *  base and adapters) exceed the budget, so the rest of the training state was not sized. */
export interface NativeTrainEstimate extends Omit<NativeTrainMemory, "step"> { activationsLowerBound: boolean }

export interface NativeTrainer {
  /** One optimizer step over the whole (accumulated) batch: loss = mean over every counted target. */
  step(batch: NativeTrainSeq[]): Promise<NativeStepResult>;
  evaluate(batch: NativeTrainSeq[]): Promise<{ loss: number; nTargets: number }>;
  /** A PEFT adapter folder + optimizer.safetensors + trainer_state.json + trainer_extra.json (extraJson verbatim). */
  saveCheckpoint(dir: string, extraJson?: string): Promise<void>;
  memory(): NativeTrainMemory;
  dispose(): void;
}

export interface NativeSystemInfo {
  threads: number;              // default thread-pool size (hardware concurrency)
  simd: string;                 // e.g. "avx2+fma+f16c" or "portable"
  /** memoryBytes: device 0's global memory, 0 without a device. */
  cuda: { compiled: boolean; devices: number; memoryBytes: number; error?: string };
  peakRssBytes: number;         // getrusage max RSS of this process
}

export interface NativeAddon {
  /**
   * Map and validate a Hugging Face model folder (config.json, *.safetensors [+ index json]).
   * Rejects with an Error whose message names the file and field at fault.
   */
  /** baseQuant "nf4": every attention/MLP projection quantized to NF4 at load as bitsandbytes does (Q-LoRA's base). */
  loadModel(dir: string, opts: ModelLoadOptions, onProgress?: (done: number, total: number) => void): Promise<NativeModel>;
  systemInfo(): NativeSystemInfo;
  /**
   * GGUF block quantization (native/quant/quant.h): Q8_0 and Q4_0 blocks of 32 weights (34 / 18 bytes), Q4_K
   * super-blocks of 256 (144 bytes), byte-identical to GGUF's. Scales by an error-minimising search.
   * Synchronous, pure, deterministic. Throws a RangeError if data.length is not a multiple of the block.
   */
  quantizeTensor(data: Float32Array, type: QuantType): Uint8Array;
  /** Reference dequantisation of `count` values; bytes.length must be exactly their block bytes. */
  dequantizeTensor(bytes: Uint8Array, type: QuantType, count: number): Float32Array;
  /**
   * Quantize the safetensors of model folder `src` into the existing folder `outDir` on a native thread
   * (native/quant/writer.h; electron/engine/quantize.ts does the rest of the folder). The promise rejects with
   * "cancelled" after cancel(), or with an error naming the file; the caller removes outDir then.
   */
  quantizeModel(src: string, outDir: string, opts: { format: QuantType; embeddings?: "keep" | QuantType; threads?: number },
    onProgress?: (doneBytes: number, totalBytes: number, tensor: string) => void): { promise: Promise<NativeQuantizeReport>; cancel(): void };
  /**
   * Fold the peft LoRA adapter at `adapterDir` into the weights of model folder `src` and write them, in the hub's
   * per-expert layout and `dtype`, as safetensors shards into the existing folder `outDir` on a native thread
   * (native/io/merge.h; electron/engine/export-merged.ts does the rest of the folder). Rejects with "cancelled"
   * after cancel(), or with an error naming the file; the caller removes outDir then.
   */
  mergeAdapter(src: string, adapterDir: string, outDir: string, opts: { dtype: MergeDType; maxShardBytes?: number; threads?: number },
    onProgress?: (doneTensors: number, totalTensors: number, tensor: string) => void): { promise: Promise<NativeMergeReport>; cancel(): void };
  /**
   * The one storage rule (native/quant/plan.h) the model-folder quantizer uses: the type a tensor of `role` with
   * rows of `rowLength` is stored as for `format`, in a model folder ("folder": floats keep `stored`) or a GGUF file
   * ("gguf": F32 for norms/biases/routers, F16 for matrices that fit no block). Throws a TypeError naming the field.
   */
  storageType(query: StorageQuery): StorageTypeName;
  /**
   * The engine's validated, memory-mapped safetensors reader (native/format/safetensors.h) over a model folder
   * (model.safetensors, the index's shards, or every *.safetensors). Throws the reader's error naming the file and tensor.
   */
  openSafetensors(dir: string): NativeSafetensors;
  /**
   * The engine's one table of Hugging Face tensor names (native/format/names.h) for a config.json's text: every tensor
   * the model has, by role, in the order embedding, layers, final norm, lm_head. `source` names the file in errors
   * (the config is checked as loadModel checks it). With `present` (the folder's tensor names) each MoE layer's
   * experts are listed in the form the folder stores them, and `unknown` holds the present names the table has no
   * place for. Synchronous; reads no file.
   */
  hubTensors(configJson: string, source: string, present?: string[]): NativeHubTensors;
}

/** A tensor role of the names table: native/format/names.cpp role_name(). */
export type HubTensorRole =
  | "embedding" | "final_norm" | "lm_head" | "input_norm" | "post_attention_norm"
  | "q_proj" | "k_proj" | "v_proj" | "o_proj" | "q_norm" | "k_norm"
  | "gate_proj" | "up_proj" | "down_proj"                              // dense MLP
  | "router"
  | "expert.gate_proj" | "expert.up_proj" | "expert.down_proj"         // one routed expert (per-expert form)
  | "experts.gate_up_proj" | "experts.gate_proj" | "experts.up_proj" | "experts.down_proj"  // all experts of a layer (fused / stacked)
  | "shared.gate_proj" | "shared.up_proj" | "shared.down_proj" | "shared_expert_gate";

export interface NativeHubTensor {
  name: string;                 // "model.layers.0.self_attn.q_proj.weight"
  role: HubTensorRole;
  layer: number;                // -1 outside the layers
  expert: number;               // per-expert tensors' expert, else -1
  bias: boolean;                // the ".bias" of the role's Linear
  optional: boolean;            // biases, and lm_head of a tied model
  form: "per_expert" | "fused" | "stacked";
}

export interface NativeHubTensors {
  tensors: NativeHubTensor[];
  unknown: string[];
}

/** Roles of native/quant/plan.h. */
export type StorageRole = "weight" | "embedding" | "output" | "router" | "norm" | "bias";

export interface StorageQuery {
  container: "folder" | "gguf";
  format: QuantType | "f16";          // "f16": a GGUF whose matrices are all F16
  role: StorageRole;
  rank: number;                       // number of dimensions (< 2: never quantized)
  rowLength: number;                  // K, the fastest dimension (shape[rank-1]; GGUF ne[0])
  stored?: "f32" | "f16" | "bf16";    // the source dtype (default f32; a GGUF's floats do not depend on it)
  embeddings?: "keep" | QuantType;    // embeddings and lm_head (default q8_0; "keep" for folders only)
}

export type StorageTypeName = QuantType | "f32" | "f16" | "bf16";

/** One tensor of an open folder: dtype as the engine presents it (moe-studio blocks with their logical shape). */
export interface NativeTensorInfo {
  name: string;
  dtype: "f32" | "f16" | "bf16" | "i32" | "i64" | "u8" | "i8" | "bool" | QuantType;
  shape: number[];
  file: string;       // the shard's path
  offset: number;     // absolute byte offset of the tensor's data in `file`
  nbytes: number;
}

export interface NativeSafetensors {
  /** Every tensor, shards in the store's order, each in header order. */
  tensors(): NativeTensorInfo[];
  /** Elements [start, start+count) of a bf16/f16/f32 tensor (flattened row-major), widened to f32 exactly. */
  readF32(name: string, start?: number, count?: number): Float32Array;
  /** Stored bytes [start, start+count) of any tensor (blocks as they are). */
  readBytes(name: string, start?: number, count?: number): Uint8Array;
  /** Unmap the files; later calls throw. */
  close(): void;
}

/** Output dtypes of a merged export. */
export type MergeDType = "f32" | "f16" | "bf16";

/** What mergeAdapter wrote: every tensor (hub name, its source tensor, shape, whether an adapter pair was added). */
export interface NativeMergeReport {
  tensors: Array<{ name: string; source: string; shape: number[]; merged: boolean }>;
  files: string[];
  mergedPairs: number;
  bytesIn: number;
  bytesOut: number;
  params: number;
}

/** GGUF block formats the engine writes and runs. */
export type QuantType = "q8_0" | "q4_0" | "q4_k";

/** What quantizeModel wrote: every tensor and its type, weights that fell back (row length), float-by-rule names. */
export interface NativeQuantizeReport {
  tensors: Array<{ name: string; type: string }>;
  fallbacks: Array<{ name: string; type: string }>;
  notQuantized: string[];
  files: string[];
  bytesIn: number;
  bytesOut: number;
  params: number;
}

const here = dirname(fileURLToPath(import.meta.url));

/** Locate native/build/Release/moe_engine.node from either the source tree or out/ (compiled JS). */
export function addonPath(): string {
  const candidates = [
    process.env.MOE_STUDIO_ADDON,
    join(here, "../../native/build/Release/moe_engine.node"),
    join(here, "../../../native/build/Release/moe_engine.node"),
  ].filter((p): p is string => !!p);
  for (const p of candidates) if (existsSync(p)) return p;
  throw new Error(`native engine not built: none of ${candidates.join(", ")} exists; run "npm run build:native"`);
}

let cached: NativeAddon | undefined;
export function loadAddon(): NativeAddon {
  if (!cached) cached = createRequire(import.meta.url)(addonPath()) as NativeAddon;
  return cached;
}
