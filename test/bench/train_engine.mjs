// The engine's LoRA training throughput on the bench model, beside test/bench/train_bench.py (transformers + peft):
//   .venv-ref/bin/python test/bench/train_bench.py --write-adapter bench-models/bench_adapter     (once: the adapter)
//   node test/bench/train_engine.mjs [model] [adapter] [threads] [seq] [steps]
// One step = forward + backward of one sequence of `seq` random tokens (labels = ids) through the adapter, as the
// `grad` command runs it (the optimizer's AdamW over the LoRA parameters is negligible beside it). tokens/s = seq /
// median step after one warm-up; peak RSS from the addon's getrusage.
import { loadAddon } from "../../out/electron/engine/addon.js";

const [model = "bench-models/qwen3_moe_bench", adapter = "bench-models/bench_adapter", threads = "2", seq = "256", steps = "3"] = process.argv.slice(2);
const addon = loadAddon();
const m = await addon.loadModel(model, { threads: Number(threads), adapter });
const V = m.info().vocabSize;
let s = 12345;
const ids = Array.from({ length: Number(seq) }, () => (s = (s * 1103515245 + 12345) % 2147483648) % V);
const times = [];
let loss = 0;
for (let i = 0; i <= Number(steps); i++) {
  const t0 = performance.now();
  const r = await m.grad(ids);
  if (i > 0) times.push(performance.now() - t0);
  loss = r.loss;
}
times.sort((a, b) => a - b);
const med = times[Math.floor(times.length / 2)] / 1000;
console.log(JSON.stringify({ impl: "moe-studio", threads: Number(threads), seq: Number(seq), trainable_params: m.info().adapter.params,
  step_s: +med.toFixed(3), tokens_per_s: +(Number(seq) / med).toFixed(2), loss: +loss.toFixed(4), simd: addon.systemInfo().simd,
  peak_rss_mb: Math.round(addon.systemInfo().peakRssBytes / 2 ** 20) }));
m.close();
