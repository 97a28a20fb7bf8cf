// `moe-studio train` as a user runs it, on the tiny qwen3_moe fixture (fused experts, a chat template): a jsonl of 20
// conversations that all end in one fixed reply. The loss must fall (by 4x: from ~ln V to well under 1 in 30 steps at
// lr 1e-2, measured 6.5 → 0.41), the written final/ folder must load with `generate --adapter` and reproduce the reply
// greedily on a prompt it was trained on and on one it never saw, while the base model does not. --resume from a
// checkpoint ends with the same adapter bytes as the uninterrupted run (lora_dropout on, so the RNG state must carry).
// SIGINT writes a checkpoint and exits 130. Each bad input fails with one clear line and leaves earlier checkpoints.
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { modelDir, ROOT } from "./fixtures.js";
import { readHeader, writeHeader } from "./safetensors-surgery.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const MODEL = modelDir("qwen3_moe");
const REPLY = "Blue whales sing at dawn.";
const QUESTIONS = ["What color is the sky?", "Tell me a fact.", "Who are you?", "Say something.", "What is 2+2?", "Name a fruit.", "Hello!",
  "How are you?", "What time is it?", "Where is Paris?", "Give me a word.", "What is AI?", "Pick a number.", "Describe a cat.",
  "Why is water wet?", "What is love?", "Sing a song.", "Tell a joke.", "What is a tree?", "Any advice?"];

const tmp = mkdtempSync(join(tmpdir(), "moe-train-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(tmp, "data.jsonl");
writeFileSync(data, QUESTIONS.map((q) => JSON.stringify({ messages: [{ role: "user", content: q }, { role: "assistant", content: REPLY }] })).join("\n") + "\n");

function cfg(name: string, o: object): string {
  const p = join(tmp, name);
  writeFileSync(p, JSON.stringify(o));
  return p;
}
const BASE = { learning_rate: 0.01, lr_scheduler_type: "constant", per_device_train_batch_size: 4, lora_rank: 8, lora_alpha: 16, max_seq_length: 64, seed: 1 };

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 120_000, maxBuffer: 64 << 20, env: { ...process.env, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
/** The {"routing": ...} lines: each a window of steps (from_step, step] with every MoE layer's expert counts. */
const routing = (out: string) =>
  out.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).filter((o) => "routing" in o)
    .map((o) => o.routing as { step: number; from_step: number; top_k: number; layers: { layer: number; topK: number; counts: number[] }[] });
/** Windows tile the steps (from → to) with no gap, and in each one every MoE layer saw the same tokens (Σ counts / topK). */
function expectRoutingWindows(out: string, from: number, to: number) {
  const w = routing(out);
  expect(w.length).toBeGreaterThan(0);
  expect(w.map((x) => x.from_step)).toEqual([from, ...w.slice(0, -1).map((x) => x.step)]);
  expect(w.at(-1)!.step).toBe(to);
  for (const x of w) {
    const tokens = x.layers.map((l) => l.counts.reduce((a, b) => a + b, 0) / l.topK);
    expect(tokens[0]).toBeGreaterThan(0);
    for (const t of tokens) expect(t).toBe(tokens[0]);
  }
  return w;
}
const steps = (out: string) => out.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).filter((o) => "loss" in o);
const greedy = (extra: string[], prompt: string) => {
  const r = cli(["generate", "--model", MODEL, "--prompt", prompt, "--max-tokens", "16", "--temperature", "0", "--json", ...extra]);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out).text as string;
};

