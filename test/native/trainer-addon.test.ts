// The addon's NativeTrainer (native/binding/trainer.cpp) as electron code calls it: createTrainer's config checks,
// step / evaluate / saveCheckpoint as promises (one job at a time), memory(), resume, dispose.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../../electron/engine/engine.js";
import { modelDir } from "./fixtures.js";

const tmp = mkdtempSync(join(tmpdir(), "moe-trainer-addon-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("NativeTrainer", () => {
  it("steps, evaluates, saves, resumes and refuses what it cannot do", async () => {
    const m = await loadModel(modelDir("qwen3_moe"), { threads: 1 });
    try {
      const cfg = { max_steps: 5, lora_rank: 4, lora_alpha: 8, max_seq_length: 32, learning_rate: 1e-2, seed: 3 };
      expect(() => m.native.createTrainer({ ...cfg, lr_scheduler_type: "poly" as never })).toThrow(/lr_scheduler_type "poly"/);
      expect(() => m.native.createTrainer({ ...cfg, lora_rank: 0 })).toThrow(/lora_rank = 0/);
      expect(() => m.native.createTrainer({ ...cfg, max_seq_length: 1 << 20 })).toThrow(/max_seq_length/);
      const t = m.native.createTrainer(cfg);
      const mem = t.memory();
      expect(mem.fits).toBe(true);
      expect(mem.step).toBe(0);
      expect(mem.adapterBytes).toBe(16 * mem.params);
      expect(mem.baseBytes).toBe(m.info.weightBytes);
      expect(mem.activationBytes).toBeGreaterThan(0);
      const ids = Array.from({ length: 12 }, (_, i) => (i * 37) % m.info.vocabSize);
      const seq = { ids, labels: ids.map((x, i) => (i < 4 ? -100 : x)) };
      const p1 = t.step([seq, seq]);
      await expect(t.step([seq])).rejects.toThrow(/busy/);
      const r = await p1;
      expect(r).toMatchObject({ step: 1, nTargets: 2 * 8, tokens: 24, lr: 1e-2 * 1 });  // linear, no warmup: λ(0) = 1
      expect(Number.isFinite(r.gradNorm) && r.gradNorm > 0).toBe(true);
      const ev = await t.evaluate([seq]);
      expect(ev.nTargets).toBe(8);
      expect(ev.loss).toBeLessThan(r.loss);
      await expect(t.step([{ ids: [1, 2], labels: [1] }])).rejects.toThrow(/differ in length/);
      await expect(t.step([{ ids: Array(40).fill(1), labels: Array(40).fill(1) }])).rejects.toThrow(/max_seq_length = 32/);
      await expect(t.step([{ ids: [m.info.vocabSize], labels: [1] }])).rejects.toThrow(/not a token id/);
      const dir = join(tmp, "ck");
      await t.saveCheckpoint(dir, JSON.stringify({ where: "here" }));
      expect(JSON.parse(readFileSync(join(dir, "trainer_extra.json"), "utf8"))).toEqual({ where: "here" });
      expect(existsSync(join(dir, "adapter_model.safetensors"))).toBe(true);
      const r2 = m.native.createTrainer(cfg, { resume: dir });
      expect(r2.memory().step).toBe(1);
      const [a, b] = [await t.step([seq]), await r2.step([seq])];
      expect(b).toMatchObject({ step: 2, loss: a.loss, gradNorm: a.gradNorm, lr: a.lr });
      r2.dispose();
      t.dispose();
      await expect(t.step([seq])).rejects.toThrow(/disposed/);
    } finally {
      m.close();
    }
  }, 60_000);

  it("createTrainer(cfg, { estimate: true }): the trainer's own sizing, answered (not thrown) when it does not fit", async () => {
    const m = await loadModel(modelDir("qwen3_moe"), { threads: 1 });
    try {
      const cfg = { max_steps: 5, lora_rank: 4, lora_alpha: 8, max_seq_length: 32, learning_rate: 1e-2, seed: 3 };
      const t = m.native.createTrainer(cfg);
      const mem = t.memory();
      t.dispose();
      const e = m.native.createTrainer(cfg, { estimate: true });
      // the same sizing as a trainer's (the TrainState init_train allocates, measured as heap bytes: the allocator's
      // bookkeeping moves it by a few KiB between two measurements), not a second formula
      expect(e).toMatchObject({ baseBytes: mem.baseBytes, adapterBytes: mem.adapterBytes, params: mem.params, fits: true, activationsLowerBound: false });
      expect(Math.abs(e.activationBytes - mem.activationBytes)).toBeLessThan(0.01 * mem.activationBytes);
      expect("step" in e).toBe(false);
      process.env.MOE_TRAIN_MEMORY_LIMIT = String(mem.baseBytes + mem.adapterBytes);  // not even the attention probabilities
      try {
        expect(() => m.native.createTrainer(cfg)).toThrow(/training needs ~.* against .* available/);
        const n = m.native.createTrainer(cfg, { estimate: true });
        expect(n).toMatchObject({ fits: false, activationsLowerBound: true, availableBytes: mem.baseBytes + mem.adapterBytes });
        expect(n.totalBytes).toBeGreaterThan(n.availableBytes);
        expect(n.summary).toMatch(/lower max_seq_length/);
      } finally {
        delete process.env.MOE_TRAIN_MEMORY_LIMIT;
      }
      // config errors are still errors
      expect(() => m.native.createTrainer({ ...cfg, lora_rank: 0 }, { estimate: true })).toThrow(/lora_rank = 0/);
    } finally {
      m.close();
    }
  });
});
