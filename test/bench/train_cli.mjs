// The engine's training throughput through `moe-studio train` itself (data prep, forward, backward, clipping and AdamW
// over every LoRA parameter, one optimizer step per sample), beside test/bench/train_bench.py (transformers + peft) and
// train_engine.mjs (forward + backward alone):
//   node test/bench/train_cli.mjs [model] [threads] [seq] [steps] [r] [base-quant none|nf4]
// The run: r on q/k/v/o and gate/up/down of every routed expert (what train_bench.py targets on qwen3_moe), alpha 2r,
// lora_dropout 0, batch 1, loss on every token, samples of more than `seq` tokens cut to `seq`, gradient checkpointing on
// (the default). tokens/s = seq / median step time after step 1 (from the per-step elapsed_s lines); peak RSS = the
// child's max RSS from /usr/bin/time; estimate = the trainer's memory line (base + adapters + optimizer + activations).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [model = "bench-models/qwen3_moe_bench", threads = "2", seq = "256", steps = "4", r = "16", baseQuant = "none"] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), "moe-train-bench-"));
try {
  // Samples long enough that every one is cut to `seq` tokens: pseudo-random English words, a fixed seed.
  const words = "the model routes each token to a few experts and the router learns which expert knows what about data".split(" ");
  let s = 7;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const text = (n) => Array.from({ length: n }, () => words[Math.floor(rnd() * words.length)]).join(" ");
  const lines = Array.from({ length: Number(steps) + 2 }, () =>
    JSON.stringify({ messages: [{ role: "user", content: text(40) }, { role: "assistant", content: text(Number(seq) * 2) }] }));
  writeFileSync(join(dir, "data.jsonl"), lines.join("\n") + "\n");
  writeFileSync(join(dir, "train.json"), JSON.stringify({
    max_steps: Number(steps), max_seq_length: Number(seq), lora_rank: Number(r), lora_alpha: 2 * Number(r), lora_dropout: 0,
    target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], loss_on: "all",
    save_steps: 0, learning_rate: 1e-4, lr_scheduler_type: "constant",
  }));
  const p = spawnSync("/usr/bin/time", ["-f", "MAXRSS_KB %M", process.execPath, "electron/bin/moe-studio.mjs", "train", "--model", model,
    "--data", join(dir, "data.jsonl"), "--config", join(dir, "train.json"), "--out", join(dir, "run"), "--threads", threads, "--base-quant", baseQuant], { encoding: "utf8" });
  if (p.status !== 0) throw new Error(`train failed (${p.status}): ${p.stderr}`);
  const out = p.stdout.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  const mem = out.find((o) => o.memory)?.memory;
  const st = out.filter((o) => "loss" in o);
  const dt = st.slice(1).map((o, i) => o.elapsed_s - st[i].elapsed_s).sort((a, b) => a - b);
  const med = dt[Math.floor(dt.length / 2)];
  const rss = Number(/MAXRSS_KB (\d+)/.exec(p.stderr)?.[1] ?? NaN) * 1024;
  console.log(JSON.stringify({ impl: `moe-studio train${baseQuant === "nf4" ? " (Q-LoRA, NF4 base)" : ""}`, threads: Number(threads), seq: Number(seq), r: Number(r), trainable_params: mem?.params,
    // the tokens each step really trained on (from the CLI's own running tokens/s), to confirm every sample was cut to `seq`
    tokens_per_step: Math.round((st.at(-1).tokens_per_s * st.at(-1).elapsed_s) / st.at(-1).step),
    step_s: +med.toFixed(3), tokens_per_s: +(Number(seq) / med).toFixed(2), first_loss: st[0]?.loss, last_loss: st.at(-1)?.loss,
    peak_rss_mb: Math.round(rss / 2 ** 20), estimate_mb: Math.round(mem.total_bytes / 2 ** 20),
    estimate_over_peak: +(mem.total_bytes / rss).toFixed(3) }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
