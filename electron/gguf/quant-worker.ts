// A worker thread that runs the engine's block quantizer (addon.quantizeTensor is synchronous and single-threaded),
// so an export quantizes on every core: electron/gguf/quant-pool.ts hands each worker whole rows.
import { parentPort } from "node:worker_threads";
import { loadAddon, type QuantType } from "../engine/addon.js";

parentPort!.on("message", (m: { id: number; data: Float32Array; type: QuantType }) => {
  try {
    const out = loadAddon().quantizeTensor(m.data, m.type);
    parentPort!.postMessage({ id: m.id, out });
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) });
  }
});
