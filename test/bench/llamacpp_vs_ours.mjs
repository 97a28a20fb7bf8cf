// Side by side with llama.cpp on one machine, interleaved (run by hand, never by `npm test`): for each format,
// llama.cpp (node-llama-cpp's prebuilt CPU build) on our `export-gguf` file, then our engine on our quantized
// folder, in one process each, alternately, ROUNDS times; steady state (the first evaluation of each process pays
// the page faults of mapping the weights and is not counted). Prints prefill and decode tokens/s per round and the
// median.
//
//   npm i --prefix /tmp/nlc -E node-llama-cpp@3.21.1     # once, outside the repo
//   .venv-ref/bin/python test/bench/make_bench_model.py --layers 16 --vocab 8000
//   node electron/bin/moe-studio.mjs quantize --model bench-models/qwen3_moe_bench --bits 8 --format q8_0 --out bench-models/qwen3_moe_bench-q8_0
//   node electron/bin/moe-studio.mjs export-gguf --model bench-models/qwen3_moe_bench --type q8_0 --out bench-models/bench-q8_0.gguf
//   NODE_LLAMA_CPP=/tmp/nlc node test/bench/llamacpp_vs_ours.mjs [q8_0,q4_0] [rounds] [threads]
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = join(fileURLToPath(import.meta.url), "../../..");
const PROMPT = 128, GEN = 64;
const ids = (V, seed) => {
  const out = [];
  let x = seed;
  for (let k = 0; k < PROMPT; k++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; out.push(3 + (x % (V - 3))); }
  return out;
};

// One side in a child process: prints {"prefill": tok/s, "decode": tok/s} of its second run.
async function child(side, path, threads) {
  if (side === "llama.cpp") {
    const req = createRequire(join(process.env.NODE_LLAMA_CPP, "package.json"));
    const { getLlama } = await import(pathToFileURL(req.resolve("node-llama-cpp")).href);
    const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
    const model = await llama.loadModel({ modelPath: path });
    const ctx = await model.createContext({ contextSize: PROMPT + GEN + 8, threads, batchSize: PROMPT });
    let res;
    for (let run = 0; run < 2; run++) {
      const seq = ctx.getSequence();
      const prompt = ids(8000, 12345 + run);
      const t0 = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(prompt);
      const t1 = performance.now();
      let n = 0;
      for await (const _t of seq.evaluate([prompt[PROMPT - 1]], { temperature: 0 })) if (++n >= GEN) break;
      const t2 = performance.now();
      res = { prefill: PROMPT / ((t1 - t0) / 1000), decode: n / ((t2 - t1) / 1000) };
      await seq.clearHistory();
      seq.dispose();
    }
    console.log(JSON.stringify(res));
    process.exit(0);
  }
  const { loadModel } = await import(pathToFileURL(join(ROOT, "out/electron/engine/engine.js")).href);
  const model = await loadModel(path, { threads });
  let res;
  for (let run = 0; run < 2; run++) {
    const session = model.chat({ contextLength: PROMPT + GEN + 8 });
    const r = await session.generate({ ids: ids(model.info.vocabSize, 12345 + run) }, { maxTokens: GEN, temperature: 0, eosIds: [], repetitionPenalty: 1 }).result;
    session.dispose();
    res = { prefill: r.stats.prefillTokensPerSecond, decode: r.stats.decodeTokensPerSecond };
  }
  model.close();
  console.log(JSON.stringify(res));
}

if (process.argv[2] === "--child") {
  await child(process.argv[3], process.argv[4], Number(process.argv[5]));
} else {
  const formats = (process.argv[2] ?? "q8_0,q4_0").split(",");
  const rounds = Number(process.argv[3] ?? 3), threads = Number(process.argv[4] ?? 2);
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  for (const f of formats) {
    const got = { "llama.cpp": [], ours: [] };
    for (let r = 0; r < rounds; r++)
      for (const [side, path] of [["llama.cpp", join(ROOT, `bench-models/bench-${f}.gguf`)], ["ours", join(ROOT, `bench-models/qwen3_moe_bench-${f}`)]]) {
        const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--child", side, path, String(threads)], { encoding: "utf8" });
        const line = p.stdout.trim().split("\n").pop();
        if (p.status !== 0 || !line?.startsWith("{")) throw new Error(`${side} ${f}: ${p.stderr.slice(-2000)}`);
        const v = JSON.parse(line);
        got[side].push(v);
        console.log(`${f} round ${r + 1} ${side.padEnd(9)} prefill ${v.prefill.toFixed(1)} tok/s  decode ${v.decode.toFixed(1)} tok/s`);
      }
    const l = got["llama.cpp"], o = got.ours;
    const lp = median(l.map((v) => v.prefill)), ld = median(l.map((v) => v.decode));
    const op = median(o.map((v) => v.prefill)), od = median(o.map((v) => v.decode));
    console.log(`| ${f} | ${lp.toFixed(0)} / ${ld.toFixed(1)} | ${op.toFixed(0)} / ${od.toFixed(1)} | ${(op / lp).toFixed(2)}x / ${(od / ld).toFixed(2)}x |`);
  }
}
