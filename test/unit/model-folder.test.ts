import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FALLBACK_SAMPLING, parseEosIds, readModelFolder } from "../../electron/engine/model-folder.js";

function folder(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), "moe-folder-"));
  for (const [k, v] of Object.entries(files)) writeFileSync(join(dir, k), typeof v === "string" ? v : JSON.stringify(v));
  return dir;
}

describe("readModelFolder", () => {
  it("uses the seed defaults when generation_config.json is absent", () => {
    const f = readModelFolder(folder({ "config.json": { model_type: "llama", eos_token_id: 2 } }));
    expect(f.sampling).toEqual({ temperature: 0.7, topP: 0.6, topK: 20, repetitionPenalty: 1.05, minP: 0, maxTokens: 512 });
    expect(f.sampling).toEqual(FALLBACK_SAMPLING);
    expect(f.eosIds).toEqual([2]);
    expect(f.hasChatTemplate).toBe(false);
  });
  it("reads sampling values and a list of eos ids from generation_config.json, merged with config's", () => {
    const f = readModelFolder(folder({
      "config.json": { model_type: "qwen2_moe", eos_token_id: 151643 },
      "generation_config.json": { eos_token_id: [151645, 151643], temperature: 0.6, top_p: 0.95, top_k: 40, repetition_penalty: 1.1, do_sample: true },
      "chat_template.jinja": "{{ messages }}",
    }));
    expect(f.eosIds).toEqual([151645, 151643]);
    expect(f.sampling).toMatchObject({ temperature: 0.6, topP: 0.95, topK: 40, repetitionPenalty: 1.1, minP: 0, maxTokens: 512 });
    expect(f.hasChatTemplate).toBe(true);
  });
  it("do_sample=false means greedy", () => {
    const f = readModelFolder(folder({ "config.json": { model_type: "llama" }, "generation_config.json": { do_sample: false, temperature: 0.9 } }));
    expect(f.sampling.temperature).toBe(0);
  });
  it("errors name the file and field", () => {
    expect(() => readModelFolder(folder({}))).toThrow(/config.json: file not found/);
    expect(() => readModelFolder(folder({ "config.json": "{oops" }))).toThrow(/config.json: invalid JSON/);
    expect(() => readModelFolder(folder({ "config.json": { hidden_size: 8 } }))).toThrow(/config.json: field "model_type"/);
    expect(() => readModelFolder(folder({ "config.json": { model_type: "llama" }, "generation_config.json": { top_p: "x" } }))).toThrow(/generation_config.json: top_p/);
    expect(() => parseEosIds("2", "config.json")).toThrow(/config.json: eos_token_id/);
  });
});
