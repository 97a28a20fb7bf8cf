// train.json: the knobs of one run by transformers / peft / trl names, checked strictly (unknown keys are an error
// naming them), with defaults and the "hunyuan_lora" preset (Tencent's Hunyuan LoRA recipe).
import { readFileSync } from "node:fs";
import type { NativeTrainConfig } from "../engine/addon.js";

export interface TrainArgs {
  learning_rate: number;
  min_lr: number;
  warmup_ratio?: number;
  warmup_steps?: number;
  lr_scheduler_type: NonNullable<NativeTrainConfig["lr_scheduler_type"]>;
  num_train_epochs?: number;
  max_steps?: number;
  per_device_train_batch_size: number;
  gradient_accumulation_steps: number;
  max_seq_length: number;
  lora_rank: number;
  lora_alpha: number;
  lora_dropout: number;
  use_rslora: boolean;
  target_modules: string[];
  weight_decay: number;
  max_grad_norm: number;
  save_steps: number;
  eval_steps: number;
  seed: number;
  gradient_checkpointing: boolean;
  validation_split?: number;
  validation_file?: string;
  loss_on: "assistant" | "all";
  expert_lr_scale: { routed: number; shared: number; attention: number };
}

export const DEFAULTS: TrainArgs = {
  learning_rate: 2e-4, min_lr: 0, lr_scheduler_type: "linear", num_train_epochs: 1,
  per_device_train_batch_size: 1, gradient_accumulation_steps: 1, max_seq_length: 1024,
  lora_rank: 8, lora_alpha: 16, lora_dropout: 0, use_rslora: false,
  target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
  weight_decay: 0, max_grad_norm: 1.0, save_steps: 500, eval_steps: 0, seed: 42, gradient_checkpointing: true,
  loss_on: "assistant", expert_lr_scale: { routed: 1, shared: 1, attention: 1 },
};

/**
 * quick / balanced / thorough: the app's first-run choices for a small dataset (tens to a few thousand conversations)
 * on a CPU, each a step up in capacity and time:
 * - alpha = 2·rank throughout, so the adapter's scale (alpha / rank) stays 2 and a larger rank adds capacity without
 *   changing the effective step size; lr 2e-4 is the usual LoRA / QLoRA rate at r 8-16.
 * - quick: r 8, 1 epoch, max_seq_length 512 — minutes on a CPU, enough to see the loss fall and the adapter take; 512
 *   because activations grow with the length and attention with its square.
 * - balanced: r 16, 2 epochs, 1024 tokens — a small dataset is not learnt in one pass; two rarely overfit.
 * - thorough: r 32, 3 epochs, lr 1e-4 with a cosine decay (more capacity and passes overfit sooner at 2e-4), and 10%
 *   held out (validation_split 0.1, evaluated every 25 steps) so the eval loss shows when more training stops helping.
 * All three save a checkpoint every 50 steps (a LoRA checkpoint is small; a crash or a kill then loses minutes, not
 * the run) and warm up over 3% of the steps. hunyuan_lora is Tencent's Hunyuan LoRA recipe: rank 64, alpha 128,
 * dropout 0.1, cosine to a floor of 1e-6 from 1e-5, 1% warmup.
 */
export const PRESETS: Record<string, Partial<TrainArgs>> = {
  quick: { lora_rank: 8, lora_alpha: 16, num_train_epochs: 1, learning_rate: 2e-4, lr_scheduler_type: "linear", warmup_ratio: 0.03, max_seq_length: 512, save_steps: 50 },
  balanced: { lora_rank: 16, lora_alpha: 32, num_train_epochs: 2, learning_rate: 2e-4, lr_scheduler_type: "linear", warmup_ratio: 0.03, max_seq_length: 1024, save_steps: 50 },
  thorough: {
    lora_rank: 32, lora_alpha: 64, num_train_epochs: 3, learning_rate: 1e-4, lr_scheduler_type: "cosine", warmup_ratio: 0.03, max_seq_length: 1024,
    validation_split: 0.1, eval_steps: 25, save_steps: 50,
  },
  hunyuan_lora: { lora_rank: 64, lora_alpha: 128, lora_dropout: 0.1, lr_scheduler_type: "cosine_with_min_lr", learning_rate: 1e-5, min_lr: 1e-6, warmup_ratio: 0.01 },
};

const SCHEDULES = ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_min_lr"];
const KEYS = new Set<string>([...Object.keys(DEFAULTS), "warmup_ratio", "warmup_steps", "max_steps", "num_train_epochs", "validation_split", "validation_file", "preset"]);

function fail(msg: string): never { throw new Error(`train config: ${msg}`); }

