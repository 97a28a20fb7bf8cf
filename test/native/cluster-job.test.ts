// The cluster hand-off through the CLI as a user runs it: a library dataset (imported with `dataset import` into a
// real database) and a train.json become a LLaMA-Factory job folder, checked against the names LLaMA-Factory and
// transformers define (test/fixtures/llamafactory/schema.json, read from their source and wheel): every key of
// train_lora.yaml is one of its arguments, the template one of its templates, dataset_info.json its schema, the jsonl
// what its sharegpt converter takes (data/README.md "OpenAI Format"; converter.py's turn rules), and the values the
// run's. Then the adapter a cluster returns (PEFT) comes back with import-adapter: checked against the base by the
// engine, listed in the models folder with its base, and it generates.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { llamaFactoryConfig, skipReason } from "../../electron/finetune/cluster-job.js";
import type { ChatMessage } from "../../electron/text/chat-template.js";
import { listLocal } from "../../electron/library/local.js";
import { resolveTrainArgs } from "../../electron/train/config.js";
import { GOLDENS, modelDir, ROOT } from "./fixtures.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const MODEL = modelDir("qwen3_moe");
const SCHEMA = JSON.parse(readFileSync(join(ROOT, "test/fixtures/llamafactory/schema.json"), "utf8")) as {
  llamafactory_args: string[]; training_args: string[]; templates: string[];
  dataset_info: { entry: string[]; columns: string[]; tags: string[]; formatting: string[] };
};
const tmp = mkdtempSync(join(tmpdir(), "moe-cluster-job-"));
const db = join(tmp, "app.db");
let datasetId = "";

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 120_000, maxBuffer: 64 << 20 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

