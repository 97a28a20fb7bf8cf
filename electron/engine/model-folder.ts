// What the TypeScript side needs from a Hugging Face model folder: the eos ids and the sampling defaults
// (config.json + generation_config.json), and where the tokenizer and chat template live. The weights and the
// architecture are the native engine's business (native/format/); this file never opens a safetensors file.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Sampling defaults: generation_config.json when it has them, else these (the seeds' values from the issue). */
export interface SamplingDefaults {
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  minP: number;
  maxTokens: number;
}

export const FALLBACK_SAMPLING: SamplingDefaults = {
  temperature: 0.7,
  topP: 0.6,
  topK: 20,
  repetitionPenalty: 1.05,
  minP: 0,
  maxTokens: 512,
};

export interface ModelFolder {
  dir: string;
  config: Record<string, unknown>;            // config.json as parsed
  generationConfig: Record<string, unknown> | null;
  modelType: string;
  eosIds: number[];                           // union of generation_config.eos_token_id and config.eos_token_id
  sampling: SamplingDefaults;
  tokenizerPath: string | null;               // tokenizer.json
  hasChatTemplate: boolean;
}

/** Read and parse a JSON file; errors name the file. Returns null when the file is absent and optional. */
export function readJsonFile(path: string, optional: true): Record<string, unknown> | null;
export function readJsonFile(path: string, optional?: false): Record<string, unknown>;
export function readJsonFile(path: string, optional = false): Record<string, unknown> | null {
  if (!existsSync(path)) {
    if (optional) return null;
    throw new Error(`${path}: file not found`);
  }
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error(`${path}: expected a JSON object`);
  return v as Record<string, unknown>;
}

/** eos_token_id may be a number, a list of numbers, or absent/null. */
export function parseEosIds(v: unknown, where: string): number[] {
  if (v === undefined || v === null) return [];
  if (typeof v === "number" && Number.isInteger(v)) return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isInteger(x))) return v as number[];
  throw new Error(`${where}: eos_token_id must be an integer or a list of integers, got ${JSON.stringify(v)}`);
}

function num(gc: Record<string, unknown> | null, key: string, fallback: number, file: string): number {
  const v = gc?.[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${file}: ${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Sampling defaults from generation_config.json. HF semantics: do_sample=false means greedy, so the
 * temperature becomes 0 (our "greedy" marker) even if a temperature is present.
 */
export function samplingDefaults(gc: Record<string, unknown> | null, file = "generation_config.json"): SamplingDefaults {
  const s: SamplingDefaults = {
    temperature: num(gc, "temperature", FALLBACK_SAMPLING.temperature, file),
    topP: num(gc, "top_p", FALLBACK_SAMPLING.topP, file),
    topK: num(gc, "top_k", FALLBACK_SAMPLING.topK, file),
    repetitionPenalty: num(gc, "repetition_penalty", FALLBACK_SAMPLING.repetitionPenalty, file),
    minP: num(gc, "min_p", FALLBACK_SAMPLING.minP, file),
    maxTokens: num(gc, "max_new_tokens", FALLBACK_SAMPLING.maxTokens, file),
  };
  if (gc && gc.do_sample === false) s.temperature = 0;
  return s;
}

export function readModelFolder(dir: string): ModelFolder {
  const configPath = join(dir, "config.json");
  if (!existsSync(dir)) throw new Error(`${dir}: model folder not found`);
  if (!existsSync(configPath)) {
    throw new Error(`${configPath}: file not found (is ${dir} a Hugging Face model folder? it needs config.json, *.safetensors and tokenizer.json)`);
  }
  const config = readJsonFile(configPath);
  const modelType = config.model_type;
  if (typeof modelType !== "string") throw new Error(`${configPath}: field "model_type" is missing or not a string`);
  const gcPath = join(dir, "generation_config.json");
  const generationConfig = readJsonFile(gcPath, true);

  // eos: generation_config.json is what transformers' generate() uses; config.json's is added so a folder
  // without generation_config still stops. Order: generation_config first, then new ids from config.
  const eosIds = [...parseEosIds(generationConfig?.eos_token_id, gcPath)];
  for (const id of parseEosIds(config.eos_token_id, configPath)) if (!eosIds.includes(id)) eosIds.push(id);

  const tokenizerPath = existsSync(join(dir, "tokenizer.json")) ? join(dir, "tokenizer.json") : null;
  let hasChatTemplate = existsSync(join(dir, "chat_template.jinja")) || existsSync(join(dir, "chat_template.json"));
  const tcPath = join(dir, "tokenizer_config.json");
  if (!hasChatTemplate && existsSync(tcPath)) {
    const tc = readJsonFile(tcPath);
    hasChatTemplate = tc.chat_template !== undefined && tc.chat_template !== null;
  }
  return {
    dir,
    config,
    generationConfig,
    modelType,
    eosIds,
    sampling: samplingDefaults(generationConfig, gcPath),
    tokenizerPath,
    hasChatTemplate,
  };
}