describe("moe-studio train", () => {
  it("loss falls and final/ reproduces the trained reply with generate --adapter", () => {
    const run = join(tmp, "run");
    const r = cli(["train", "--model", MODEL, "--data", data, "--out", run, "--config", cfg("a.json", { ...BASE, max_steps: 30, save_steps: 10 })]);
    expect(r.code, r.err).toBe(0);
    const s = steps(r.out);
    expect(s.length).toBe(30);
    expect(s[0].step).toBe(1);
    for (const k of ["loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s", "eta_s"]) expect(Number.isFinite(s[29][k])).toBe(true);
    expect(s[29].loss).toBeLessThan(s[0].loss / 4);
    expect(expectRoutingWindows(r.out, 0, 30).length).toBe(30);  // ≤ 40 steps: a window per step
    for (const d of ["checkpoint-10", "checkpoint-20", "checkpoint-30", "final"])
      for (const f of ["adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"]) expect(existsSync(join(run, d, f))).toBe(true);
    const adapter = ["--adapter", join(run, "final")];
    expect(greedy(adapter, "Name a fruit.")).toBe(REPLY);
    expect(greedy(adapter, "Something I never asked before")).toBe(REPLY);
    expect(greedy([], "Name a fruit.")).not.toContain("Blue whales");
  }, 120_000);

  // The same run on the kernel backend under the SIMT emulator (the CUDA kernels: forward, backward, cross-entropy,
  // LoRA dropout's mask and AdamW): each step's loss within 1e-4 of the cpu run's and grad_norm within 1e-4 relative
  // (float sums in another order, ~1e-6 per step, carried through 3 AdamW steps), Q-LoRA too.
  it.each([["none"], ["nf4"]])("--device emu, base-quant %s: the same losses as --device cpu", (bq) => {
    const conf = cfg(`emu-${bq}.json`, { ...BASE, max_steps: 3, lora_dropout: 0.1 });
    const run = (device: string) => {
      const r = cli(["train", "--model", MODEL, "--data", data, "--out", join(tmp, `dev-${bq}-${device}`), "--config", conf, "--base-quant", bq,
                     "--device", device]);
      expect(r.code, r.err).toBe(0);
      return steps(r.out);
    };
    const cpu = run("cpu"), emu = run("emu");
    expect(emu.length).toBe(3);
    for (let i = 0; i < 3; i++) {
      expect(Math.abs(emu[i].loss - cpu[i].loss)).toBeLessThanOrEqual(1e-4);
      expect(Math.abs(emu[i].grad_norm - cpu[i].grad_norm)).toBeLessThanOrEqual(1e-4 * cpu[i].grad_norm);
    }
    expect(emu[2].loss).toBeLessThan(emu[0].loss);
  }, 120_000);

  it("--base-quant nf4 (Q-LoRA): trains on the NF4 base and the adapter reproduces the reply on it", () => {
    const run = join(tmp, "qlora");
    const r = cli(["train", "--model", MODEL, "--base-quant", "nf4", "--data", data, "--out", run, "--config", cfg("q.json", { ...BASE, max_steps: 30, save_steps: 0 })]);
    expect(r.code, r.err).toBe(0);
    const s = steps(r.out);
    expect(s[29].loss).toBeLessThan(s[0].loss / 4);
    expect(greedy(["--base-quant", "nf4", "--adapter", join(run, "final")], "Name a fruit.")).toBe(REPLY);
  }, 120_000);

  it("--dataset ID --db PATH trains on a library dataset exactly as on its jsonl", () => {
    const db = join(tmp, "lib.db");
    const imp = cli(["dataset", "import", data, "--db", db]);
    expect(imp.code, imp.err).toBe(0);
    const id = JSON.parse(imp.out).dataset as string;
    const run = join(tmp, "from-db");
    const r = cli(["train", "--model", MODEL, "--dataset", id, "--db", db, "--out", run, "--config", cfg("a.json", { ...BASE, max_steps: 30, save_steps: 10 })]);
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(join(run, "final/adapter_model.safetensors")).equals(readFileSync(join(tmp, "run/final/adapter_model.safetensors")))).toBe(true);
    expect(cli(["train", "--model", MODEL, "--dataset", "no-such-id", "--db", db, "--out", run]).err).toMatch(/no such dataset/);
  }, 120_000);

  it("validation_split + eval_steps print eval_loss lines, and it falls", () => {
    const r = cli(["train", "--model", MODEL, "--data", data, "--out", join(tmp, "val"), "--config",
      cfg("v.json", { ...BASE, max_steps: 20, save_steps: 0, eval_steps: 10, validation_split: 0.2 })]);
    expect(r.code, r.err).toBe(0);
    const ev = r.out.trim().split("\n").map((l) => JSON.parse(l)).filter((o) => "eval_loss" in o);
    expect(ev.map((e) => e.step)).toEqual([10, 20]);
    expect(r.err).toMatch(/16 training sample\(s\), 4 for validation/);
    expect(ev[1].eval_loss).toBeLessThan(ev[0].eval_loss);
  }, 120_000);

  it("--resume from a checkpoint ends bit-identical to the uninterrupted run", () => {
    const c = cfg("r.json", { ...BASE, max_steps: 12, save_steps: 6, lora_dropout: 0.1, warmup_steps: 2, lr_scheduler_type: "cosine", weight_decay: 0.01 });
    const full = join(tmp, "full");
    expect(cli(["train", "--model", MODEL, "--data", data, "--out", full, "--config", c]).code).toBe(0);
    // a run that stopped after step 6: its folder as it was then
    const half = join(tmp, "half");
    mkdirSync(half);
    cpSync(join(full, "checkpoint-6"), join(half, "checkpoint-6"), { recursive: true });
    cpSync(join(full, "train_args.json"), join(half, "train_args.json"));
    const r = cli(["train", "--model", MODEL, "--data", data, "--resume", half]);
    expect(r.code, r.err).toBe(0);
    expect(steps(r.out).map((x) => x.step)).toEqual([7, 8, 9, 10, 11, 12]);
    expectRoutingWindows(r.out, 6, 12);  // the resumed part only
    for (const f of ["adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"])
      expect(readFileSync(join(half, "final", f)).equals(readFileSync(join(full, "final", f)))).toBe(true);
    // other data cannot continue this run
    const other = join(tmp, "other.jsonl");
    writeFileSync(other, readFileSync(data, "utf8").split("\n").slice(0, 10).join("\n") + "\n");
    const o = cli(["train", "--model", MODEL, "--data", other, "--resume", join(full)]);
    expect(o.code).toBe(1);
    expect(o.err).toMatch(/trained on other data/);
  }, 120_000);

  it.each([["SIGINT", 130], ["SIGTERM", 143]] as const)("%s writes a checkpoint and exits %i", async (sig, exitCode) => {
    const run = join(tmp, `sig-${sig}`);
    const p = spawn(process.execPath, [BIN, "train", "--model", MODEL, "--data", data, "--out", run, "--config", cfg("s.json", { ...BASE, max_steps: 100000, save_steps: 0 })]);
    let out = "";
    let sent = false;
    p.stdout.on("data", (d) => {
      out += d;
      if (!sent && out.includes("\n")) { sent = true; p.kill(sig); }
    });
    const code = await new Promise<number | null>((res) => p.on("exit", (c) => res(c)));
    expect(code).toBe(exitCode);
    const ck = readdirSync(run).filter((d) => /^checkpoint-\d+$/.test(d));
    expect(ck.length).toBe(1);
    expect(existsSync(join(run, ck[0], "adapter_model.safetensors"))).toBe(true);
    expect(JSON.parse(readFileSync(join(run, ck[0], "trainer_state.json"), "utf8")).step).toBe(Number(ck[0].split("-")[1]));
  }, 120_000);

  describe("bad input: one line, nothing lost", () => {
    const bad = (args: string[], msg: RegExp) => {
      const r = cli(["train", "--model", MODEL, ...args]);
      expect(r.code).toBe(1);
      expect(r.err.trim().split("\n").at(-1)).toMatch(msg);
      return r;
    };
    it("empty dataset", () => {
      const empty = join(tmp, "empty.jsonl");
      writeFileSync(empty, "\n\n");
      bad(["--data", empty, "--out", join(tmp, "e")], /dataset is empty/);
    });
    it("every sample too long", () => {
      bad(["--data", data, "--out", join(tmp, "long"), "--config", cfg("l.json", { ...BASE, max_steps: 2, max_seq_length: 8 })], /every sample is too long.*max_seq_length 8/);
    });
    it("unknown key in train.json", () => {
      bad(["--data", data, "--out", join(tmp, "u"), "--config", cfg("u.json", { ...BASE, lerning_rate: 1 })], /unknown key "lerning_rate"/);
    });
    it("no chat template", () => {
      const m = join(tmp, "no-template");
      cpSync(MODEL, m, { recursive: true });
      rmSync(join(m, "chat_template.jinja"), { force: true });
      const tc = JSON.parse(readFileSync(join(m, "tokenizer_config.json"), "utf8"));
      delete tc.chat_template;
      writeFileSync(join(m, "tokenizer_config.json"), JSON.stringify(tc));
      const r = cli(["train", "--model", m, "--data", data, "--out", join(tmp, "nt"), "--config", cfg("n.json", { ...BASE, max_steps: 2 })]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/no chat template/);
    });
    it("a run that cannot fit in memory is refused with the numbers", () => {
      // the fixture needs ~2 MiB; a 1 MB budget (MOE_TRAIN_MEMORY_LIMIT caps the free memory the check sees)
      const r = cli(["train", "--model", MODEL, "--data", data, "--out", join(tmp, "mem"), "--config", cfg("m.json", { ...BASE, max_steps: 2 })], { MOE_TRAIN_MEMORY_LIMIT: "1000000" });
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/cannot train: training needs ~[\d.]+ MiB \(base weights [\d.]+ MiB, adapter \+ gradients \+ 2 AdamW moments [\d.]+ MiB for \d+ LoRA parameters, activations (at least )?[\d.]+ MiB( \(attention probabilities alone\))?\) against [\d.]+ MiB available: lower max_seq_length/);
      expect(r.out).toBe("");
    });
    it("unwritable out dir", () => {
      const file = join(tmp, "a-file");
      writeFileSync(file, "x");
      bad(["--data", data, "--out", join(file, "run")], /cannot write there/);
    });
    it("NaN loss: the step is refused, nothing written", () => {
      // a copy of the model whose final norm is NaN: every loss is NaN
      const m = join(tmp, "nan-model");
      cpSync(MODEL, m, { recursive: true });
      const st = join(m, "model.safetensors");
      const { header, data: bytes } = readHeader(st);
      const e = header["model.norm.weight"];
      const nanBytes = e.dtype === "BF16" ? [0xc0, 0x7f] : e.dtype === "F16" ? [0x00, 0x7e] : [0x00, 0x00, 0xc0, 0x7f];
      for (let o = e.data_offsets[0]; o < e.data_offsets[1]; o += nanBytes.length) nanBytes.forEach((b, i) => (bytes[o + i] = b));
      writeHeader(st, header, bytes);
      const run = join(tmp, "nan-run");
      const r = cli(["train", "--model", m, "--data", data, "--out", run, "--config", cfg("nan.json", { ...BASE, max_steps: 3 })]);
      expect(r.code).toBe(1);
      expect(r.err.trim().split("\n").at(-1)).toMatch(/step 1 refused: the loss is -?nan/);
      // the memory line comes before step 1; no step line after it
      expect(steps(r.out)).toEqual([]);
      expect(readdirSync(run).filter((d) => d.startsWith("checkpoint-"))).toEqual([]);
    });
  });
});