function num(o: Record<string, unknown>, k: string, lo: number, hi: number, int = false): void {
  if (!(k in o)) return;
  const v = o[k];
  if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi || (int && !Number.isInteger(v)))
    fail(`${k} must be ${int ? "an integer" : "a number"} in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
}

/** train.json's object (already parsed) → the run's arguments: preset first, then the file's keys over it. */
export function resolveTrainArgs(raw: unknown): TrainArgs {
  if (raw === undefined) raw = {};
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("must be a JSON object");
  const o = raw as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !KEYS.has(k));
  if (unknown.length) fail(`unknown key${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => JSON.stringify(k)).join(", ")}`);
  let base: TrainArgs = { ...DEFAULTS, expert_lr_scale: { ...DEFAULTS.expert_lr_scale } };
  if ("preset" in o) {
    const p = PRESETS[String(o.preset)];
    if (!p) fail(`unknown preset ${JSON.stringify(o.preset)} (known: ${Object.keys(PRESETS).join(", ")})`);
    base = { ...base, ...p };
  }
  num(o, "learning_rate", 1e-12, 10); num(o, "min_lr", 0, 10); num(o, "warmup_ratio", 0, 1); num(o, "warmup_steps", 0, 1e12, true);
  num(o, "num_train_epochs", 1e-9, 1e6); num(o, "max_steps", 1, 1e12, true); num(o, "per_device_train_batch_size", 1, 1e6, true);
  num(o, "gradient_accumulation_steps", 1, 1e6, true); num(o, "max_seq_length", 2, 1 << 24, true); num(o, "lora_rank", 1, 4096, true);
  num(o, "lora_alpha", 1e-6, 1e6); num(o, "lora_dropout", 0, 0.999); num(o, "weight_decay", 0, 10); num(o, "max_grad_norm", 0, 1e12);
  num(o, "save_steps", 0, 1e12, true); num(o, "eval_steps", 0, 1e12, true); num(o, "seed", 0, Number.MAX_SAFE_INTEGER, true);
  num(o, "validation_split", 0, 0.99);
  if ("lr_scheduler_type" in o && !SCHEDULES.includes(o.lr_scheduler_type as string))
    fail(`lr_scheduler_type must be one of ${SCHEDULES.join(", ")}, got ${JSON.stringify(o.lr_scheduler_type)}`);
  if ("loss_on" in o && o.loss_on !== "assistant" && o.loss_on !== "all") fail(`loss_on must be "assistant" or "all", got ${JSON.stringify(o.loss_on)}`);
  for (const k of ["use_rslora", "gradient_checkpointing"]) if (k in o && typeof o[k] !== "boolean") fail(`${k} must be true or false`);
  if ("target_modules" in o && (!Array.isArray(o.target_modules) || o.target_modules.length === 0 || !o.target_modules.every((t) => typeof t === "string")))
    fail("target_modules must be a non-empty array of module names");
  if ("validation_file" in o && typeof o.validation_file !== "string") fail("validation_file must be a path");
  if ("warmup_ratio" in o && "warmup_steps" in o) fail("give warmup_ratio or warmup_steps, not both");
  if ("max_steps" in o && "num_train_epochs" in o) fail("give num_train_epochs or max_steps, not both");
  if ("validation_split" in o && "validation_file" in o) fail("give validation_split or validation_file, not both");
  if ("gradient_checkpointing" in o && o.gradient_checkpointing === false)
    fail("gradient_checkpointing: the engine always checkpoints layer inputs (false is not available)");
  let scale = base.expert_lr_scale;
  if ("expert_lr_scale" in o) {
    const s = o.expert_lr_scale as Record<string, unknown>;
    if (typeof s !== "object" || s === null || Array.isArray(s)) fail("expert_lr_scale must be an object {routed, shared, attention}");
    const bad = Object.keys(s).filter((k) => !["routed", "shared", "attention"].includes(k));
    if (bad.length) fail(`expert_lr_scale: unknown key ${bad.map((k) => JSON.stringify(k)).join(", ")}`);
    for (const k of ["routed", "shared", "attention"]) num(s, k, 0, 1e6);
    scale = { ...scale, ...(s as Partial<TrainArgs["expert_lr_scale"]>) };
  }
  const { preset: _p, expert_lr_scale: _e, ...rest } = o;
  const out = { ...base, ...(rest as Partial<TrainArgs>), expert_lr_scale: scale };
  if ("max_steps" in o) delete out.num_train_epochs;
  if ("warmup_steps" in o) delete out.warmup_ratio;
  return out;
}

/** A train.json file → the run's arguments (a file that cannot be read or is not JSON is an error naming it). */
export function readTrainConfig(path: string): TrainArgs {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message.split("\n")[0]}`);
  }
  return resolveTrainArgs(raw);
}

/**
 * The app's FinetuneSpec (a preset and the Advanced panel's overrides) → the run's arguments, checked as train.json is
 * (the same messages). The run folder's train.json holds the result in full, so a run keeps its values if a preset's
 * change later.
 */
export function resolveSpecArgs(preset: string, knobs: Record<string, unknown>): TrainArgs {
  return resolveTrainArgs({ preset, ...knobs });
}

/** The engine's config for a run of `totalSteps` optimizer steps. */
export function nativeConfig(a: TrainArgs, totalSteps: number, baseModel: string): NativeTrainConfig {
  return {
    learning_rate: a.learning_rate, min_lr: a.min_lr, lr_scheduler_type: a.lr_scheduler_type, max_steps: totalSteps,
    ...(a.warmup_steps !== undefined ? { warmup_steps: a.warmup_steps } : {}),
    ...(a.warmup_ratio !== undefined ? { warmup_ratio: a.warmup_ratio } : {}),
    lora_rank: a.lora_rank, lora_alpha: a.lora_alpha, lora_dropout: a.lora_dropout, use_rslora: a.use_rslora,
    target_modules: a.target_modules, weight_decay: a.weight_decay, max_grad_norm: a.max_grad_norm,
    max_seq_length: a.max_seq_length, seed: a.seed, expert_lr_scale: a.expert_lr_scale, base_model_name_or_path: baseModel,
  };
}
