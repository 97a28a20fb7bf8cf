// train.json (electron/train/config.ts): defaults, the hunyuan_lora preset under the file's own keys, strict keys
// and ranges, and the engine config a run gets; the per-epoch order is a seeded permutation.
import { describe, expect, it } from "vitest";
import { TrainKnobs, TrainPreset } from "../../electron/contract.js";
import { verdict } from "../../electron/finetune/service.js";
import { DEFAULTS, nativeConfig, PRESETS, resolveSpecArgs, resolveTrainArgs } from "../../electron/train/config.js";
import { epochOrder } from "../../electron/train/data.js";

describe("train.json", () => {
  it("defaults and the hunyuan_lora preset (Tencent's recipe), file keys over the preset", () => {
    expect(resolveTrainArgs({})).toEqual(DEFAULTS);
    const h = resolveTrainArgs({ preset: "hunyuan_lora", max_steps: 100 });
    expect(h).toMatchObject({ lora_rank: 64, lora_alpha: 128, lora_dropout: 0.1, lr_scheduler_type: "cosine_with_min_lr", learning_rate: 1e-5, min_lr: 1e-6, warmup_ratio: 0.01, max_steps: 100 });
    expect(h.num_train_epochs).toBeUndefined();
    expect(resolveTrainArgs({ preset: "hunyuan_lora", lora_rank: 16 }).lora_rank).toBe(16);
    const n = nativeConfig(h, 100, "/m");
    expect(n).toMatchObject({ max_steps: 100, warmup_ratio: 0.01, lora_rank: 64, base_model_name_or_path: "/m", expert_lr_scale: { routed: 1, shared: 1, attention: 1 } });
    expect(resolveTrainArgs({ expert_lr_scale: { routed: 0.5 } }).expert_lr_scale).toEqual({ routed: 0.5, shared: 1, attention: 1 });
  });
  it("quick / balanced / thorough: a step up each in rank, epochs and held-out data; alpha 2·r; the app's knobs over them", () => {
    const q = resolveSpecArgs("quick", {}), b = resolveSpecArgs("balanced", {}), t = resolveSpecArgs("thorough", {});
    expect(q).toMatchObject({ lora_rank: 8, lora_alpha: 16, num_train_epochs: 1, learning_rate: 2e-4, max_seq_length: 512, save_steps: 50 });
    expect(b).toMatchObject({ lora_rank: 16, lora_alpha: 32, num_train_epochs: 2, max_seq_length: 1024 });
    expect(t).toMatchObject({ lora_rank: 32, lora_alpha: 64, num_train_epochs: 3, learning_rate: 1e-4, lr_scheduler_type: "cosine", validation_split: 0.1, eval_steps: 25 });
    // every preset the contract offers resolves, and each preset's values pass the contract's knob ranges
    for (const p of TrainPreset.options) {
      expect(PRESETS[p]).toBeDefined();
      const { validation_file: _v, ...knobs } = resolveSpecArgs(p, {});
      expect(TrainKnobs.safeParse(knobs).success).toBe(true);
    }
    // the Advanced panel's overrides: max_steps replaces the preset's epochs, warmup_steps its warmup_ratio
    const o = resolveSpecArgs("thorough", { max_steps: 7, warmup_steps: 2, lora_rank: 4 });
    expect(o).toMatchObject({ max_steps: 7, warmup_steps: 2, lora_rank: 4, validation_split: 0.1 });
    expect(o.num_train_epochs).toBeUndefined();
    expect(o.warmup_ratio).toBeUndefined();
    // the resolved arguments are a train.json of their own (what the run folder keeps)
    expect(resolveTrainArgs(JSON.parse(JSON.stringify(o)))).toEqual(o);
  });
  it("memory verdicts: fits, tight within 15% of free memory, will_not_fit over it; unknown free memory fits", () => {
    const m = (total: number, available: number) => verdict({ base_bytes: total / 2, adapter_bytes: total / 4, activation_bytes: total / 4, total_bytes: total, available_bytes: available, params: 10 });
    expect(m(80, 100)).toMatchObject({ verdict: "fits", advice: null, adapterBytes: 10, optimizerBytes: 10 });
    expect(m(86, 100).verdict).toBe("tight");
    expect(m(100, 100).verdict).toBe("tight");
    expect(m(101, 100)).toMatchObject({ verdict: "will_not_fit", advice: expect.stringMatching(/lower max_seq_length/) });
    expect(m(1e12, -1).verdict).toBe("fits");
  });
  it("refuses unknown keys by name, bad values and contradictions", () => {
    expect(() => resolveTrainArgs({ lr: 1, epochs: 2 })).toThrow(/unknown keys "lr", "epochs"/);
    expect(() => resolveTrainArgs({ preset: "x" })).toThrow(/unknown preset "x"/);
    expect(() => resolveTrainArgs({ lora_rank: 2.5 })).toThrow(/lora_rank must be an integer/);
    expect(() => resolveTrainArgs({ learning_rate: -1 })).toThrow(/learning_rate/);
    expect(() => resolveTrainArgs({ lr_scheduler_type: "polynomial" })).toThrow(/lr_scheduler_type must be one of/);
    expect(() => resolveTrainArgs({ warmup_ratio: 0.1, warmup_steps: 3 })).toThrow(/not both/);
    expect(() => resolveTrainArgs({ max_steps: 3, num_train_epochs: 1 })).toThrow(/not both/);
    expect(() => resolveTrainArgs({ loss_on: "user" })).toThrow(/loss_on/);
    expect(() => resolveTrainArgs({ expert_lr_scale: { experts: 1 } })).toThrow(/unknown key "experts"/);
    expect(() => resolveTrainArgs([])).toThrow(/JSON object/);
  });
  it("epoch order: a permutation, fixed by (seed, epoch), different across epochs", () => {
    const a = epochOrder(50, 42, 0);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(epochOrder(50, 42, 0)).toEqual(a);
    expect(epochOrder(50, 42, 1)).not.toEqual(a);
    expect(epochOrder(50, 43, 0)).not.toEqual(a);
  });
});