beforeAll(() => {
  const rows = [
    { messages: [{ role: "system", content: "You are a sailor." }, { role: "user", content: "Where is the sea?" }, { role: "assistant", content: "All around us." }] },
    { messages: [{ role: "user", content: "你好" }, { role: "assistant", content: "你好！" }, { role: "user", content: "Tell me more." }, { role: "assistant", content: "Whales sing." }] },
  ];
  const file = join(tmp, "data.jsonl");
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const imp = cli(["dataset", "import", file, "--db", db, "--name", "sailors"]);
  expect(imp.code, imp.err).toBe(0);
  datasetId = JSON.parse(imp.out).dataset;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** LLaMA-Factory's sharegpt converter's rules: an optional system first, then user/assistant turns, an even count. */
function takenBySharegpt(messages: Array<{ role: string; content: string }>, tags: Record<string, string>): boolean {
  const rest = messages[0]?.[tags.role_tag as "role"] === tags.system_tag ? messages.slice(1) : messages;
  const odd = [tags.user_tag], even = [tags.assistant_tag];
  if (!rest.every((m, i) => (i % 2 === 0 ? odd : even).includes(m[tags.role_tag as "role"]) && typeof m[tags.content_tag as "content"] === "string")) return false;
  return rest.length > 0 && rest.length % 2 === 0;
}

describe("export-job", () => {
  const out = join(tmp, "job");
  let job: Record<string, unknown>;

  it("writes a LLaMA-Factory job folder whose every name LLaMA-Factory defines", () => {
    const cfg = join(tmp, "train.json");
    writeFileSync(cfg, JSON.stringify({ preset: "thorough", lora_dropout: 0.05, target_modules: ["q_proj", "v_proj", "gate_proj"], per_device_train_batch_size: 2, gradient_accumulation_steps: 4 }));
    const r = cli(["export-job", "--model", MODEL, "--dataset", datasetId, "--db", db, "--config", cfg, "--out", out, "--name", "sailors-r32", "--json"]);
    expect(r.code, r.err).toBe(0);
    job = JSON.parse(r.out);
    expect(job).toMatchObject({ dir: out, conversations: 2, skipped: 0, firstSkip: null, template: "qwen3_nothink", base: "qwen3_moe", notMirrored: [] });

    const yaml = parse(readFileSync(join(out, "train_lora.yaml"), "utf8")) as Record<string, unknown>;
    const known = new Set([...SCHEMA.llamafactory_args, ...SCHEMA.training_args]);
    expect(Object.keys(yaml).filter((k) => !known.has(k))).toEqual([]);
    expect(SCHEMA.templates).toContain(yaml.template);
    // the run, mirrored (thorough: r 32, alpha 64, lr 1e-4 cosine, 3 epochs, 1024 tokens, 10% held out every 25 steps)
    expect(yaml).toMatchObject({
      stage: "sft", do_train: true, finetuning_type: "lora", lora_rank: 32, lora_alpha: 64, lora_dropout: 0.05, lora_target: "q_proj,v_proj,gate_proj",
      learning_rate: 1e-4, lr_scheduler_type: "cosine", warmup_ratio: 0.03, num_train_epochs: 3, cutoff_len: 1024, per_device_train_batch_size: 2,
      gradient_accumulation_steps: 4, val_size: 0.1, eval_steps: 25, save_steps: 50, seed: 42, dataset: "sailors_r32", dataset_dir: "data",
      deepspeed: "ds_z3_config.json", output_dir: "saves/sailors-r32",
    });
    expect(yaml.train_on_prompt).toBeUndefined(); // loss on the replies only, as our run
    const ds = JSON.parse(readFileSync(join(out, yaml.deepspeed as string), "utf8"));
    expect(ds.zero_optimization.stage).toBe(3);
    expect(ds.zero_optimization.stage3_gather_16bit_weights_on_model_save).toBe(true);
  });

  it("registers the dataset by LLaMA-Factory's dataset_info schema, and every line is one its sharegpt converter takes", () => {
    const info = JSON.parse(readFileSync(join(out, "data", "dataset_info.json"), "utf8")) as Record<string, Record<string, unknown>>;
    const entry = info.sailors_r32;
    expect(Object.keys(entry).filter((k) => !SCHEMA.dataset_info.entry.includes(k))).toEqual([]);
    expect(SCHEMA.dataset_info.formatting).toContain(entry.formatting);
    const columns = entry.columns as Record<string, string>;
    const tags = entry.tags as Record<string, string>;
    expect(Object.keys(columns).filter((k) => !SCHEMA.dataset_info.columns.includes(k))).toEqual([]);
    expect(Object.keys(tags).filter((k) => !SCHEMA.dataset_info.tags.includes(k))).toEqual([]);
    const lines = readFileSync(join(out, "data", entry.file_name as string), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, Array<{ role: string; content: string }>>);
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(takenBySharegpt(l[columns.messages], tags)).toBe(true);
    // what our trainer sees: a conversation without a system message has the default one
    expect(lines[0].messages[0]).toEqual({ role: "system", content: "You are a sailor." });
    expect(lines[1].messages[0]).toEqual({ role: "system", content: "You are a helpful assistant." });
    expect(lines[1].messages.slice(1).map((m) => m.content)).toEqual(["你好", "你好！", "Tell me more.", "Whales sing."]);
  });

  it("the README says how to run it on one node and several, and how the adapter comes back", () => {
    const readme = readFileSync(join(out, "README.md"), "utf8");
    expect(readme).toContain("FORCE_TORCHRUN=1 llamafactory-cli train train_lora.yaml");
    expect(readme).toMatch(/NNODES=2 NODE_RANK=1 MASTER_ADDR=/);
    expect(readme).toMatch(/torchrun --nnodes 2/);
    expect(readme).toContain(`npx moe-studio import-adapter saves/sailors-r32 --model ${MODEL}`);
  });

  it("mirrors Hunyuan's recipe (cosine to a floor), Q-LoRA, loss on all tokens; names what it cannot mirror", () => {
    const a = resolveTrainArgs({ preset: "hunyuan_lora", loss_on: "all", expert_lr_scale: { routed: 0.5, shared: 1, attention: 1 }, max_steps: 100, warmup_steps: 5 });
    const { config, notMirrored } = llamaFactoryConfig(a, { base: "tencent/Hunyuan-A13B-Instruct", template: "hunyuan", dataset: "d", name: "n", baseQuant: "nf4" });
    const known = new Set([...SCHEMA.llamafactory_args, ...SCHEMA.training_args]);
    expect(Object.keys(config).filter((k) => !known.has(k))).toEqual([]);
    expect(config).toMatchObject({ lr_scheduler_type: "cosine_with_min_lr", lr_scheduler_kwargs: { min_lr: 1e-6 }, learning_rate: 1e-5, lora_rank: 64, lora_alpha: 128,
      lora_dropout: 0.1, quantization_bit: 4, quantization_method: "bnb", train_on_prompt: true, max_steps: 100, warmup_steps: 5 });
    expect(config.num_train_epochs).toBeUndefined();
    expect(SCHEMA.templates).toContain("hunyuan");
    expect(notMirrored).toEqual([expect.stringMatching(/^expert_lr_scale/)]);
  });

  it("leaves out what LLaMA-Factory's converter would skip (the importer already refuses most of it), saying why", () => {
    const tool = [{ role: "system", content: "s" }, { role: "user", content: "q" }, { role: "tool", content: "{}" }, { role: "assistant", content: "a" }] as unknown as ChatMessage[];
    expect(skipReason(tool)).toBe("message 3 is tool, where LLaMA-Factory expects assistant (turns must alternate user, assistant)");
    expect(skipReason([{ role: "user", content: "q" }] as ChatMessage[])).toBe("it does not end with an assistant reply");
    expect(skipReason([{ role: "system", content: "s" }, { role: "user", content: "q" }, { role: "assistant", content: "a" }] as ChatMessage[])).toBeNull();
  });

  it("refuses what it cannot do, before writing anything", () => {
    const again = cli(["export-job", "--model", MODEL, "--dataset", datasetId, "--db", db, "--out", out]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/exists; pick another folder or pass --force/);
    const bad = cli(["export-job", "--model", MODEL, "--dataset", datasetId, "--db", db, "--out", join(tmp, "x"), "--name", "a b"]);
    expect(bad.err).toMatch(/--name "a b": letters, digits/);
    expect(existsSync(join(tmp, "x"))).toBe(false);
    expect(cli(["export-job", "--model", MODEL, "--out", join(tmp, "y")]).err).toMatch(/give one of --dataset ID or --data FILE.jsonl/);
  });
});

describe("import-adapter", () => {
  const models = join(tmp, "models");
  const returned = join(tmp, "job", "saves", "sailors-r32"); // where the cluster's run wrote it

  it("checks the adapter against the base, copies it into the models folder with its base, and it generates", () => {
    mkdirSync(returned, { recursive: true });
    cpSync(join(GOLDENS, "train", "qwen3_moe", "adapter"), returned, { recursive: true });
    const r = cli(["import-adapter", returned, "--model", MODEL, "--dir", models, "--json"]);
    expect(r.code, r.err).toBe(0);
    const res = JSON.parse(r.out);
    expect(res.files).toEqual(expect.arrayContaining(["adapter_config.json", "adapter_model.safetensors"]));
    const listed = listLocal(models).find((e) => e.name === "sailors-r32")!;
    expect(listed).toMatchObject({ kind: "adapter", origin: { origin: "cluster", base: MODEL, job: "sailors-r32" } });
    const gen = (adapter: string) => cli(["generate", "--model", MODEL, "--adapter", adapter, "--ids", "1,2,3,4", "--max-tokens", "6", "--temperature", "0", "--json"]);
    const a = gen(res.path), b = gen(returned);
    expect(a.code, a.err).toBe(0);
    expect(JSON.parse(a.out).ids).toEqual(JSON.parse(b.out).ids);
  });

  it("an adapter made for another model is refused with the engine's reason; nothing is copied", () => {
    const r = cli(["import-adapter", join(GOLDENS, "train", "llama", "adapter"), "--model", MODEL, "--dir", models, "--name", "foreign"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/has no place for/);
    expect(existsSync(join(models, "foreign"))).toBe(false);
    expect(cli(["import-adapter", MODEL, "--model", MODEL, "--dir", models]).err).toMatch(/not a PEFT adapter folder \(adapter_config.json is missing\)/);
  });
});
