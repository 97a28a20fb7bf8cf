// Shared helpers for tests that use the fixture models in test/fixtures (written by make_fixtures.py).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
export const MODELS = join(ROOT, "test/fixtures/models");
export const GOLDENS = join(ROOT, "test/fixtures/goldens");

export interface Golden {
  model: string;
  model_type: string;
  dialect: string;
  dtype_on_disk: string;       // "float32" | "float16" | "bfloat16"
  vocab_size: number;
  messages: Array<{ role: string; content: string }>;
  chat_prompt: string;
  prompt_ids: number[];
  logits: number[][];
  greedy_ids: number[];
  greedy_text: string;
  eos_token_ids: number[];
  min_margin: number;
  multi_turn: { messages: Array<{ role: string; content: string }>; chat_prompt: string; prompt_ids: number[] };
  tokenize: Array<{ text: string; ids: number[]; ids_with_special_tokens?: number[]; decoded: string }>;
}

/** Every fixture that has both a model folder and a golden. */
export function fixtureNames(): string[] {
  if (!existsSync(GOLDENS)) return [];
  return readdirSync(GOLDENS)
    .filter((f) => f.endsWith(".json"))
    .map((f) => f.slice(0, -5))
    .filter((n) => existsSync(join(MODELS, n, "config.json")))
    .sort();
}

export function golden(name: string): Golden {
  return JSON.parse(readFileSync(join(GOLDENS, `${name}.json`), "utf8")) as Golden;
}

export function modelDir(name: string): string {
  return join(MODELS, name);
}
