// Engine prefill/decode measured several times in ONE process (run by hand, after `npm run build`):
//   [KV_CACHE=f16|int8] node test/bench/engine_repeat.mjs [model dir] [threads] [prompt tokens] [gen tokens] [repeats]
// The first prefill of a process also pays the page faults of mapping the weights in; later ones show the
// steady state (what a chat sees from its second message on). Prints one line per repeat.
import { loadModel } from "../../out/electron/engine/engine.js";

const [dir = "bench-models/qwen3_moe_bench", threads = "2", pt = "128", gt = "64", reps = "3"] = process.argv.slice(2);
const model = await loadModel(dir, { threads: Number(threads), ...(process.env.KV_CACHE ? { kvCache: process.env.KV_CACHE } : {}) });  // KV_CACHE=f16|int8
const V = model.info.vocabSize;
for (let r = 0; r < Number(reps); r++) {
  const ids = [];
  let x = 12345 + r;
  for (let k = 0; k < Number(pt); k++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; ids.push(3 + (x % (V - 3))); }
  const session = model.chat({ contextLength: Number(pt) + Number(gt) + 1 });
  const res = await session.generate({ ids }, { maxTokens: Number(gt), temperature: 0, eosIds: [], repetitionPenalty: 1 }).result;
  session.dispose();
  const s = res.stats;
  console.log(`run ${r + 1}: prefill ${s.promptTokens} tok ${s.prefillTokensPerSecond.toFixed(1)} tok/s, ` +
    `decode ${s.completionTokens} tok ${s.decodeTokensPerSecond.toFixed(2)} tok/s, peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
}
model.close();
