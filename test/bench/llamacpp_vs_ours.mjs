// Side by side with llama.cpp on one machine, interleaved (run by hand, never by `npm test`): for each format and
// context depth, llama.cpp on our `export-gguf` file and our engine on our own folder, one process each,
// alternately (who goes first alternates too), ROUNDS times. Prints prefill and decode tokens/s and peak RSS per
// round, then the median table.
//
// llama.cpp is either
//   LLAMA_BENCH=/path/to/llama-bench   its own benchmark (prefill pp128 and decode tg64 after a warm-up run, at
//                                      depth d with -d), the figures to compare; or
//   NODE_LLAMA_CPP=/tmp/nlc            node-llama-cpp's prebuilt build, through its JS API: prefill only (its decode
//                                      is a per-token JS loop with sampling, not llama.cpp's decode speed).
// Ours: the engine in one process; its first generation (128 tokens, no depth) pays the page faults of the mapping
// and is not counted (llama-bench's warm-up run does the same); at depth d the measured run first fills d tokens
// of context, then reuses them (prefix cache), prefills 128 more and decodes 64. COMPETE=1 adds a busy process;
// KV_CACHE=f16|int8 runs ours on that KV cache (llama.cpp keeps its default f16 cache; f16 is the like-for-like run).
//
// Setup (all outside git; see test/bench/README.md):
//   .venv-ref/bin/python test/bench/make_bench_model.py --layers 16 --vocab 8000   (max_position 4096; both engines run past it)
//   node electron/bin/moe-studio.mjs quantize --model bench-models/qwen3_moe_bench --format q8_0 --out bench-models/qwen3_moe_bench-q8_0
//   node electron/bin/moe-studio.mjs export-gguf --model bench-models/qwen3_moe_bench --type q8_0 --out bench-models/bench-q8_0.gguf
//   (bf16: our folder is the checkpoint itself, llama.cpp gets `--type f16` as bench-models/bench-f16.gguf)
//   llama-bench: git clone node_modules/node-llama-cpp/llama/gitRelease.bundle (the llama.cpp source node-llama-cpp
//     ships) and `cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF && cmake --build build --target llama-bench`
//   LLAMA_BENCH=/tmp/llama.cpp/build/bin/llama-bench node test/bench/llamacpp_vs_ours.mjs [bf16,q8_0,q4_0,q4_k] [rounds] [threads] [depths, e.g. 0,4096]
// An AVX2-only CPU, on a machine with AVX-512: MOE_SIMD=avx2 (inherited by our child) and a llama.cpp built with
//   -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = join(fileURLToPath(import.meta.url), "../../..");
const PROMPT = 128, GEN = 64;
const ids = (V, seed, n) => {
  const out = [];
  let x = seed;
  for (let k = 0; k < n; k++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; out.push(3 + (x % (V - 3))); }
  return out;
};
const gguf = (f) => join(ROOT, `bench-models/bench-${f === "bf16" ? "f16" : f}.gguf`);
const folder = (f) => join(ROOT, f === "bf16" ? "bench-models/qwen3_moe_bench" : `bench-models/qwen3_moe_bench-${f}`);

// One side in a child process: prints {"prefill": tok/s, "decode": tok/s} of its measured run.
async function child(side, path, threads, depth) {
  if (side === "node-llama-cpp") {
    const req = createRequire(join(process.env.NODE_LLAMA_CPP, "package.json"));
    const { getLlama } = await import(pathToFileURL(req.resolve("node-llama-cpp")).href);
    const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
    const model = await llama.loadModel({ modelPath: path });
    const ctx = await model.createContext({ contextSize: depth + PROMPT + GEN + 8, threads, batchSize: 512 });
    let res;
    for (let run = 0; run < 2; run++) {
      const seq = ctx.getSequence();
      const all = ids(8000, 12345 + run, depth + PROMPT);
      if (depth) await seq.evaluateWithoutGeneratingNewTokens(all.slice(0, depth));
      const t0 = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(all.slice(depth));
      const t1 = performance.now();
      let n = 0;
      for await (const _t of seq.evaluate([all[all.length - 1]], { temperature: 0 })) if (++n >= GEN) break;
      const t2 = performance.now();
      res = { prefill: PROMPT / ((t1 - t0) / 1000), decode: n / ((t2 - t1) / 1000) };
      await seq.clearHistory();
      seq.dispose();
    }
    console.log(JSON.stringify(res));
    process.exit(0);
  }
  const { loadModel } = await import(pathToFileURL(join(ROOT, "out/electron/engine/engine.js")).href);
  const model = await loadModel(path, { threads, ...(process.env.KV_CACHE ? { kvCache: process.env.KV_CACHE } : {}) });
  const opts = { temperature: 0, eosIds: [], repetitionPenalty: 1 };
  let res;
  for (let run = 0; run < 2; run++) {
    const session = model.chat({ contextLength: depth + PROMPT + GEN + 8 });
    const d = run ? depth : 0;  // the warm-up run only maps the weights in
    const all = ids(model.info.vocabSize, 12345 + run, d + PROMPT);
    if (d) await session.generate({ ids: all.slice(0, d) }, { ...opts, maxTokens: 1 }).result;
    const r = await session.generate({ ids: all }, { ...opts, maxTokens: GEN }).result;
    if (r.stats.reusedTokens < d) throw new Error(`depth ${d}: the measured run reused ${r.stats.reusedTokens} tokens`);
    session.dispose();
    res = { prefill: r.stats.prefillTokensPerSecond, decode: r.stats.decodeTokensPerSecond };
  }
  model.close();
  console.log(JSON.stringify(res));
}

