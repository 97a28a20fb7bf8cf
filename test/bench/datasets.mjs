// Datasets at scale (run by hand, never in CI; needs `npm run build:ts`):
//   node test/bench/datasets.mjs [lines=100000] [bytesPerLine=1000]
// Generates a jsonl file in a temp folder, then times each step through the real service on a real database file:
// scan, commit (worker thread), the samples window at the start / middle / end, search (trigram index and short
// scan), "has problems", token counting (qwen2 fixture tokenizer), dedupe, split, export, delete; and the longest
// gap of the main thread's event loop during the commit and the token count. Prints numbers; asserts nothing.
import { mkdtempSync, openSync, rmSync, statSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const { DatasetService } = await import(join(root, "out/electron/services/datasets.js"));
const { openDatabase } = await import(join(root, "out/electron/store/db.js"));

const lines = Number(process.argv[2] ?? 100_000);
const bytesPerLine = Number(process.argv[3] ?? 1000);
const dir = mkdtempSync(join(tmpdir(), "moe-ds-bench-"));
const file = join(dir, "bench.jsonl");
const filler = "Mixture-of-experts layers route each token to a few experts; 混合专家 🧠. ";
const fd = openSync(file, "w");
let buf = [];
for (let i = 0; i < lines; i++) {
  const n = Math.max(1, Math.round((bytesPerLine / 2 - 40) / Buffer.byteLength(filler)));
  // every 50th sample repeats an earlier one: dedupe has work to do
  const k = i % 50 === 49 ? i - 1 : i;
  buf.push(JSON.stringify({ messages: [{ role: "user", content: `Q${k} ${filler.repeat(n)}` }, { role: "assistant", content: `A${k} ${filler.repeat(n)}` }] }));
  if (buf.length === 2000) {
    writeSync(fd, buf.join("\n") + "\n");
    buf = [];
  }
}
if (buf.length) writeSync(fd, buf.join("\n") + "\n");
closeSync(fd);
const size = statSync(file).size;

const db = openDatabase(join(dir, "bench.db"));
const events = [];
const svc = new DatasetService(db, dir, (name, payload) => events.push({ name, payload }));
const ms = (t) => `${(performance.now() - t).toFixed(0)} ms`;
const out = (k, v) => console.log(`${k.padEnd(44)} ${v}`);

/** Longest event-loop gap while `p` runs (how long the main process could not answer). */
async function withLoopGap(p) {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 5);
  try {
    return { value: await p(), worst };
  } finally {
    clearInterval(timer);
  }
}

console.log(`${lines} lines, ${(size / 2 ** 20).toFixed(1)} MiB; load average ${(await import("node:os")).loadavg().map((x) => x.toFixed(1)).join(" ")}`);
let t = performance.now();
const { importId } = svc.scan({ kind: "path", path: file });
const st = await svc.scanned(importId);
out("scan (streamed, 1 MiB chunks)", `${ms(t)}  (${st.report.valid} valid)`);
t = performance.now();
const c = await withLoopGap(() => svc.commit(importId));
out("commit (one transaction, worker thread)", `${ms(t)}  (longest main-loop gap ${c.worst.toFixed(0)} ms)`);
const id = c.value.id;
out("peak RSS so far", `${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);

t = performance.now();
svc.list();
out("datasets.list (summary: counts, duplicates, formats)", ms(t));
for (const offset of [0, Math.floor(lines / 2), lines - 100]) {
  t = performance.now();
  svc.listSamples({ datasetId: id, offset, limit: 100 });
  out(`samples.list 100 rows at offset ${offset}`, ms(t));
}
t = performance.now();
let r = svc.listSamples({ datasetId: id, offset: 0, limit: 100, search: "Q77777 " });
out(`search "Q77777 " (trigram index)`, `${ms(t)}  (${r.total} hits)`);
t = performance.now();
r = svc.listSamples({ datasetId: id, offset: 0, limit: 100, search: "🧠" });
out(`search "🧠" (short: scan)`, `${ms(t)}  (${r.total} hits)`);
t = performance.now();
r = svc.listSamples({ datasetId: id, offset: 0, limit: 100, hasProblems: true });
out("hasProblems (duplicates)", `${ms(t)}  (${r.total})`);

const tokenizer = { modelDir: join(root, "test/fixtures/models/qwen2"), maxSeqLen: 256 };
if (process.env.BENCH_TOKENS !== "0") {
  // (BENCH_TOKENS=0 skips this step: a few minutes at 100k samples)
  t = performance.now();
  const tok = await withLoopGap(async () => {
    const job = svc.countTokens(id, tokenizer);
    await svc.tokensIdle(id);
    return job;
  });
  out("token counts (qwen2 tokenizer + template)", `${ms(t)}  (${((performance.now() - t) / lines * 1000).toFixed(0)} µs/sample, longest main-loop gap ${tok.worst.toFixed(0)} ms)`);
  t = performance.now();
  r = svc.listSamples({ datasetId: id, offset: 0, limit: 100, tokenizer, sort: { by: "tokens", dir: "desc" } });
  out("samples.list sorted by tokens", `${ms(t)}  (max ${r.items[0]?.tokens})`);
}

t = performance.now();
const d = await svc.dedupe(id);
out("dedupe (worker thread)", `${ms(t)}  (${d.removed} removed)`);
t = performance.now();
const s = await svc.split(id, 0.1, 42);
out("split 90/10 (worker thread)", `${ms(t)}  (${s.train.sampleCount} + ${s.validation.sampleCount})`);
t = performance.now();
const e = await svc.export(id, join(dir, "export.jsonl"));
out("export", `${ms(t)}  (${(e.bytes / 2 ** 20).toFixed(1)} MiB)`);
t = performance.now();
await svc.delete(s.train.id);
out("delete the train split (worker thread)", ms(t));

await svc.dispose();
db.close();
rmSync(dir, { recursive: true, force: true });
