// Quantize rows on all cores: a pool of worker threads (quant-worker.ts), each with the engine addon loaded. A chunk
// of rows is split into one piece per worker (on row boundaries, so block boundaries); the pieces' bytes
// concatenated are exactly the bytes of quantizing the chunk in one call, since blocks never span rows.
// Where the compiled worker module is not available (TypeScript run directly, e.g. under vitest) quantization runs
// on the calling thread: same bytes, one core.
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { QuantType } from "../engine/addon.js";
import { quantAddon } from "./quant.js";

type Pending = { resolve: (b: Uint8Array) => void; reject: (e: Error) => void };

export class QuantPool {
  private workers: Worker[] = [];
  private pending = new Map<number, Pending>();
  private nextId = 0;

  constructor(threads = availableParallelism()) {
    const file = fileURLToPath(new URL("./quant-worker.js", import.meta.url));
    if (threads < 2 || !existsSync(file)) return;
    for (let i = 0; i < threads; i++) {
      const w = new Worker(file);
      w.on("message", (m: { id: number; out?: Uint8Array; error?: string }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.error !== undefined) p.reject(new Error(m.error));
        else p.resolve(m.out!);
      });
      w.on("error", (e) => {
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
      this.workers.push(w);
    }
  }

  get threads(): number {
    return Math.max(1, this.workers.length);
  }

  /** Quantize `rows` rows of `cols` values (cols a multiple of the block). */
  async quantize(x: Float32Array, rows: number, cols: number, type: QuantType): Promise<Uint8Array> {
    if (this.workers.length === 0 || rows < 2) return quantAddon().quantizeTensor(x, type);
    const n = Math.min(this.workers.length, rows);
    const per = Math.ceil(rows / n);
    const parts: Promise<Uint8Array>[] = [];
    for (let i = 0; i < n; i++) {
      const r0 = i * per;
      const r1 = Math.min(rows, r0 + per);
      if (r0 >= r1) break;
      const piece = x.slice(r0 * cols, r1 * cols);
      const id = this.nextId++;
      parts.push(
        new Promise<Uint8Array>((resolve, reject) => {
          this.pending.set(id, { resolve, reject });
          this.workers[i].postMessage({ id, data: piece, type }, [piece.buffer]);
        }),
      );
    }
    const out = await Promise.all(parts);
    const total = out.reduce((a, b) => a + b.length, 0);
    const all = new Uint8Array(total);
    let o = 0;
    for (const b of out) (all.set(b, o), (o += b.length));
    return all;
  }

  async close() {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
  }
}