// Runs argv under /usr/bin/time: [stdout, peak RSS in MiB].
function timed(argv) {
  const p = spawnSync("/usr/bin/time", ["-f", "MAXRSS %M", ...argv], { encoding: "utf8", maxBuffer: 64 << 20 });
  const rss = /MAXRSS (\d+)/.exec(p.stderr);
  if (p.status !== 0 || !rss) throw new Error(`${argv.join(" ")}: exit ${p.status}\n${p.stderr.slice(-3000)}`);
  return [p.stdout, Number(rss[1]) / 1024];
}

// COMPETE=1: a busy process (one spinning thread, as a build or a browser tab would be) runs beside each side, so
// the table shows how each engine's threads behave on a loaded machine (llama.cpp's spin at their barriers).
function runSide(side, f, threads, depth) {
  if (!process.env.COMPETE) return runSideOnce(side, f, threads, depth);
  const hog = spawn(process.execPath, ["-e", "for (;;);"], { stdio: "ignore" });
  try { return runSideOnce(side, f, threads, depth); } finally { hog.kill("SIGKILL"); }
}

function runSideOnce(side, f, threads, depth) {
  if (side === "llama-bench") {
    const [out, rss] = timed([process.env.LLAMA_BENCH, "-m", gguf(f), "-p", String(PROMPT), "-n", String(GEN), "-t", String(threads),
      "-r", "1", "-d", String(depth), "-o", "json"]);
    const rows = JSON.parse(out);
    const ts = (pred) => rows.find(pred)?.avg_ts;
    return { prefill: ts((r) => r.n_prompt === PROMPT && r.n_gen === 0), decode: ts((r) => r.n_gen === GEN && r.n_prompt === 0), rss };
  }
  const path = side === "ours" ? folder(f) : gguf(f);
  const [out, rss] = timed([process.execPath, fileURLToPath(import.meta.url), "--child", side, path, String(threads), String(depth)]);
  const line = out.trim().split("\n").pop();
  if (!line?.startsWith("{")) throw new Error(`${side} ${f}: no result line in\n${out.slice(-2000)}`);
  return { ...JSON.parse(line), rss };
}

if (process.argv[2] === "--child") {
  await child(process.argv[3], process.argv[4], Number(process.argv[5]), Number(process.argv[6]));
} else {
  const formats = (process.argv[2] ?? "q8_0,q4_0").split(",");
  const rounds = Number(process.argv[3] ?? 3), threads = Number(process.argv[4] ?? 2);
  const depths = (process.argv[5] ?? "0").split(",").map(Number);
  const peer = process.env.LLAMA_BENCH ? "llama-bench" : process.env.NODE_LLAMA_CPP ? "node-llama-cpp" : null;
  if (!peer) throw new Error("set LLAMA_BENCH (a llama-bench binary) or NODE_LLAMA_CPP (a node-llama-cpp install)");
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const table = [];
  for (const f of formats)
    for (const depth of depths) {
      const got = { [peer]: [], ours: [] };
      for (let r = 0; r < rounds; r++)
        for (const side of r % 2 ? ["ours", peer] : [peer, "ours"]) {  // alternate who goes first
          const v = runSide(side, f, threads, depth);
          got[side].push(v);
          console.log(`${f} d${depth} round ${r + 1} ${side.padEnd(14)} prefill ${v.prefill.toFixed(1)} tok/s  decode ${v.decode.toFixed(1)} tok/s  peak RSS ${v.rss.toFixed(0)} MiB`);
        }
      const m = (side, k) => median(got[side].map((v) => v[k]));
      const [lp, ld, lr, op, od, or] = [m(peer, "prefill"), m(peer, "decode"), m(peer, "rss"), m("ours", "prefill"), m("ours", "decode"), m("ours", "rss")];
      table.push(`| ${f} | ${depth} | ${lp.toFixed(0)} / ${ld.toFixed(1)} | ${op.toFixed(0)} / ${od.toFixed(1)} | ${(op / lp).toFixed(2)}x / ${(od / ld).toFixed(2)}x | ${lr.toFixed(0)} / ${or.toFixed(0)} MiB |`);
    }
  console.log(`\n${peer}, ${threads} threads, prompt ${PROMPT}, ${GEN} new tokens, median of ${rounds} interleaved rounds${process.env.COMPETE ? ", beside a busy process" : ""}${process.env.KV_CACHE ? `, ours with the ${process.env.KV_CACHE} KV cache` : ""}`);
  console.log(`| format | depth | ${peer} prefill / decode tok/s | ours prefill / decode tok/s | ours ÷ ${peer} | peak RSS ${peer} / ours |`);
  console.log("|---|---|---|---|---|---|");
  for (const row of table) console.log(row);
}
