// The downloader's throughput on loopback (run by hand: `npx jiti test/bench/download_bench.ts [MB]`): a random
// safetensors-named file of MB megabytes (default 512) served by test/helpers/hub-server.ts, fetched with sha256
// verification; then the same with the transfer cut at half and resumed (re-hashing the first half from disk).
// Prints MB/s; the network is not in it, so this is the ceiling the writer + incremental hash allow.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelDownload } from "../../electron/library/downloader.js";
import { startHubServer } from "../helpers/hub-server.js";

const mb = Number(process.argv[2] ?? 512);
const src = mkdtempSync(join(tmpdir(), "moe-dlbench-src-"));
const dst = mkdtempSync(join(tmpdir(), "moe-dlbench-dst-"));
writeFileSync(join(src, "config.json"), JSON.stringify({ model_type: "qwen3" }));
const chunk = randomBytes(1 << 20);
const big = Buffer.alloc(mb << 20);
for (let i = 0; i < mb; i++) chunk.copy(big, i << 20);
writeFileSync(join(src, "model.safetensors"), big);
const hub = await startHubServer({ repos: { "bench/model": { dir: src } }, chunkBytes: 1 << 20 });
try {
  let t = performance.now();
  createHash("sha256").update(big).digest("hex");
  console.log(`sha256 alone: ${(mb / ((performance.now() - t) / 1000)).toFixed(0)} MB/s`);

  t = performance.now();
  await new ModelDownload({ modelsDir: join(dst, "a"), repo: "bench/model", source: "hf", endpoint: hub.url }).start();
  console.log(`download ${mb} MB (302 + stream + write + sha256): ${(mb / ((performance.now() - t) / 1000)).toFixed(0)} MB/s`);

  hub.faults.dropAfter.set("model.safetensors", (mb << 20) / 2);
  const d = new ModelDownload({ modelsDir: join(dst, "b"), repo: "bench/model", source: "hf", endpoint: hub.url });
  await d.start().catch(() => undefined);
  t = performance.now();
  await new ModelDownload({ modelsDir: join(dst, "b"), repo: "bench/model", source: "hf", endpoint: hub.url }).start();
  console.log(`resume at 50% (re-hash the first half from disk + fetch the rest): ${((performance.now() - t) / 1000).toFixed(2)} s`);
} finally {
  await hub.close();
  rmSync(src, { recursive: true, force: true });
  rmSync(dst, { recursive: true, force: true });
}
