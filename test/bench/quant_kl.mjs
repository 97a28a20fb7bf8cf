#!/usr/bin/env node
// KL divergence and top-1 agreement of a quantized model against its float original (run by hand, not a test):
//   node test/bench/quant_kl.mjs FLOAT_DIR QUANT_DIR [tokens=128] [threads=2]
// Token stream: the same deterministic pseudo-random ids `moe-studio bench` uses (random models have no text
// distribution worth sampling). Reports mean KL(P_float || P_quant) over positions, its 99th percentile and the
// top-1 agreement, as llama.cpp's perplexity --kl-divergence does. MOE_QUANT_ACT=f32|q8 picks the activation mode;
// KV_CACHE=int8 loads the second model with the int8 KV cache (pass the same folder twice to measure the cache alone).
import { loadModel } from "../../out/electron/engine/engine.js";

const [floatDir, quantDir, nTok = "128", threads = "2"] = process.argv.slice(2);
if (!floatDir || !quantDir) {
  console.error("usage: node test/bench/quant_kl.mjs FLOAT_DIR QUANT_DIR [tokens] [threads]");
  process.exit(2);
}
async function logits(dir, ids, kvCache) {
  const m = await loadModel(dir, { threads: Number(threads), ...(kvCache ? { kvCache } : {}) });
  try { return { rows: await m.logits(ids), info: m.info }; } finally { m.close(); }
}
const a0 = await loadModel(floatDir, { threads: 1 });
const V = a0.info.vocabSize;
a0.close();
const ids = [];
let x = 12345;
for (let k = 0; k < Number(nTok); k++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; ids.push(3 + (x % Math.max(1, V - 3))); }
const ref = await logits(floatDir, ids);
const q = await logits(quantDir, ids, process.env.KV_CACHE);
const ls = (r) => { let m = -Infinity; for (const v of r) m = Math.max(m, v); let s = 0; for (const v of r) s += Math.exp(v - m); const l = Math.log(s) + m; return Float64Array.from(r, (v) => v - l); };
const kls = [];
let agree = 0;
for (let t = 0; t < ids.length; t++) {
  const p = ls(ref.rows[t]), r = ls(q.rows[t]);
  let k = 0, ap = 0, aq = 0;
  for (let i = 0; i < p.length; i++) { k += Math.exp(p[i]) * (p[i] - r[i]); if (p[i] > p[ap]) ap = i; if (r[i] > r[aq]) aq = i; }
  kls.push(k); if (ap === aq) agree++;
}
kls.sort((a, b) => a - b);
const mean = kls.reduce((s, v) => s + v, 0) / kls.length;
console.log(`${q.info.dtype} (kv ${q.info.kvCache}) vs ${ref.info.dtype} (activations ${process.env.MOE_QUANT_ACT ?? "default"}): ${ids.length} positions, ` +
  `mean KL ${mean.toExponential(3)}, p99 KL ${kls[Math.floor(0.99 * (kls.length - 1))].toExponential(3)}, top-1 ${(agree / ids.length).toFixed(3)}`);
